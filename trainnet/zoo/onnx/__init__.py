"""ONNX both ways: a trainnet (or Caffe) net exported as an ONNX model, and an ONNX model of the
CNN subset today's vision exporters emit imported as a trainnet net and its weights.

``onnx`` (and ``onnxruntime``, the tests' independent reference) come with the ``onnx`` extra;
they load on first use, so nothing of trainnet needs them until a conversion does.
"""
