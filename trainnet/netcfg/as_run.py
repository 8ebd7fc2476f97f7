"""A solver and its nets as a run uses them: ``resolved_files`` writes them out as YAML (the
``--set`` overrides applied, each net a file beside the solver, data paths as found), so that a
run can be repeated from its own folder.  The files are named ``{prefix}_run_solver.yaml``,
``{prefix}_run_net.yaml`` ..., names a user's own files do not take, and each starts with
``MARKER``: a run overwrites only a file that starts with it (``RunFiles`` checks); ``with_layer_default`` gives every layer that has a
field but leaves it unset a value (``--threads``: the data layers' ``workers``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from trainnet.netcfg.net import NetConfig, dump_net
from trainnet.netcfg.prototxt import SOLVER_NETS
from trainnet.netcfg.solver import SolverConfig
from trainnet.netcfg.yaml_scalars import Dumper

NETS = ("net", "train_net", "test_net")
# the fields of a layer naming data files (``transform_param.mean_file`` too)
PATH_FIELDS = ("source", "root_folder", "mean_file")
# the first line of every as-run file: trainnet overwrites no file that does not start with it
MARKER = "# trainnet as-run config"


def yaml_text(data: dict) -> str:
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, default_flow_style=None, width=100)


def _solver_nets(cfg: SolverConfig, load: Callable[[Path], NetConfig]):
    """(solver field, file suffix, NetConfig) for every net the solver names."""
    out = []
    for kind in ("net", "train_net"):
        net = getattr(cfg, f"{kind}_param")
        if net is None and getattr(cfg, kind) is not None:
            net = load(cfg.resolve(getattr(cfg, kind)))
        if net is not None:
            out.append((kind, f"_{kind}", net))
    tests = list(cfg.test_net_param) + [load(cfg.resolve(n)) for n in cfg.test_net]
    out += [("test_net", f"_test_net{i}", net) for i, net in enumerate(tests)]
    return out


def _absolute_paths(layer: dict, net: NetConfig, locate) -> None:
    """Relative data paths of ``layer`` made the absolute ones this run reads."""
    for holder in (layer, layer.get("transform_param")):
        if not isinstance(holder, dict):
            continue
        for key in PATH_FIELDS:
            value = holder.get(key)
            if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
                found: Optional[Path] = locate(value, net)
                if found is not None:
                    holder[key] = str(found.resolve())


def resolved_files(cfg: SolverConfig, prefix: str, load: Callable[[Path], NetConfig],
                   locate: Callable[[str, NetConfig], Optional[Path]] = lambda p, n: None,
                   note: str = "", tag: str = "") -> dict[Path, str]:
    """The YAML text of ``cfg`` and each of its nets as they are run, by file: the solver as
    ``{prefix}_run_solver{tag}.yaml`` naming its nets ``{prefix}_run_net{tag}.yaml``,
    ``{prefix}_run_train_net{tag}.yaml``, ``{prefix}_run_test_netI{tag}.yaml`` beside it; data
    paths as ``locate`` finds them (absolute), the snapshot prefix and format written out (the
    saved file would give other defaults).  Every file's first line is ``MARKER``; ``note``
    follows it in the solver's file as a comment."""
    solver = cfg.model_dump(exclude={"file", *SOLVER_NETS, *NETS}, exclude_defaults=True)
    solver["snapshot_prefix"] = prefix
    solver["snapshot_format"] = cfg.snapshot_kind
    files: dict[Path, str] = {}
    tests = []
    for kind, suffix, net in _solver_nets(cfg, load):
        path = Path(f"{prefix}_run{suffix}{tag}.yaml")
        data = dump_net(net)
        for layer in data.get("layer", []):
            _absolute_paths(layer, net, locate)
        files[path] = f"{MARKER}: a net as run, named by {Path(prefix).name}_run_solver{tag}.yaml\n" \
            + yaml_text(data)
        if kind == "test_net":
            tests.append(path.name)
        else:
            solver[kind] = path.name
    if tests:
        solver["test_net"] = tests
    head = {k: solver.pop(k) for k in ("net", "train_net", "test_net") if k in solver}
    comment = "".join(f"# {line}\n".replace("# \n", "#\n") for line in note.splitlines())
    files[Path(f"{prefix}_run_solver{tag}.yaml")] = (
        f"{MARKER}: the solver as run (trainnet overwrites only files that start with this line)\n"
        + comment + yaml_text({**head, **solver}))
    return files


def input_files(solver: str | Path, load_solver: Callable[[str], SolverConfig]) -> list[Path]:
    """The files a run of the solver file ``solver`` reads its config from: the solver and the
    net files it names (none of them is ever overwritten by an as-run file)."""
    from trainnet.netcfg.net import net_file

    files = [Path(solver)]
    try:
        cfg = load_solver(str(solver))
    except Exception:  # the run itself reports a bad file
        return files
    names = [n for n in (cfg.net, cfg.train_net) if n] + list(cfg.test_net)
    for name in names:
        files.append(cfg.resolve(name))
        try:
            files.append(Path(net_file(cfg.resolve(name))))
        except Exception:  # a zoo: name without its zoo: not a file here
            pass
    return files


def is_as_run(path: Path) -> bool:
    """Whether ``path`` is a file trainnet wrote as an as-run config (its first line)."""
    try:
        with open(path, "rb") as f:
            return f.readline().startswith(MARKER.encode())
    except OSError:
        return False


def net_with_default(net: NetConfig, field: str, value: Any) -> NetConfig:
    """``net`` with ``field`` set to ``value`` in every layer whose parameters have that field
    and do not set it."""
    layers = []
    for layer in net.layer:
        params = layer.params
        if field in type(params).model_fields and field not in params.model_fields_set:
            layer = layer.model_copy(update={"params": params.model_copy(update={field: value})})
        layers.append(layer)
    return net.model_copy(update={"layer": layers})


def with_layer_default(cfg: SolverConfig, field: str, value: Any,
                       load: Callable[[Path], NetConfig]) -> SolverConfig:
    """``cfg`` with every net given inline (a net file read with ``load``, its file kept) and
    ``field`` defaulted to ``value`` in each (``net_with_default``)."""
    update: dict[str, Any] = {}
    for kind in ("net", "train_net"):
        net = getattr(cfg, f"{kind}_param")
        if net is None and getattr(cfg, kind) is not None:
            net = load(cfg.resolve(getattr(cfg, kind)))
        if net is not None:
            update[kind], update[f"{kind}_param"] = None, net_with_default(net, field, value)
    tests = list(cfg.test_net_param) + [load(cfg.resolve(n)) for n in cfg.test_net]
    update["test_net"] = []
    update["test_net_param"] = [net_with_default(n, field, value) for n in tests]
    return cfg.model_copy(update=update)
