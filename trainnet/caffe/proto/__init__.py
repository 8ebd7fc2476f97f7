"""Caffe's protobuf messages (``trainnet.caffe.proto.caffe_pb2``), as pycaffe's ``caffe.proto``."""
