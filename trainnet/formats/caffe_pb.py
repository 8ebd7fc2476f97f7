"""The part of Caffe's ``caffe.proto`` that its binary files use, built at import time: weights
(NetParameter), blobs and means (BlobProto), dataset records (Datum) and solver states
(SolverState; trainnet writes TrainnetSolverState, the same with one field added).

The messages are described as a FileDescriptorProto in Python (no protoc, no generated
``_pb2`` module), so any protobuf runtime >= 4.21 reads them.  Field numbers and types are
BVLC Caffe's; every field left out (the layer parameters, solver settings ...) is an unknown
field to protobuf, which skips it when parsing.  The messages live in a private descriptor
pool, so a real ``caffe_pb2`` imported in the same process does not clash with them.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto
OPTIONAL, REPEATED = F.LABEL_OPTIONAL, F.LABEL_REPEATED

# V1LayerParameter.LayerType: the layer types of Caffe's V1 format (``layers { type: CONVOLUTION }``).
V1_LAYER_TYPES = {
    "NONE": 0, "ABSVAL": 35, "ACCURACY": 1, "ARGMAX": 30, "BNLL": 2, "CONCAT": 3,
    "CONTRASTIVE_LOSS": 37, "CONVOLUTION": 4, "DATA": 5, "DECONVOLUTION": 39, "DROPOUT": 6,
    "DUMMY_DATA": 32, "EUCLIDEAN_LOSS": 7, "ELTWISE": 25, "EXP": 38, "FLATTEN": 8,
    "HDF5_DATA": 9, "HDF5_OUTPUT": 10, "HINGE_LOSS": 28, "IM2COL": 11, "IMAGE_DATA": 12,
    "INFOGAIN_LOSS": 13, "INNER_PRODUCT": 14, "LRN": 15, "MEMORY_DATA": 29,
    "MULTINOMIAL_LOGISTIC_LOSS": 16, "MVN": 34, "POOLING": 17, "POWER": 26, "RELU": 18,
    "SIGMOID": 19, "SIGMOID_CROSS_ENTROPY_LOSS": 27, "SILENCE": 36, "SOFTMAX": 20,
    "SOFTMAX_LOSS": 21, "SPLIT": 22, "SLICE": 33, "TANH": 23, "WINDOW_DATA": 24, "THRESHOLD": 31,
}

SOLVER_STATE = [
    ("iter", 1, OPTIONAL, F.TYPE_INT32, None, False),
    ("learned_net", 2, OPTIONAL, F.TYPE_STRING, None, False),  # the .caffemodel beside it
    ("history", 3, REPEATED, F.TYPE_MESSAGE, "BlobProto", False),
    ("current_step", 4, OPTIONAL, F.TYPE_INT32, None, False),
]

# message -> [(field, number, label, type, message or enum type name, packed)]
MESSAGES = {
    "BlobShape": [("dim", 1, REPEATED, F.TYPE_INT64, None, True)],
    "BlobProto": [
        ("shape", 7, OPTIONAL, F.TYPE_MESSAGE, "BlobShape", False),
        ("data", 5, REPEATED, F.TYPE_FLOAT, None, True),
        ("diff", 6, REPEATED, F.TYPE_FLOAT, None, True),
        ("double_data", 8, REPEATED, F.TYPE_DOUBLE, None, True),
        ("double_diff", 9, REPEATED, F.TYPE_DOUBLE, None, True),
        ("num", 1, OPTIONAL, F.TYPE_INT32, None, False),       # 4-D dimensions, deprecated
        ("channels", 2, OPTIONAL, F.TYPE_INT32, None, False),
        ("height", 3, OPTIONAL, F.TYPE_INT32, None, False),
        ("width", 4, OPTIONAL, F.TYPE_INT32, None, False),
    ],
    "BlobProtoVector": [("blobs", 1, REPEATED, F.TYPE_MESSAGE, "BlobProto", False)],
    "Datum": [  # one record of an LMDB/LevelDB dataset
        ("channels", 1, OPTIONAL, F.TYPE_INT32, None, False),
        ("height", 2, OPTIONAL, F.TYPE_INT32, None, False),
        ("width", 3, OPTIONAL, F.TYPE_INT32, None, False),
        ("data", 4, OPTIONAL, F.TYPE_BYTES, None, False),       # uint8 pixels, CHW, or an image file
        ("label", 5, OPTIONAL, F.TYPE_INT32, None, False),
        ("float_data", 6, REPEATED, F.TYPE_FLOAT, None, False),
        ("encoded", 7, OPTIONAL, F.TYPE_BOOL, None, False),     # data holds a JPEG/PNG file
    ],
    "SolverState": SOLVER_STATE,
    # trainnet's SolverState: Caffe's four fields and, at a number Caffe leaves unused, what an
    # exact resume needs beyond them (data cursors, RNGs, the loss window) as safetensors bytes.
    # Caffe's parser keeps field 1000 as an unknown field and ignores it.
    "TrainnetSolverState": SOLVER_STATE + [("trainnet", 1000, OPTIONAL, F.TYPE_BYTES, None, False)],
    "LayerParameter": [
        ("name", 1, OPTIONAL, F.TYPE_STRING, None, False),
        ("type", 2, OPTIONAL, F.TYPE_STRING, None, False),
        ("bottom", 3, REPEATED, F.TYPE_STRING, None, False),
        ("top", 4, REPEATED, F.TYPE_STRING, None, False),
        ("phase", 10, OPTIONAL, F.TYPE_ENUM, "Phase", False),
        ("blobs", 7, REPEATED, F.TYPE_MESSAGE, "BlobProto", False),
    ],
    "V0LayerParameter": [
        ("name", 1, OPTIONAL, F.TYPE_STRING, None, False),
        ("type", 2, OPTIONAL, F.TYPE_STRING, None, False),
        ("blobs", 50, REPEATED, F.TYPE_MESSAGE, "BlobProto", False),
    ],
    "V1LayerParameter": [
        ("bottom", 2, REPEATED, F.TYPE_STRING, None, False),
        ("top", 3, REPEATED, F.TYPE_STRING, None, False),
        ("name", 4, OPTIONAL, F.TYPE_STRING, None, False),
        ("type", 5, OPTIONAL, F.TYPE_ENUM, "V1LayerParameter.LayerType", False),
        ("blobs", 6, REPEATED, F.TYPE_MESSAGE, "BlobProto", False),
        ("layer", 1, OPTIONAL, F.TYPE_MESSAGE, "V0LayerParameter", False),
    ],
    "NetParameter": [
        ("name", 1, OPTIONAL, F.TYPE_STRING, None, False),
        ("input", 3, REPEATED, F.TYPE_STRING, None, False),
        ("input_shape", 8, REPEATED, F.TYPE_MESSAGE, "BlobShape", False),
        ("input_dim", 4, REPEATED, F.TYPE_INT32, None, False),
        ("layer", 100, REPEATED, F.TYPE_MESSAGE, "LayerParameter", False),
        ("layers", 2, REPEATED, F.TYPE_MESSAGE, "V1LayerParameter", False),
    ],
}


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto(name="trainnet/caffe_subset.proto", package="caffe",
                                            syntax="proto2")
    phase = fd.enum_type.add(name="Phase")
    phase.value.add(name="TRAIN", number=0)
    phase.value.add(name="TEST", number=1)
    for name, fields in MESSAGES.items():
        msg = fd.message_type.add(name=name)
        for field, number, label, ftype, type_name, packed in fields:
            f = msg.field.add(name=field, number=number, label=label, type=ftype)
            if type_name:
                f.type_name = f".caffe.{type_name}"
            if packed:
                f.options.packed = True
        if name == "V1LayerParameter":
            enum = msg.enum_type.add(name="LayerType")
            for value, number in V1_LAYER_TYPES.items():
                enum.value.add(name=value, number=number)
    return fd


def _message_classes() -> dict[str, type]:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file_descriptor())
    get = getattr(message_factory, "GetMessageClass", None)
    if get is None:  # protobuf < 4.22 has only the factory's GetPrototype
        get = message_factory.MessageFactory(pool).GetPrototype
    return {name: get(pool.FindMessageTypeByName(f"caffe.{name}")) for name in MESSAGES}


_CLASSES = _message_classes()
BlobShape = _CLASSES["BlobShape"]
BlobProto = _CLASSES["BlobProto"]
BlobProtoVector = _CLASSES["BlobProtoVector"]
LayerParameter = _CLASSES["LayerParameter"]
V0LayerParameter = _CLASSES["V0LayerParameter"]
V1LayerParameter = _CLASSES["V1LayerParameter"]
NetParameter = _CLASSES["NetParameter"]
Datum = _CLASSES["Datum"]
SolverState = _CLASSES["SolverState"]
TrainnetSolverState = _CLASSES["TrainnetSolverState"]
