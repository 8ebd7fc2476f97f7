"""The solver config: Caffe's SolverParameter fields and defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import BeforeValidator, Field, ValidationError, ValidationInfo, field_validator

from trainnet.netcfg.common import NetState, Repeated, Strict, StrList, _as_list
from trainnet.netcfg.errors import located
from trainnet.netcfg.kind import refuse_other_kind
from trainnet.netcfg.lr_policies import POLICIES, check_policy
from trainnet.netcfg.net import NetConfig, parse_net
from trainnet.netcfg.prototxt import SOLVER_NETS, is_prototxt, read_file, read_solver
from trainnet.netcfg.solver_types import TYPES, check_solver_type
from trainnet.netcfg.source import SourceMap, load_yaml, load_yaml_text

IntList = Annotated[list[Annotated[int, Field(ge=0)]], BeforeValidator(_as_list)]
TRAIN_NET_FIELDS = ("net", "net_param", "train_net", "train_net_param")


class SolverConfig(Strict):
    # The train net: exactly one of these four (Caffe's CHECK).  Paths are relative to the
    # solver file, failing that to the working directory; an inline net is a net config.
    net: Optional[str] = Field(None, min_length=1)   # train net, and the generic test net
    net_param: Optional[NetConfig] = None
    train_net: Optional[str] = Field(None, min_length=1)
    test_net: StrList = []
    train_net_param: Optional[NetConfig] = Field(None, validate_default=True)
    test_net_param: Repeated[NetConfig] = []
    # Test nets, in Caffe's order: test_net_param, then test_net files, then copies of the
    # generic net (net or net_param) for the remaining test_iter entries.
    test_iter: IntList = Field([], validate_default=True)   # one entry per test net
    # Merged over each net's own state (a set level overrides, stages append); the phase is
    # always TRAIN for the train net and TEST for the test nets, as in Caffe.
    train_state: NetState = NetState()
    test_state: Repeated[NetState] = Field([], validate_default=True)   # none or one per test net
    test_interval: int = Field(0, ge=0)
    test_initialization: bool = True
    test_compute_loss: bool = False
    base_lr: float = Field(0.01, ge=0)
    display: int = Field(0, ge=0)
    average_loss: int = Field(1, ge=1)
    max_iter: int = Field(0, ge=0)
    iter_size: int = Field(1, ge=1)
    lr_policy: str = "fixed"
    gamma: float = 0.0
    power: float = 0.0
    stepsize: int = Field(0, ge=0)
    stepvalue: IntList = []
    momentum: float = Field(0.0, ge=0)
    momentum2: float = Field(0.999, ge=0, lt=1)   # Adam's beta2
    delta: float = Field(1e-8, gt=0)              # AdaGrad, RMSProp, AdaDelta, Adam
    rms_decay: float = Field(0.99, ge=0, lt=1)    # RMSProp
    weight_decay: float = Field(0.0, ge=0)
    regularization_type: Literal["L2", "L1"] = "L2"
    clip_gradients: float = -1.0
    snapshot: int = Field(0, ge=0)
    # a path prefix, not a folder (Caffe): "out/" writes out/_iter_N.caffemodel; empty: the
    # solver file's path without its extension
    snapshot_prefix: str = ""
    snapshot_keep: int = Field(0, ge=0)   # keep only the newest N snapshots (0: all); not Caffe's
    # BINARYPROTO (.caffemodel + .solverstate) or HDF5 (.caffemodel.h5 + .solverstate.h5) as
    # Caffe writes them, or trainnet's SAFETENSORS pair; unset: BINARYPROTO for a prototxt
    # solver (Caffe's default), SAFETENSORS for a YAML one.
    snapshot_format: Optional[Literal["BINARYPROTO", "HDF5", "SAFETENSORS"]] = None
    snapshot_after_train: bool = True
    random_seed: int = -1
    type: str = "SGD"
    solver_mode: Literal["CPU", "GPU"] = "CPU"
    device_id: int = Field(0, ge=0)
    # at display iterations, each layer's mean absolute data and diff (Caffe's Net debug_info);
    # the nets are then compiled without fusion (no ReLU folded into its Convolution or
    # InnerProduct, no Scale into its BatchNorm), so that every layer has its own lines as in
    # Caffe: each iteration runs slower (an extra pass over each such top, forward and backward)
    debug_info: bool = False
    # warn once of a finite loss over this many times its running average (0: never); not Caffe's
    loss_explosion_factor: float = Field(10.0, ge=0)
    file: Optional[str] = None

    @field_validator("test_interval")
    @classmethod
    def _needs_test_iter(cls, value: int, info: ValidationInfo) -> int:
        # a field validator (test_iter comes first), so the error points at test_interval's line
        if value and "test_iter" in info.data and not info.data["test_iter"]:
            raise ValueError("set, but test_iter is not: give the number of test batches per test")
        return value

    @field_validator("train_net_param")
    @classmethod
    def _one_train_net(cls, value: Optional[NetConfig], info: ValidationInfo):
        given = [k for k in TRAIN_NET_FIELDS[:-1] if info.data.get(k) is not None]
        problem = train_net_problem(given + (["train_net_param"] if value is not None else []))
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("test_iter")
    @classmethod
    def _one_test_iter_per_test_net(cls, value: list[int], info: ValidationInfo) -> list[int]:
        named = len(info.data.get("test_net", [])) + len(info.data.get("test_net_param", []))
        generic = info.data.get("net") is not None or info.data.get("net_param") is not None
        if len(value) < named or (len(value) > named and not generic):
            raise ValueError(f"lists {_count(len(value), 'value')}, but the solver names "
                             f"{_count(named, 'test net')} (test_net_param, test_net): give one "
                             "number of test batches per test net" + ("" if len(value) < named else
                             "; more are for copies of net or net_param, which it lacks"))
        return value

    @field_validator("test_state")
    @classmethod
    def _one_test_state_per_test_net(cls, value: list[NetState], info: ValidationInfo):
        nets = len(info.data.get("test_iter", []))
        if value and len(value) != nets:
            raise ValueError(f"{_count(len(value), 'state')} for {_count(nets, 'test net')} (one "
                             "per test_iter entry): give none or one per test net")
        return value

    def resolve(self, name: str) -> Path:
        """A net file named in this solver: relative to the solver file; failing that, to the
        working directory (where Caffe's own solvers, run from Caffe's root, expect it);
        ``zoo:NAME`` as it is."""
        net = Path(name)
        if name.startswith("zoo:") or net.is_absolute():
            return net
        base = Path(self.file).resolve().parent if self.file else Path.cwd()
        if not (base / net).exists() and net.exists():
            return net.resolve()
        return base / net

    @property
    def snapshot_kind(self) -> str:
        """snapshot_format, or its default: Caffe's BINARYPROTO for a prototxt solver,
        trainnet's SAFETENSORS for a YAML one."""
        if self.snapshot_format:
            return self.snapshot_format
        return "BINARYPROTO" if self.file and is_prototxt(self.file) else "SAFETENSORS"

    @property
    def net_path(self) -> Optional[Path]:
        """The file ``net`` names (None without ``net``)."""
        return None if self.net is None else self.resolve(self.net)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def train_net_problem(given: list[str]) -> Optional[str]:
    """Caffe's CHECK: a solver names its train net by exactly one of TRAIN_NET_FIELDS."""
    if len(given) == 1:
        return None
    which = f"gives {len(given)}: {', '.join(given)}" if given else "gives none"
    return f"a solver names its train net by exactly one of {', '.join(TRAIN_NET_FIELDS)}; this one {which}"


