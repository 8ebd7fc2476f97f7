"""The nets a solver trains and tests, each with its state (Caffe's Solver::InitTrainNet and
InitTestNets).

The train net is the one of net, net_param, train_net, train_net_param that the solver gives.
The test nets come in Caffe's order: every test_net_param, then every test_net file, then, for
the test_iter entries left over, copies of the generic net (net or net_param).  Each net's state
is its phase (TRAIN for the train net, TEST for test nets, whatever the files say), then the
net's own ``state``, then the solver's train_state or test_state merged over it as protobuf's
MergeFrom does: a level the solver sets overrides, stages append.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from trainnet.netcfg.common import NetState
from trainnet.netcfg.net import NetConfig, load_net
from trainnet.netcfg.solver import SolverConfig


@dataclass(frozen=True)
class SolverNet:
    cfg: NetConfig
    state: NetState
    source: str          # where it came from, in Caffe's log words ("net file: x.prototxt")


def merge_state(phase: str, own: NetState, given: Optional[NetState] = None) -> NetState:
    level, stage = own.level, list(own.stage)
    if given is not None:
        if "level" in given.model_fields_set:
            level = given.level
        stage += given.stage
    return NetState(phase=phase, level=level, stage=stage)


def _file(cfg: SolverConfig, field: str, name: str) -> tuple[NetConfig, str]:
    return load_net(cfg.resolve(name)), f"{field} file: {name}"


def solver_train_net(cfg: SolverConfig) -> SolverNet:
    if cfg.train_net_param is not None:
        net, source = cfg.train_net_param, "train_net_param"
    elif cfg.train_net is not None:
        net, source = _file(cfg, "train_net", cfg.train_net)
    elif cfg.net_param is not None:
        net, source = cfg.net_param, "net_param"
    else:
        net, source = _file(cfg, "net", cfg.net)
    return SolverNet(net, merge_state("TRAIN", net.state, cfg.train_state), source)


def solver_test_nets(cfg: SolverConfig) -> list[SolverNet]:
    nets = [(net, "test_net_param") for net in cfg.test_net_param]
    nets += [_file(cfg, "test_net", name) for name in cfg.test_net]
    generic = len(cfg.test_iter) - len(nets)
    if generic > 0:
        if cfg.net_param is not None:
            nets += [(cfg.net_param, "net_param")] * generic
        elif cfg.net is not None:
            nets += [_file(cfg, "net", cfg.net)] * generic
    states = cfg.test_state or [None] * len(nets)
    return [SolverNet(net, merge_state("TEST", net.state, given), source)
            for (net, source), given in zip(nets, states)]
