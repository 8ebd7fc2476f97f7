"""Caffe's protobuf messages (``trainnet.caffe.proto.caffe_pb2``), as pycaffe's ``caffe.proto``."""

from trainnet.caffe.proto import caffe_pb2

__all__ = ["caffe_pb2"]
