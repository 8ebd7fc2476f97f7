"""``--set KEY=VALUE``: changing a solver or a net for one run without editing its files.

A key is a solver field (``base_lr``, ``train_state.level``) or ``NET.LAYER.FIELD`` for a field
of a layer of one of the solver's nets: ``net`` (the net or net_param: the train net and the
generic test nets), ``train_net`` or ``test_net`` (``test_net.I`` when the solver names several: changing one of
several test net files makes every test net inline, in their order).  A layer name stands for
every layer of that name (a TRAIN and a TEST data layer alike: the run says so in a line);
``LAYER@TRAIN`` or ``LAYER@TEST`` only the one of that phase (or of both).  An
integer part indexes a list (``net.conv1.param.0.lr_mult``, ``test_iter.0``).  A value
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


def _put(data: dict, path: tuple[str, ...], value: Any, override: Override) -> tuple:
    """Set ``data[path[0]][path[1]]... = value``, making the mappings on the way; an integer
    part indexes a list (``param.0.lr_mult``, ``test_iter.0``).  Returns the path with those
    parts as integers."""
    done: list = []
    for depth, key in enumerate(path):
        last = depth == len(path) - 1
        where = ".".join(map(str, done)) or "the solver"
        if isinstance(data, list):
            if not key.isdigit():
                raise override.error(f"{where} is a list: expects an index (0 to "
                                     f"{len(data) - 1}), not {key}")
            if int(key) >= len(data):
                raise override.error(f"{where} has {len(data)} element(s): index {key} is out "
                                     f"of range (0 to {len(data) - 1})")
            key = int(key)
        elif not isinstance(data, dict):
            raise override.error(f"{where} is neither a mapping nor a list, so it has no "
                                 f"field {key}")
        done.append(key)
        if last:
            data[key] = value
            break
        if isinstance(data, dict):
            data.setdefault(key, {})
        nxt = data[key]
        if path[depth + 1].isdigit() and not isinstance(nxt, list) and \
                not (isinstance(nxt, dict) and path[depth + 1] in nxt) and nxt != {}:
            data[key] = nxt = [nxt]  # a repeated field given one value (test_iter: 100)
        data = nxt
    return tuple(done)


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


def load_solver_with(path: str | Path, overrides: list[Override],
                     notes: list[str] | None = None) -> SolverConfig:
    """The solver of ``path`` with ``overrides`` applied, validated as a file is; ``notes``
    gets a line for each override that changed several layers of one name."""
    data, src = _read_solver(path)
    data = copy.deepcopy(data)
    plain = [o for o in overrides if not o.is_net]
    for i, o in enumerate(plain):
        if not isinstance(data, dict):
            break  # parse_solver says what is wrong with the file
        _mark(src, _put(data, o.path, o.value, o), i)
    try:
        cfg = parse_solver(data, src)
    except ConfigError as exc:
        raise _relocated(exc, plain, lambda o: (None, o.path[0])) from None
    targets: dict[tuple[str, int], list[Override]] = {}
    for o in overrides:
        if o.is_net:
            targets.setdefault(_target(cfg, o), []).append(o)
    base, tests = cfg, {}
    for (kind, index), group in targets.items():
        net = _overridden(base, kind, index, group, data, src, notes)
        if kind == "test_net":
            tests[index] = net
        else:
            cfg = cfg.model_copy(update={kind: None, f"{kind}_param": net})
    if tests:
        inline, files = list(base.test_net_param), list(base.test_net)
        if max(tests) >= len(inline):  # a file's net is changed: every test net becomes inline,
            inline += [parse_net(*_read_net(base.resolve(n))) for n in files]  # in their order
            files = []
        for index, net in tests.items():
            inline[index] = net
        cfg = cfg.model_copy(update={"test_net_param": inline, "test_net": files})
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


def _phases(layer: dict) -> str:
    """The phases a layer's include rules name (TRAIN, TEST; empty: both)."""
    rules = layer.get("include") or []
    rules = rules if isinstance(rules, list) else [rules]
    return ", ".join(str(r["phase"]) for r in rules if isinstance(r, dict) and r.get("phase"))


def _overridden(cfg, kind, index, overrides, data, src, notes):
    """The net ``kind`` (test net ``index``) with ``overrides`` applied, parsed."""
    raw, net_src = _net_data(cfg, kind, index, data, src)
    raw = copy.deepcopy(raw)
    layers = raw.get("layer") if isinstance(raw, dict) else None
    layers = layers if isinstance(layers, list) else []
    names = [d.get("name") for d in layers if isinstance(d, dict)]

    def skip(o: Override) -> int:  # the parts before LAYER: net, or test_net and its index
        return 2 if kind == "test_net" and o.path[1].isdigit() and len(o.path) > 3 else 1

    for i, o in enumerate(overrides):
        layer, field = o.path[skip(o)], o.path[skip(o) + 1:]
        layer, at_sign, phase = layer.partition("@")
        if not field:
            raise o.error(f"expects {'.'.join(o.path[:skip(o)])}.LAYER.FIELD=VALUE")
        if at_sign and phase not in ("TRAIN", "TEST"):
            raise o.error(f"{layer}@{phase}: expects LAYER@TRAIN or LAYER@TEST")
        if layer not in names:
            close = difflib.get_close_matches(layer, [str(n) for n in names], n=1, cutoff=0.5)
            raise o.error(f"no layer '{layer}'" + (f"; did you mean '{close[0]}'?" if close else
                          f"; its layers: {', '.join(map(str, dict.fromkeys(names)))}"))
        changed = []
        for at, d in enumerate(layers):
            if isinstance(d, dict) and d.get("name") == layer and \
                    (not phase or phase in _phases(d) or not _phases(d)):
                _mark(net_src, ("layer", at) + _put(d, field, o.value, o), i)
                changed.append(_phases(d) or "both phases")
        if not changed:
            raise o.error(f"no layer '{layer}' in the {phase} phase")
        if len(changed) > 1 and notes is not None:
            notes.append(f"--set {'.'.join(o.path)}: "
                         f"{len(changed)} layers named '{layer}' ({', '.join(changed)}) changed"
                         + ("" if phase else " (LAYER@TRAIN or LAYER@TEST changes one)"))
    try:
        net = parse_net(raw, net_src)
    except ConfigError as exc:
        raise _relocated(exc, overrides, lambda o: (o.path[skip(o)].partition("@")[0],
                                                    o.path[skip(o) + 1])) from None
    return net


def check_keys(overrides: list[Override]) -> None:
    """Refuse the same key given twice (the later would silently win)."""
    seen = set()
    for o in overrides:
        if o.path in seen:
            raise TrainnetError(f"--set {'.'.join(o.path)} is given twice")
        seen.add(o.path)
