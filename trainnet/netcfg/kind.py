"""What kind of config a file holds, from its top-level keys: a net or a solver.

A solver given where a net is wanted (``trainnet plan solver.yaml``), or a net where a solver is
wanted (``trainnet train net.yaml``), would otherwise fail on its first unexpected key ("net:
unknown key", "net: required"); this names the two kinds instead, and the file the user likely
meant.  The same keys mark YAML and prototxt files.
"""

from __future__ import annotations

from typing import Any, Optional

from trainnet.netcfg.source import SourceMap

# Keys only a net has at its top level (NetParameter), and only a solver (SolverParameter).
NET_ONLY = ("layer", "layers", "input", "input_dim", "input_shape", "force_backward", "state",
            "preprocess")
SOLVER_ONLY = ("net", "net_param", "train_net", "train_net_param", "test_net", "test_net_param",
               "base_lr", "lr_policy", "max_iter", "test_iter", "test_interval", "snapshot",
               "snapshot_prefix", "solver_type", "solver_mode", "momentum", "weight_decay",
               "stepsize", "stepvalue", "display", "iter_size", "train_state", "test_state")


def config_kind(data: Any) -> Optional[str]:
    """'net', 'solver', or None when the keys do not say (both kinds, or neither)."""
    if not isinstance(data, dict):
        return None
    keys = {k for k, v in data.items() if not (k == "layer" and v == [])}  # prototxt adds layer: []
    net, solver = keys.intersection(NET_ONLY), keys.intersection(SOLVER_ONLY)
    if net and not solver:
        return "net"
    if solver and not net:
        return "solver"
    return None


def refuse_other_kind(data: Any, src: SourceMap, wanted: str) -> None:
    """A ConfigError when ``data`` is plainly the other kind of config than ``wanted``."""
    kind = config_kind(data)
    if kind is None or kind == wanted:
        return
    if wanted == "net":
        keys = [k for k in SOLVER_ONLY if k in data]
        named = next((data[k] for k in ("net", "train_net") if isinstance(data.get(k), str)), None)
        inline = next((k for k in ("net_param", "train_net_param") if k in data), None)
        hint = (f"give the net file it trains ({named})" if named else
                f"give a net file (this solver writes its net inside it, as {inline})" if inline
                else "give a net file (one that lists the layers)")
        raise src.error((keys[0],), f"this is a solver (it sets {', '.join(keys[:3])}), not a net: "
                        + hint)
    keys = [k for k in NET_ONLY if k in data and not (k == "layer" and data[k] == [])]
    raise src.error((keys[0],), f"this is a net (it sets {', '.join(keys[:3])}), not a solver: give "
                    f"a solver file, one that names this net (net: {src.file}) and sets base_lr, "
                    "max_iter ...")
