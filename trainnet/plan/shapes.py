"""Pass 3: check the graph and infer every blob's shape, once.

Instantiates each layer with its bottom shapes; a bottom nothing produces, a top written
twice (other than in place), a wrong arity or a shape that does not fit is a ConfigError
naming the file, line and layer.
"""

from __future__ import annotations

from trainnet.data.paths import DataRoot
from trainnet.errors import ConfigError
from trainnet.layers.base import layer_class
from trainnet.netcfg.net import LayerConfig
from trainnet.plan.plan import Blob, Step
from trainnet.plan.splits import loss_weights


def _arity(cfg: LayerConfig, what: str, n: int, bounds) -> str | None:
    lo, hi = bounds
    if n < lo or (hi is not None and n > hi):
        want = f"{lo}" if lo == hi else (f"at least {lo}" if hi is None else f"{lo} to {hi}")
        return f"expects {want} {what}{'s' if want != '1' else ''}, got {n}"
    return None


def infer_shapes(layers: list[LayerConfig], phase: str, file: str | None) -> tuple[list[Step], dict[str, Blob]]:
    """``file`` is the net config's path: errors name it, data paths resolve for it (its
    DataRoot is made once for the pass: resolving it per layer was a third of a 40,000-layer
    plan)."""
    root = DataRoot.of(file)
    blobs: dict[str, Blob] = {}
    steps: list[Step] = []
    for i, cfg in enumerate(layers):
        cls = layer_class(cfg.type)
        for what, n, bounds in (("bottom", len(cfg.bottom), cls.num_bottoms),
                                ("top", len(cfg.top), cls.num_tops)):
            msg = _arity(cfg, what, n, bounds)
            if msg:
                raise cfg.error(msg, file)
        for b in cfg.bottom:
            if b not in blobs:
                names = list(blobs)
                known = ", ".join(names[-20:]) or "none"
                if len(names) > 20:
                    known = f"{len(names)} of them, the last 20: {known}"
                raise cfg.error(f"bottom '{b}': no layer before it produces it (blobs so far: {known})",
                                file, "bottom")
        for j, t in enumerate(cfg.top):
            if t in blobs and t not in cfg.bottom:
                raise cfg.error(f"top '{t}' is already produced by an earlier layer "
                                "(only in-place layers may reuse a blob name)", file, "top")
            if t in cfg.bottom and not cls.in_place_ok:
                raise cfg.error(f"top '{t}' is also its bottom, but {cfg.type} cannot run in place",
                                file, "top")
            if cfg.top.count(t) > 1:
                raise cfg.error(f"top '{t}' is listed twice", file, "top")
        if cfg.loss_weight and len(cfg.loss_weight) != len(cfg.top):
            raise cfg.error(f"has {len(cfg.top)} tops but {len(cfg.loss_weight)} loss_weight values",
                            file, "loss_weight")
        if cfg.propagate_down and len(cfg.propagate_down) != len(cfg.bottom):
            raise cfg.error(f"has {len(cfg.bottom)} bottoms but {len(cfg.propagate_down)} "
                            "propagate_down values", file, "propagate_down")
        try:
            layer = cls(cfg.name, cfg.params, phase, [blobs[b].shape for b in cfg.bottom],
                        common=cfg, data_root=root)
        except ConfigError as exc:
            raise ConfigError(exc.message, file=file, line=cfg.line, layer=cfg.name,
                              layer_type=cfg.type, field=exc.field) from None
        except ValueError as exc:
            raise cfg.error(str(exc), file) from None
        for j, t in enumerate(cfg.top):
            shape = layer.top_shapes[j]
            if t in blobs and blobs[t].shape != shape:
                raise cfg.error(f"in place on '{t}' but changes its shape {blobs[t].shape} -> {shape}",
                                file)
            blobs[t] = Blob(t, shape)
        n_params = len(layer.param_blobs())
        if len(cfg.param) > n_params:
            raise cfg.error(f"has {n_params} parameter blobs but {len(cfg.param)} param entries",
                            file, "param")
        steps.append(Step(index=i, cfg=cfg, layer=layer, bottoms=list(cfg.bottom), tops=list(cfg.top),
                          loss_weights=loss_weights(cfg)))
    return steps, blobs
