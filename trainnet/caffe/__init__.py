"""pycaffe's API over trainnet's own objects: ``from trainnet import caffe`` where a script had
``import caffe``.  A facade, no second implementation: ``caffe.Net`` compiles and runs the same
plans as ``trainnet train``, with every blob kept readable."""

import importlib

from trainnet.caffe import io, proto
from trainnet.caffe.blob import Blob
from trainnet.caffe.classifier import Classifier
from trainnet.caffe.mode import (TEST, TRAIN, set_device, set_mode_cpu, set_mode_gpu,
                                 set_random_seed)
from trainnet.caffe.net import Net
from trainnet.layers.base import known_types
from trainnet.layers.python import PythonLayer as Layer
from trainnet.caffe.net_spec import NetSpec, layers, params, to_proto
from trainnet.caffe.solver import (AdaDeltaSolver, AdaGradSolver, AdamSolver, NesterovSolver,
                                   RMSPropSolver, SGDSolver, Solver, get_solver)

importlib.import_module("trainnet.layers")  # registers every layer type with netcfg
importlib.import_module("trainnet.zoo")     # zoo:NAME net names


def layer_type_list() -> list[str]:
    """Every layer type trainnet knows, sorted (pycaffe's caffe.layer_type_list)."""
    return sorted(known_types())


__all__ = ["AdaDeltaSolver", "AdaGradSolver", "AdamSolver", "Blob", "Classifier", "Layer",
           "NesterovSolver", "Net", "NetSpec", "RMSPropSolver", "SGDSolver", "Solver", "TEST",
           "TRAIN", "get_solver", "io", "layer_type_list", "layers", "params", "proto",
           "set_device", "set_mode_cpu", "set_mode_gpu", "set_random_seed", "to_proto"]
