"""The Net: runs a Plan on a device, in the plan's memory, allocating nothing per pass."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from trainnet.layers.base import StepIO
from trainnet.plan.plan import Plan, Region, Step
from trainnet.runtime.device import CPU, Device
from trainnet.runtime.params import ParamStore


class Net:
    """Binds every step of ``plan`` to views of one activation arena and the parameter arenas.

    ``params`` shares another net's weights (a test net sharing the training net's);
    without it the net owns new parameters filled from their fillers with ``rng``.
    """

    def __init__(self, plan: Plan, device: Device = CPU, params: Optional[ParamStore] = None,
                 rng: Optional[np.random.Generator] = None):
        self.plan = plan
        self.device = device
        xp = device.xp
        self.rng = rng if rng is not None else np.random.default_rng()
        self.params = params if params is not None else ParamStore(plan.params, self.rng, xp)
        # Learnable layers of this net that the shared store lacks (a layer only in the TEST
        # phase) keep weights of their own, initialised by their fillers, as in Caffe.
        own = [slot for slot in plan.params if slot.key not in self.params.index]
        self.own_params = ParamStore(own, self.rng, xp) if own else None
        self.arena = xp.zeros(plan.arena_bytes, dtype=np.uint8)
        self.shadow = xp.zeros(plan.shadow_arena, dtype=np.float32)
        self.ios: list[StepIO] = []
        self.shadow_sums: list[tuple[Any, Any]] = []   # (shadow gradient, owner gradient)
        self.states: dict[str, Any] = {}
        for step in plan.steps:
            self.ios.append(self._bind(step))
        self.backward_steps = [(s, io) for s, io in zip(plan.steps, self.ios) if s.need_backward][::-1]
        self.loss_tops = [(self.data(t), w) for s in plan.steps
                          for t, w in zip(s.tops, s.loss_weights) if w != 0]
        self.seeds = [(self.diff(name), value) for name, value in plan.seeds.items()]
        # Parameter gradients no step overwrites in backward (a shared blob whose owner runs no
        # backward, a layer off every loss path) are cleared before each backward, as Caffe's
        # ClearParamDiffs would: the update rule leaves its step in the gradient arena.
        store = self.params
        written = {store.index.get(plan.params[u.slot].key) for s in plan.steps for u in s.params
                   if not u.frozen and u.shadow is None}
        self.unwritten_grads = [store.view(store.diff, i) for i in range(len(store.slots))
                                if i not in written] if plan.backward else []

    def _view(self, region: Optional[Region]):
        if region is None:
            return None
        raw = self.arena[region.offset:region.offset + region.nbytes]
        return raw.view(region.dtype).reshape(region.shape)

    def _bind(self, step: Step) -> StepIO:
        plan = self.plan
        params, param_diff = [], []
        for use, blob in zip(step.params, step.layer.param_blobs()):
            slot = plan.params[use.slot]
            store = self.params if slot.key in self.params.index else self.own_params
            i = store.lookup(slot)  # by (layer, index): a shared store has its own layout
            shape = blob.shape  # a PERMISSIVE share may view the owner's blob in another shape
            params.append(store.view(store.data, i).reshape(shape))
            if use.frozen:
                param_diff.append(None)
            elif use.shadow is not None:
                n = store.slots[i].count
                shadow = self.shadow[use.shadow:use.shadow + n]
                param_diff.append(shadow.reshape(shape))
                self.shadow_sums.append((shadow, store.view(store.diff, i).reshape(-1)))
            else:
                param_diff.append(store.view(store.diff, i).reshape(shape))
        layer = step.layer
        if layer.is_data:
            layer.base_dir = plan.base_dir
        state = layer.make_state(self.rng)
        if state is not None:
            self.states[step.name] = state
        return StepIO(
            bottom=[self.data(b) for b in step.bottoms],
            top=[self.data(t) for t in step.tops],
            bottom_diff=[self.diff(b) if p else None for b, p in zip(step.bottoms, step.propagate_down)],
            top_diff=[self.diff(t) for t in step.tops],
            params=params, param_diff=param_diff,
            buf={k: self._view(r) for k, r in step.buffers.items()},
            state=state, rng=self.rng)

    # --- blobs ------------------------------------------------------------------------------
    def data(self, name: str):
        return self._view(self.plan.blob(name).data)

    def diff(self, name: str):
        return self._view(self.plan.blob(name).diff)

    def outputs(self) -> dict[str, Any]:
        """The net's outputs after a forward: scalars as floats, others as arrays (copies)."""
        out = {}
        for name in self.plan.outputs:
            value = self.data(name)
            out[name] = float(value) if value.size == 1 else np.array(value)
        return out

    # --- passes -----------------------------------------------------------------------------
    def forward(self) -> float:
        """Run every step forward; returns the weighted sum of the losses."""
        device = self.device
        for step, io in zip(self.plan.steps, self.ios):
            step.layer.forward(io, device)
        return sum(w * float(top.sum()) for top, w in self.loss_tops)

    def backward(self) -> None:
        """Seed the gradients, then run backward in reverse order."""
        self.seed_gradients()
        device = self.device
        for step, io in self.backward_steps:
            step.layer.backward(io, device)
        for shadow, owner in self.shadow_sums:
            owner += shadow

    def seed_gradients(self) -> None:
        """Each loss's gradient to its weight, gradients read before written to 0."""
        for diff, value in self.seeds:
            diff.fill(value)
        for grad in self.unwritten_grads:
            grad.fill(0)

    def forward_backward(self) -> float:
        loss = self.forward()
        self.backward()
        return loss
