"""Caffe's messages as protobuf classes, for scripts written against pycaffe's ``caffe_pb2``:
``text_format.Parse(open("net.prototxt").read(), caffe_pb2.NetParameter())``,
``net.ParseFromString(open("x.caffemodel", "rb").read())``, ``caffe_pb2.TRAIN``,
``caffe_pb2.PoolingParameter.MAX``.

No protoc and no generated code: the file descriptor is built at import from trainnet's config
schema with Caffe's field numbers (``schema``, ``numbers``), so binary messages interoperate with
Caffe's.  The messages live in a private descriptor pool: a real ``caffe_pb2`` imported in the
same process does not clash with them.  ``UNNUMBERED`` names any schema field left out for want of
a Caffe number (a test keeps it empty).
"""

from __future__ import annotations

import importlib

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from trainnet.caffe.proto.numbers import PHASE
from trainnet.caffe.proto.schema import build

importlib.import_module("trainnet.layers")  # every layer type: their Params make the messages
_built = build()
UNNUMBERED: tuple[str, ...] = tuple(_built.unnumbered)
_pool = descriptor_pool.DescriptorPool()
DESCRIPTOR = _pool.Add(_built.fd)
if DESCRIPTOR is None:  # protobuf versions whose Add returns nothing
    DESCRIPTOR = _pool.FindFileByName(_built.fd.name)


def _message_class(name: str) -> type:
    descriptor = _pool.FindMessageTypeByName(f"caffe.{name}")
    get = getattr(message_factory, "GetMessageClass", None)
    if get is None:  # protobuf < 4.22
        return message_factory.MessageFactory(_pool).GetPrototype(descriptor)
    return get(descriptor)


MESSAGE_NAMES: tuple[str, ...] = tuple(sorted(_built.messages))
globals().update({name: _message_class(name) for name in MESSAGE_NAMES})
Phase = EnumTypeWrapper(_pool.FindEnumTypeByName("caffe.Phase"))
TRAIN, TEST = PHASE["TRAIN"], PHASE["TEST"]
del _built
