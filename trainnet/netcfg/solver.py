"""The solver config: Caffe's SolverParameter fields and defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import BeforeValidator, Field, ValidationError, ValidationInfo, field_validator

from trainnet.netcfg.common import Strict, _as_list
from trainnet.netcfg.errors import located
from trainnet.netcfg.prototxt import is_prototxt, read_file, read_solver
from trainnet.netcfg.source import SourceMap, load_yaml, load_yaml_text

IntList = Annotated[list[Annotated[int, Field(ge=0)]], BeforeValidator(_as_list)]


class SolverConfig(Strict):
    net: str = Field(min_length=1)            # path of the net config, relative to the solver file
    test_iter: IntList = []                   # one entry per test net (here: the net in TEST phase)
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
    snapshot_prefix: str = ""   # empty: the solver file's path without its extension (Caffe)
    snapshot_after_train: bool = True
    random_seed: int = -1
    type: str = "SGD"
    solver_mode: Literal["CPU", "GPU"] = "CPU"
    device_id: int = Field(0, ge=0)
    debug_info: bool = False
    file: Optional[str] = None

    @field_validator("test_interval")
    @classmethod
    def _needs_test_iter(cls, value: int, info: ValidationInfo) -> int:
        # a field validator (test_iter comes first), so the error points at test_interval's line
        if value and "test_iter" in info.data and not info.data["test_iter"]:
            raise ValueError("set, but test_iter is not: give the number of test batches per test")
        return value

    @field_validator("test_iter")
    @classmethod
    def _one_test_net(cls, value: list[int]) -> list[int]:
        if len(value) > 1:
            raise ValueError(f"lists {len(value)} values, but there is one test net (the net in "
                             "phase TEST): give one number of test batches")
        return value

    @property
    def net_path(self) -> Path:
        """The net file: relative to the solver file; failing that, to the working directory
        (where Caffe's own solvers, run from Caffe's root, expect it); ``zoo:NAME`` as it is."""
        net = Path(self.net)
        if self.net.startswith("zoo:") or net.is_absolute():
            return net
        base = Path(self.file).resolve().parent if self.file else Path.cwd()
        if not (base / net).exists() and net.exists():
            return net.resolve()
        return base / net


SOLVER_KEYS = tuple(k for k in SolverConfig.model_fields if k != "file")


def parse_solver(data: Any, src: SourceMap) -> SolverConfig:
    if not isinstance(data, dict):
        raise src.error((), "a solver config is a mapping of Caffe's SolverParameter fields")
    try:
        cfg = SolverConfig.model_validate({**data, "file": src.file})
    except ValidationError as exc:
        raise located(exc, src, known_keys=SOLVER_KEYS) from None
    from trainnet.solver.lr_policy import check_policy, lr_policy
    from trainnet.solver.update import update_rule

    for key, lookup in (("lr_policy", lr_policy), ("type", update_rule)):
        try:
            lookup(getattr(cfg, key))
        except KeyError as exc:
            raise src.error((key,), exc.args[0]) from None
    for key, check in (("lr_policy", check_policy), ("type", update_rule(cfg.type).check)):
        try:
            check(cfg)
        except ValueError as exc:
            raise src.error((key,), str(exc)) from None
    return cfg


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
