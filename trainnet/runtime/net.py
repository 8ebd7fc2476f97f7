"""The Net: runs a Plan on a device, in the plan's memory, allocating nothing per pass.

On a GPU the steps split in two: the leading data layers, which gather batches on the host
and upload them (``host_steps``), and the rest, which only queue kernels on the device
(``device_steps``).  With ``graph=True`` the device part of a forward is captured as one CUDA
graph on its second call (the first, eager, compiles the kernels) and replayed after.  The
Solver captures its own graph of a whole training iteration from ``forward_device``,
``backward`` and the update.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from trainnet.layers.base import StepIO
from trainnet.plan.plan import Plan, Region, Step
from trainnet.errors import TrainnetError
from trainnet.runtime.device import CPU, Device
from trainnet.runtime.memory import check_fits
from trainnet.runtime.params import ParamStore

# called after a step ran: (step, its StepIO, "forward" or "backward")
Observer = Callable[[Step, StepIO, str], None]


@dataclass
class StepTimes:
    """Seconds per step name summed over ``iterations`` (``backward`` 0 for a step without one),
    and the whole run's wall-clock seconds."""

    iterations: int
    forward: dict[str, float] = field(default_factory=dict)
    backward: dict[str, float] = field(default_factory=dict)
    total: float = 0.0


