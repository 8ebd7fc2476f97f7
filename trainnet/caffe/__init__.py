"""pycaffe's API over trainnet's own objects: ``from trainnet import caffe`` where a script had
``import caffe``.  A facade, no second implementation: ``caffe.Net`` compiles and runs the same
plans as ``trainnet train``, with every blob kept readable."""

import trainnet.layers  # noqa: F401  (registers every layer type with netcfg)
import trainnet.zoo  # noqa: F401  (zoo:NAME net names)
from trainnet.caffe import io, proto
from trainnet.caffe.proto import caffe_pb2  # noqa: F401  (caffe.proto.caffe_pb2, as pycaffe)
from trainnet.caffe.blob import Blob
from trainnet.caffe.classifier import Classifier
from trainnet.caffe.mode import (TEST, TRAIN, set_device, set_mode_cpu, set_mode_gpu,
                                 set_random_seed)
from trainnet.caffe.net import Net
from trainnet.layers.python import PythonLayer as Layer
from trainnet.caffe.net_spec import NetSpec, layers, params, to_proto
from trainnet.caffe.solver import (AdaDeltaSolver, AdaGradSolver, AdamSolver, NesterovSolver,
                                   RMSPropSolver, SGDSolver, Solver, get_solver)


def layer_type_list() -> list[str]:
    """Every layer type trainnet knows, sorted (pycaffe's caffe.layer_type_list)."""
    from trainnet.layers.base import known_types
    return sorted(known_types())


__all__ = ["AdaDeltaSolver", "AdaGradSolver", "AdamSolver", "Blob", "Classifier", "Layer",
           "NesterovSolver", "Net", "NetSpec", "RMSPropSolver", "SGDSolver", "Solver", "TEST",
           "TRAIN", "get_solver", "io", "layer_type_list", "layers", "params", "proto",
           "set_device", "set_mode_cpu", "set_mode_gpu", "set_random_seed", "to_proto"]
