"""pycaffe's passes over a Net: ``forward`` and ``backward`` from and to a layer, the batched
``forward_all``/``forward_backward_all``, and Caffe's gradient bookkeeping (parameter gradients
summed into until ``clear_param_diffs``, an output's gradient left as the caller set it)."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from trainnet.errors import TrainnetError


class NetPasses:
    """Mixed into ``trainnet.caffe.Net`` (``self._net`` the runtime Net)."""

    def _span(self, start: Optional[str], end: Optional[str]) -> tuple[int, int]:
        last = len(self._net.plan.steps) - 1
        return (self._step(start) if start is not None else 0,
                self._step(end) if end is not None else last)

    def _step(self, layer: str) -> int:
        if layer not in self._index:
            raise KeyError(f"net '{self._net.plan.net_name}' has no layer '{layer}'")
        return self._index[layer]

    def forward(self, blobs: Optional[Sequence[str]] = None, start: Optional[str] = None,
                end: Optional[str] = None, **kwargs) -> dict[str, Any]:
        """Run layers ``start`` to ``end`` (all by default) after setting the input blobs given
        as keywords; returns ``{blob: data}`` for the outputs (``end``'s tops when given) and
        ``blobs``."""
        self.reshape()
        self._set_all(kwargs, self._inputs, "an input", diff=False)
        first, last = self._span(start, end)
        self._net.forward_span(first, last)
        shown = self.top_names[end] if end is not None else self.outputs
        return {name: self._blobs[name].data for name in dict.fromkeys([*shown, *(blobs or [])])}

    def backward(self, diffs: Optional[Sequence[str]] = None, start: Optional[str] = None,
                 end: Optional[str] = None, **kwargs) -> dict[str, Any]:
        """Gradients from layer ``start`` down to ``end`` (all by default), the outputs' given
        as keywords; returns ``{blob: diff}`` for the inputs (``end``'s bottoms when given) and
        ``diffs``.  As in Caffe, parameter gradients are summed into (``clear_param_diffs``
        zeroes them) and an output's gradient set by hand is used as it is."""
        if not self._net.plan.backward:
            raise TrainnetError(f"net '{self._net.plan.net_name}' was made for {self.phase} "
                                "without a backward: set force_backward: true in the net")
        first, last = self._span(end, start)
        if start is None:
            self._seed()
        self._set_all(kwargs, self.outputs, "an output", diff=True)
        saved = self._written_param_diffs(first, last)
        self._net.backward_span(first, last)
        for diff, before in saved:
            self._net.device.add(diff, before)
        shown = self.bottom_names[end] if end is not None else self._inputs
        return {name: self._blobs[name].diff for name in dict.fromkeys([*shown, *(diffs or [])])}

    def _seed(self) -> None:
        """Each loss's gradient to its weight, other gradients read before written to 0; an
        output that is not a loss keeps the gradient its caller gave it."""
        outputs = set(self.outputs)
        for name, value in self._net.plan.seeds.items():
            if not (value == 0 and name in outputs):
                self._net.device.fill(self._net.diff(name), value)

    def _written_param_diffs(self, first: int, last: int) -> list:
        """(gradient, a copy of it) of every parameter gradient a step in the span overwrites,
        to be added back after it: Caffe's layers add into their parameter gradients."""
        device, out = self._net.device, []
        for step, io in zip(self._net.plan.steps[first:last + 1], self._net.ios[first:last + 1]):
            if not step.need_backward:
                continue
            for use, diff in zip(step.params, io.param_diff):
                if diff is not None and not use.frozen and use.shadow is None:
                    copy = device.zeros(diff.shape)
                    device.copy(copy, diff)
                    out.append((diff, copy))
        return out

    def _set_all(self, arrays: dict, allowed: list[str], what: str, diff: bool) -> None:
        """Each of ``arrays`` into its blob's value (or gradient); only ``allowed`` names."""
        for name, array in arrays.items():
            if name not in allowed:
                raise KeyError(f"'{name}' is not {what} of the net (its {what[3:]}s: "
                               f"{', '.join(allowed) or 'none'})")
            blob = self._blobs[name]
            self._set(blob.diff if diff else blob.data, array, name)

    def _set(self, dst, array, name: str) -> None:
        if hasattr(array, "__cuda_array_interface__"):  # a CuPy array: copied on the device
            dst[...] = array
            return
        array = np.asarray(array, np.float32)
        if array.ndim and array.shape[0] != dst.shape[0]:
            raise ValueError(f"'{name}': {array.shape[0]} items for a batch of "
                             f"{dst.shape[0]} (Input is not batch sized)")
        self._net.device.upload(dst, np.ascontiguousarray(np.broadcast_to(array, dst.shape)))

    def forward_all(self, blobs: Optional[Sequence[str]] = None, **kwargs) -> dict[str, np.ndarray]:
        """``forward`` over inputs of any length, a batch at a time (the last padded), the
        outputs and ``blobs`` concatenated on the host."""
        from trainnet.caffe.batches import run_batches
        return run_batches(self, blobs, None, kwargs)

    def forward_backward_all(self, blobs=None, diffs=None, **kwargs):
        """``forward_all`` and ``backward`` per batch (inputs as keywords go forward, outputs'
        gradients as keywords go backward): (outputs, gradients) on the host."""
        from trainnet.caffe.batches import run_batches
        return run_batches(self, blobs, list(diffs or []), kwargs)

    def clear_param_diffs(self) -> None:
        for store in filter(None, (self._net.params, self._net.own_params)):
            self._net.device.fill(store.diff, 0)

    def set_input_arrays(self, data: np.ndarray, labels: np.ndarray, layer: Optional[str] = None):
        self._net.set_input_arrays(data, labels, layer)
