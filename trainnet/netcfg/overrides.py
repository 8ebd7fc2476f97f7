"""``--set KEY=VALUE``: changing a solver or a net for one run without editing its files.

A key is a solver field (``base_lr``, ``train_state.level``) or ``NET.LAYER.FIELD`` for a field
of a layer of one of the solver's nets: ``net`` (the net or net_param: the train net and the
generic test nets), ``train_net`` or ``test_net`` (``test_net.I`` when the solver names several).
A layer name stands for every layer of that name (a TRAIN and a TEST data layer alike).  A value
is read as YAML (``0.001``, ``[1, 2]``, ``{type: xavier}``).  The changed data is validated by
the same parsers as the files, and an error names the ``--set`` it comes from.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainnet.errors import ConfigError, ConfigErrors, TrainnetError
from trainnet.netcfg.kind import refuse_other_kind
from trainnet.netcfg.net import net_file, parse_net
from trainnet.netcfg.prototxt import is_prototxt, read_file, read_net, read_solver
from trainnet.netcfg.solver import SolverConfig, parse_solver
from trainnet.netcfg.source import SourceMap, load_yaml, load_yaml_text

NETS = ("net", "train_net", "test_net")


@dataclass(frozen=True)
class Override:
    text: str                 # as given: "net.conv1.num_output=32"
    path: tuple[str, ...]     # ("net", "conv1", "num_output")
    value: Any

    @property
    def is_net(self) -> bool:
        return len(self.path) > 1 and self.path[0] in NETS

    def error(self, message: str) -> ConfigError:
        return ConfigError(message, file=f"--set {self.text}")


def parse_override(text: str) -> Override:
    """``KEY=VALUE`` (``KEY: VALUE`` too) with VALUE read as YAML."""
    key, sep, value = text.partition("=")
    if not sep:
        key, sep, value = text.partition(":")
    key = key.strip()
    path = tuple(key.split("."))
    if not sep or not key or not all(path):
        raise ConfigError("expects KEY=VALUE (a solver field, or net.LAYER.FIELD)",
                          file=f"--set {text}")
    data, _ = load_yaml_text(value.strip() or "''", f"--set {text}")
    return Override(text, path, data)


def _put(data: dict, path: tuple[str, ...], value: Any, override: Override) -> None:
    """Set ``data[path[0]][path[1]]... = value``, making the mappings on the way."""
    for key in path[:-1]:
        if not isinstance(data.get(key, {}), dict):
            raise override.error(f"{key} is not a mapping, so it has no field {path[-1]}")
        data = data.setdefault(key, {})
    data[path[-1]] = value


def _mark(src: SourceMap, path: tuple, index: int) -> None:
    """Place the value an override set at a line of its own (-1 - its index), so that an error
    the parser locates there is said of the override."""
    for p in [p for p in src.lines if p[:len(path)] == path]:
        del src.lines[p]
    src.lines[path] = -1 - index


def _relocated(exc: ConfigError, overrides: list[Override], field_of) -> ConfigError:
    """``exc`` (one error or several) with each error that an override caused said of it."""
    errors = exc.errors if isinstance(exc, ConfigErrors) else [exc]
    out = []
    for err in errors:
        root = (err.field or "").split(".")[0].split("[")[0]
        cause = next((o for o in reversed(overrides) if field_of(o) == (err.layer, root)), None)
        if err.line is not None and -len(overrides) <= err.line < 0:
            cause = overrides[-1 - err.line]
        if cause is not None:
            err = ConfigError(err.message, file=f"--set {cause.text}", layer=err.layer,
                              layer_type=err.layer_type, field=err.field)
        out.append(err)
    return ConfigErrors.of(out)


def _read_solver(path: str | Path) -> tuple[Any, SourceMap]:
    if is_prototxt(path):
        return read_solver(read_file(path), str(path))
    return load_yaml(path)


def _read_net(path: str | Path) -> tuple[Any, SourceMap]:
    path = net_file(path)
    data, src = read_net(read_file(path), str(path)) if is_prototxt(path) else load_yaml(path)
    refuse_other_kind(data, src, "net")
    return data, src


def load_solver_with(path: str | Path, overrides: list[Override]) -> SolverConfig:
    """The solver of ``path`` with ``overrides`` applied, validated as a file is."""
    data, src = _read_solver(path)
    data = copy.deepcopy(data)
    plain = [o for o in overrides if not o.is_net]
    for i, o in enumerate(plain):
        if not isinstance(data, dict):
            break  # parse_solver says what is wrong with the file
        _put(data, o.path, o.value, o)
        _mark(src, o.path, i)
    try:
        cfg = parse_solver(data, src)
    except ConfigError as exc:
        raise _relocated(exc, plain, lambda o: (None, o.path[0])) from None
    targets: dict[tuple[str, int], list[Override]] = {}
    for o in overrides:
        if o.is_net:
            targets.setdefault(_target(cfg, o), []).append(o)
    for (kind, index), group in targets.items():
        cfg = _with_net(cfg, kind, index, group, data, src)
    return cfg


def _target(cfg: SolverConfig, o: Override) -> tuple[str, int]:
    """Which net an override changes: (field, index among the test nets)."""
    kind = o.path[0]
    if kind == "test_net":
        count = len(cfg.test_net_param) + len(cfg.test_net)
        head = o.path[1]
        if head.isdigit() and len(o.path) > 3:
            if int(head) >= count:
                raise o.error(f"the solver names {count} test net(s) (test_net_param, test_net)")
            return kind, int(head)
        if count != 1:
            raise o.error(f"the solver names {count} test nets (test_net_param, test_net): say "
                          "which, as test_net.I.LAYER.FIELD" if count else
                          "the solver names no test_net or test_net_param (the generic net: net.)")
        return kind, 0
    given = {"net": cfg.net or cfg.net_param, "train_net": cfg.train_net or cfg.train_net_param}
    if not given[kind]:
        raise o.error(f"the solver has no {kind} (nor {kind}_param)"
                      + ("; its train net is net (net.LAYER.FIELD)" if kind == "train_net" else
                         "; its train net is train_net (train_net.LAYER.FIELD)"))
    return kind, 0


def _net_data(cfg: SolverConfig, kind: str, index: int, data: dict, src: SourceMap):
    """The raw data and source map of the net an override changes."""
    if kind == "test_net":
        inline = len(cfg.test_net_param)
        if index < inline:
            raw = data["test_net_param"]
            raw = raw if isinstance(raw, list) else [raw]
            sub = ("test_net_param", index) if isinstance(data["test_net_param"], list) else \
                ("test_net_param",)
            return raw[index], src.sub(sub)
        return _read_net(cfg.resolve(cfg.test_net[index - inline]))
    name = getattr(cfg, kind)
    if name is not None:
        return _read_net(cfg.resolve(name))
    return data[f"{kind}_param"], src.sub((f"{kind}_param",))


def _with_net(cfg, kind, index, overrides, data, src) -> SolverConfig:
    raw, net_src = _net_data(cfg, kind, index, data, src)
    raw = copy.deepcopy(raw)
    layers = raw.get("layer") if isinstance(raw, dict) else None
    layers = layers if isinstance(layers, list) else []
    names = [d.get("name") for d in layers if isinstance(d, dict)]
    skip = 2 if kind == "test_net" and overrides[0].path[1].isdigit() else 1
    for i, o in enumerate(overrides):
        layer, field = o.path[skip], o.path[skip + 1:]
        if not field:
            raise o.error(f"expects {'.'.join(o.path[:skip])}.LAYER.FIELD=VALUE")
        if layer not in names:
            close = difflib.get_close_matches(layer, [str(n) for n in names], n=1, cutoff=0.5)
            raise o.error(f"no layer '{layer}'" + (f"; did you mean '{close[0]}'?" if close else
                          f"; its layers: {', '.join(map(str, dict.fromkeys(names)))}"))
        for at, d in enumerate(layers):
            if isinstance(d, dict) and d.get("name") == layer:
                _put(d, field, o.value, o)
                _mark(net_src, ("layer", at) + field, i)
    try:
        net = parse_net(raw, net_src)
    except ConfigError as exc:
        raise _relocated(exc, overrides, lambda o: (o.path[skip], o.path[skip + 1])) from None
    if kind == "test_net":
        inline = list(cfg.test_net_param)
        files = list(cfg.test_net)
        if index < len(inline):
            inline[index] = net
        else:  # a file's net becomes inline: test_net_param entries come first, as in Caffe
            del files[index - len(inline)]
            inline.append(net)
            if files:
                raise overrides[0].error("overriding one of several test_net files: not "
                                         "supported (it would reorder the test nets)")
        return cfg.model_copy(update={"test_net_param": inline, "test_net": files})
    return cfg.model_copy(update={kind: None, f"{kind}_param": net})


def check_keys(overrides: list[Override]) -> None:
    """Refuse the same key given twice (the later would silently win)."""
    seen = set()
    for o in overrides:
        if o.path in seen:
            raise TrainnetError(f"--set {'.'.join(o.path)} is given twice")
        seen.add(o.path)