SOLVER_KEYS = tuple(k for k in SolverConfig.model_fields if k != "file")


def parse_solver(data: Any, src: SourceMap) -> SolverConfig:
    if not isinstance(data, dict):
        raise src.error((), "a solver config is a mapping of Caffe's SolverParameter fields")
    refuse_other_kind(data, src, "solver")  # a net file given as the solver: say so
    given = [k for k in TRAIN_NET_FIELDS if k in data]
    problem = train_net_problem(given)
    if problem:
        raise src.error((given[-1],) if given else (), problem)
    try:
        cfg = SolverConfig.model_validate({**_inline_nets(data, src), "file": src.file})
    except ValidationError as exc:
        raise located(exc, src, known_keys=SOLVER_KEYS) from None
    if cfg.test_iter and not cfg.test_interval:
        raise src.error(("test_iter",), f"gives {_count(len(cfg.test_iter), 'test net')} but "
                        "test_interval is 0, so none would ever run: set test_interval (Caffe "
                        "requires it > 0 when there are test nets)")
    for key, table in (("lr_policy", POLICIES), ("type", TYPES)):
        try:
            table[getattr(cfg, key)]
        except KeyError as exc:
            raise src.error((key,), exc.args[0]) from None
    for key, check in (("lr_policy", check_policy), ("type", check_solver_type)):
        try:
            check(cfg)
        except ValueError as exc:
            raise src.error((key,), str(exc)) from None
    return cfg


def _inline_nets(data: dict, src: SourceMap) -> dict:
    """``data`` with its inline nets (net_param ...) parsed as net configs (lines kept)."""
    out = dict(data)
    for key in SOLVER_NETS:
        if key not in data:
            continue
        if key != "test_net_param":
            out[key] = parse_net(data[key], src.sub((key,)))
        elif isinstance(data[key], list):
            out[key] = [parse_net(d, src.sub((key, i))) for i, d in enumerate(data[key])]
        else:
            out[key] = [parse_net(data[key], src.sub((key,)))]
    return out


def load_solver(path: str | Path) -> SolverConfig:
    """A solver from a YAML or prototxt file (by suffix)."""
    if is_prototxt(path):
        return load_solver_text(read_file(path), str(path))
    data, src = load_yaml(path)
    return parse_solver(data, src)


def load_solver_text(text: str, file: str = "<string>") -> SolverConfig:
    """A solver from text: prototxt when ``file`` has a prototxt suffix, else YAML."""
    data, src = read_solver(text, file) if is_prototxt(file) else load_yaml_text(text, file)
    return parse_solver(data, src)