class Net:
    """Binds every step of ``plan`` to views of one activation arena and the parameter arenas.

    ``params`` shares another net's weights (a test net sharing the training net's);
    without it the net owns new parameters filled from their fillers with ``rng``.
    """

    def __init__(self, plan: Plan, device: Device = CPU, params: Optional[ParamStore] = None,
                 rng: Optional[np.random.Generator] = None, graph: bool = False):
        self.plan = plan
        self.device = device
        if plan.gpu != device.is_gpu:
            compiled, fix = ("a GPU", "gpu=False") if plan.gpu else ("the CPU", "gpu=True")
            raise TrainnetError(f"net '{plan.net_name}' was compiled for {compiled} but is run on "
                                f"{device}: compile it with {fix}")
        if device.is_gpu:
            missing = sorted({s.type for s in plan.steps if not s.layer.has_gpu()})
            if missing:
                raise TrainnetError(f"layer type{'s' if len(missing) > 1 else ''} "
                                    f"{', '.join(missing)} {'have' if len(missing) > 1 else 'has'} "
                                    "no GPU implementation yet; run this net with --device cpu")
        check_fits(plan, device, params)  # refuse, naming the largest blob, before allocating
        self.rng = rng if rng is not None else np.random.default_rng()
        self.params = params if params is not None else ParamStore(plan.params, self.rng, device)
        # Learnable layers of this net that the shared store lacks (a layer only in the TEST
        # phase) keep weights of their own, initialised by their fillers, as in Caffe.
        own = [slot for slot in plan.params if slot.key not in self.params.index]
        self.own_params = ParamStore(own, self.rng, device) if own else None
        self.arena = device.zeros(plan.arena_bytes, dtype=np.uint8)
        self.shadow = device.zeros(plan.shadow_arena, dtype=np.float32)
        self.ios: list[StepIO] = []
        self.shadow_sums: list[tuple[Any, Any]] = []   # (shadow gradient, owner gradient)
        self.shadow_steps: list[int] = []              # the step of each shadow
        self.states: dict[str, Any] = {}         # every layer's runtime state, by layer name
        # those a snapshot keeps (get_state/set_state): data cursors, Dropout's and DummyData's
        # generators; not an output file's writer or a loaded matrix
        self.resume_states: dict[str, Any] = {}
        for step in plan.steps:
            self.ios.append(self._bind(step))
        self.backward_steps = [(s, io) for s, io in zip(plan.steps, self.ios) if s.need_backward][::-1]
        # Data layers gather on the host: on a GPU they run before the device work, outside
        # any graph.  Only a leading run of them can (their memory is planned in step order).
        steps = list(zip(plan.steps, self.ios))
        lead = 0
        while lead < len(steps) and steps[lead][0].layer.is_data and not steps[lead][0].layer.filled_by_user:
            lead += 1
        self.host_steps, self.device_steps = steps[:lead], steps[lead:]
        self.graph_blocker = next((s.name for s, _ in self.device_steps if s.layer.host_only or
                                   (s.layer.is_data and not s.layer.filled_by_user)), None)
        self.use_graph = graph and device.is_gpu and self.graph_blocker is None
        self._forward_graph = None
        self._eager_forwards = 0
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
        for use, blob in zip(step.params, step.param_blobs()):
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
                self.shadow_steps.append(step.index)
            else:
                param_diff.append(store.view(store.diff, i).reshape(shape))
        layer = step.layer
        state = layer.make_state(self.rng, self.device if self.device.is_gpu else None)
        if state is not None:
            self.states[step.name] = state
            if hasattr(state, "get_state"):
                self.resume_states[step.name] = state
        return StepIO(
            bottom=[self.data(b) for b in step.bottoms],
            top=[self.data(t) for t in step.tops],
            bottom_diff=[self.diff(b) if p else None for b, p in zip(step.bottoms, step.propagate_down)],
            top_diff=[self.diff(t) for t in step.tops],
            params=params, param_diff=param_diff,
            buf={k: self._view(r) for k, r in step.buffers.items()},
            state=state, rng=self.rng, gpu=self.device.backend, ctx=step.ctx)

    # --- blobs ------------------------------------------------------------------------------
    def data(self, name: str):
        return self._view(self.plan.blob(name).data)

    def diff(self, name: str):
        return self._view(self.plan.blob(name).diff)

    def outputs(self) -> dict[str, Any]:
        """The net's outputs after a forward: scalars as floats, others as arrays (copies)."""
        out = {}
        for name in self.plan.outputs:
            value = self.device.to_host(self.data(name))
            out[name] = float(value.reshape(-1)[0]) if value.size == 1 else value
        return out

    def set_input_arrays(self, data: np.ndarray, labels: np.ndarray, layer: Optional[str] = None) -> None:
        """Hand arrays to a MemoryData layer (pycaffe's ``set_input_arrays``): ``layer`` by name,
        or the net's first MemoryData layer."""
        names = [s.name for s in self.plan.steps if s.type == "MemoryData"]
        if not names:
            raise TrainnetError(f"net '{self.plan.net_name}' has no MemoryData layer")
        if layer is not None and layer not in names:
            raise TrainnetError(f"net '{self.plan.net_name}' has no MemoryData layer '{layer}' "
                                f"(it has {', '.join(names)})")
        self.states[layer or names[0]].set_arrays(data, labels)

    def data_notes(self) -> list[str]:
        """What the data layers have to report since the last call (records skipped)."""
        return [note for state in self.states.values() for note in getattr(state, "notes", list)()]

    def set_input(self, name: str, host: np.ndarray) -> None:
        """Write a host array into the blob ``name`` (an Input layer's top) on this device."""
        self.device.upload(self.data(name), host)

    # --- passes -----------------------------------------------------------------------------
    def forward(self) -> float:
        """Run every step forward; returns the weighted sum of the losses."""
        self.forward_host()
        if not self.use_graph:
            self.forward_device()
        elif self._forward_graph is not None:
            self._forward_graph.replay()
        elif self._eager_forwards == 0:  # the first pass compiles kernels: run it eagerly
            self._eager_forwards += 1
            self.forward_device()
        else:
            self._forward_graph = self.device.backend.capture(self.forward_device)
            self._forward_graph.replay()
        return self.loss()

    def forward_host(self, observe: Optional[Observer] = None) -> None:
        """The leading data layers (on the CPU: nothing runs here, see ``forward_device``).
        ``observe(step, io, "forward")`` after each step: see ``forward_device``."""
        if self.device.is_gpu:
            for step, io in self.host_steps:
                step.layer.forward(io, self.device)
                if observe is not None:
                    observe(step, io, "forward")

    def forward_device(self, observe: Optional[Observer] = None) -> None:
        """Every step that ``forward_host`` does not run, in plan order (queued on a GPU).
        ``observe(step, io, "forward")`` is called after each step, when its tops hold this
        pass's values (a later step may reuse their memory): debug_info's figures and the search
        for a first non-finite blob; never given inside a captured graph."""
        device = self.device
        for step, io in (self.device_steps if device.is_gpu else zip(self.plan.steps, self.ios)):
            step.layer.forward(io, device)
            if observe is not None:
                observe(step, io, "forward")

    def loss(self) -> float:
        """The weighted sum of the loss tops after a forward (waits for a GPU)."""
        to_host = self.device.to_host
        return sum(w * float(to_host(top).sum(dtype=np.float64)) for top, w in self.loss_tops)

    def backward(self, observe: Optional[Observer] = None) -> None:
        """Seed the gradients, then run backward in reverse order (queued on a GPU);
        ``observe(step, io, "backward")`` after each step, as in ``forward_device``."""
        self.seed_gradients()
        device = self.device
        for step, io in self.backward_steps:
            step.layer.backward(io, device)
            if observe is not None:
                observe(step, io, "backward")
        for shadow, owner in self.shadow_sums:
            device.add(owner, shadow)

    def seed_gradients(self) -> None:
        """Each loss's gradient to its weight, gradients read before written to 0."""
        for diff, value in self.seeds:
            self.device.fill(diff, value)
        for grad in self.unwritten_grads:
            self.device.fill(grad, 0)

    def forward_span(self, first: int, last: int) -> None:
        """Steps ``first`` to ``last`` (plan indices, inclusive) forward, one by one, outside
        any graph: pycaffe's ``forward(start=, end=)``."""
        for step, io in zip(self.plan.steps[first:last + 1], self.ios[first:last + 1]):
            step.layer.forward(io, self.device)

    def backward_span(self, first: int, last: int) -> None:
        """Steps ``last`` down to ``first`` backward (those with a backward), then the shared
        blobs' gradients summed into their owners': pycaffe's ``backward(start=, end=)``.
        The caller seeds the gradients (``seed_gradients``) when it starts at the top."""
        for step, io in self.backward_steps:
            if first <= step.index <= last:
                step.layer.backward(io, self.device)
        for (shadow, owner), index in zip(self.shadow_sums, self.shadow_steps):
            if first <= index <= last:
                self.device.add(owner, shadow)

    def forward_backward(self) -> float:
        loss = self.forward()
        self.backward()
        return loss

    # --- timing -----------------------------------------------------------------------------
    def time_steps(self, iterations: int) -> StepTimes:
        """Run forward (and backward, if planned) ``iterations`` times after one untimed warm-up,
        timing each step on its own, synchronised on a GPU (as `caffe time`: so the sum is
        slower than a graph-replayed iteration)."""
        clock, sync, device = time.perf_counter, self.device.synchronize, self.device
        times = StepTimes(iterations, {s.name: 0.0 for s in self.plan.steps})
        times.backward = dict.fromkeys(times.forward, 0.0)
        self.forward_backward() if self.plan.backward else self.forward()  # warm up
        start = clock()
        for _ in range(iterations):
            for step, io in zip(self.plan.steps, self.ios):
                t = clock()
                step.layer.forward(io, device)
                sync()
                times.forward[step.name] += clock() - t
            if self.plan.backward:
                self.seed_gradients()
                for step, io in self.backward_steps:
                    t = clock()
                    step.layer.backward(io, device)
                    sync()
                    times.backward[step.name] += clock() - t
        times.total = clock() - start
        return times
