"""Config files: YAML readers, the pydantic schema (Caffe's field names) and error reporting."""

from trainnet.netcfg.common import FillerParameter, NetState, NetStateRule, ParamSpec
from trainnet.netcfg.net import (LayerConfig, NetConfig, dump_layer, dump_net, load_net,
                                 load_net_text, parse_net)
from trainnet.netcfg.solver import SolverConfig, load_solver, load_solver_text

__all__ = ["FillerParameter", "LayerConfig", "NetConfig", "NetState", "NetStateRule", "ParamSpec",
           "SolverConfig", "dump_layer", "dump_net", "load_net", "load_net_text", "load_solver",
           "load_solver_text", "parse_net"]
