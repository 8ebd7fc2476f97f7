"""Where a net first went non-finite: the pass re-run step by step, every blob checked.

Checking every blob on every pass would cost a read of all activations; instead the solver and
`test` check only the loss and the outputs, and when one is not finite they rewind the data
readers to where the pass began (``mark``/``rewind``: the readers' positions cost nothing to
keep) and re-run it here.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from trainnet.formats.weightkey import split_key
from trainnet.runtime.debug_info import NonFiniteBlob, PassFigures


def mark(net) -> dict[str, tuple[str, Any]]:
    """Where the net's resumable states stand: the data readers' positions (free to take), and
    on the CPU the other states (dropout's counter, dummy data's generator) too."""
    out = {}
    for name, state in net.resume_states.items():
        if hasattr(state, "checkpoint"):
            out[name] = ("at", state.checkpoint())
        elif not net.device.is_gpu:  # reading a GPU state back would wait for the device
            out[name] = ("state", state.get_state())
    return out


def rewind(net, marked: dict[str, tuple[str, Any]]) -> None:
    """Put the states ``mark`` recorded back: the next pass reads the same batches again."""
    for name, (kind, value) in marked.items():
        state = net.resume_states[name]
        state.set_state(state.state_at(value) if kind == "at" else value)


def _finite(net, array) -> bool:
    host = net.device.to_host(array) if net.device.is_gpu else array
    return bool(np.isfinite(host).all())


def nonfinite_weights(net) -> Optional[str]:
    """The first parameter blob (in the net's order) holding a NaN or an infinity."""
    for store in (net.params, net.own_params):
        for key, view in (store.named().items() if store is not None else ()):
            if not _finite(net, view):
                layer, index = split_key(key)
                return f"the weights of layer '{layer}' (blob {index}) are not finite"
    return None


def locate_nonfinite(net, backward: bool) -> Optional[str]:
    """Run one pass step by step and name the first blob that is not finite: a weight blob,
    a top in forward, then (with ``backward``) a bottom's or a parameter's gradient."""
    return locate_with_figures(net, backward)[0]


def locate_with_figures(net, backward: bool) -> tuple[Optional[str], PassFigures]:
    """``locate_nonfinite``, and debug_info's figures of the pass up to and including the first
    non-finite blob (none when a weight blob is already not finite)."""
    figures = PassFigures(net, stop_at_nonfinite=True)
    found = nonfinite_weights(net)
    if found:
        return found, figures
    with np.errstate(all="ignore"):
        try:
            net.forward_host(figures)
            net.forward_device(figures)
            if backward:
                net.backward(figures)
        except NonFiniteBlob:
            pass
    return figures.nonfinite, figures
