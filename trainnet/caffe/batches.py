"""pycaffe's ``forward_all`` and ``forward_backward_all``: inputs of any length through a net of
a fixed batch, a batch at a time, the last one padded with zeros and the padding cut from the
results."""

from __future__ import annotations

import numpy as np


def _host(array) -> np.ndarray:
    return array.get() if hasattr(array, "get") else np.array(array)


def _batches(net, inputs: dict):
    if not inputs:
        raise ValueError("forward_all needs the input blobs as keywords (data=...)")
    lengths = {name: len(a) for name, a in inputs.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"inputs of different lengths: {lengths}")
    total = next(iter(lengths.values()))
    size = net.blobs[next(iter(inputs))].shape[0]  # every blob of a net has its batch first
    for begin in range(0, total, size):
        batch = {}
        for name, array in inputs.items():
            part = np.asarray(array[begin:begin + size], np.float32)
            if len(part) < size:  # the last batch: zeros after the items
                pad = np.zeros((size - len(part),) + part.shape[1:], np.float32)
                part = np.concatenate([part, pad])
            batch[name] = part
        yield batch, min(size, total - begin)


def _collect(found: dict, results: dict, n: int, size: int) -> None:
    for name, array in results.items():
        value = _host(array)
        found.setdefault(name, []).append(value[:n] if value.ndim and len(value) == size else value)


def _join(found: dict) -> dict:
    return {name: np.concatenate(parts) if parts[0].ndim else np.stack(parts)
            for name, parts in found.items()}


def run_batches(net, blobs, diffs, inputs: dict):
    """``forward_all`` (``diffs`` None) or ``forward_backward_all`` over ``inputs``: the net's
    inputs go forward, other keywords (the outputs' gradients) backward, batch by batch."""
    outs, grads = {}, {}
    for batch, n in _batches(net, inputs):
        size = len(next(iter(batch.values())))
        forward = {k: v for k, v in batch.items() if k in net.inputs}
        _collect(outs, net.forward(blobs=blobs, **forward), n, size)
        if diffs is not None:
            backward = {k: v for k, v in batch.items() if k not in net.inputs}
            _collect(grads, net.backward(diffs=diffs, **backward), n, size)
    return _join(outs) if diffs is None else (_join(outs), _join(grads))
