"""DummyData: tops filled by fillers each pass (dummy_data_param): constants, or random data.

One ``shape`` (or the legacy ``num``/``channels``/``height``/``width``) per top or one for all;
zero ``data_filler`` (constant 0), one for all tops, or one per top.  Caffe fills constant tops
once; here every top is filled on every pass, because the plan may reuse a top's memory between
passes.

Random tops are drawn with ``layers/fillers.py`` from the layer's own generator, seeded from the
net's when the net is built, so the CPU and the GPU see the same numbers, and the generator's
state goes into snapshots.  On a GPU the layer runs on the host before the device work (as
Data does): a constant top is one fill kernel; a random top is drawn into one of two pinned
buffers, used in turn, and uploaded on the compute stream.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from trainnet.errors import TrainnetError
from trainnet.formats.rngstate import rng_from_array, rng_to_array
from trainnet.layers import fillers
from trainnet.layers.base import StepIO, count_tops, register
from trainnet.layers.data_base import PinnedPair
from trainnet.layers.host_data import HostData
from trainnet.netcfg.common import BlobShape, FillerParameter, Repeated, Strict, UIntList


class DummyDataParams(Strict):
    data_filler: Repeated[FillerParameter] = []
    shape: Repeated[BlobShape] = []
    num: UIntList = []       # legacy 4-D dims, instead of shape
    channels: UIntList = []
    height: UIntList = []
    width: UIntList = []


class DummyDataState:
    """The generator of the random tops and, on a GPU, their pinned host buffers."""

    def __init__(self, rng: np.random.Generator, shapes: list[tuple[int, ...]], backend=None):
        self.rng, self.gpu = rng, backend
        self.host = PinnedPair(backend, shapes) if backend else None
        self.slot = 0

    def get_state(self) -> dict[str, np.ndarray]:
        return {"rng": rng_to_array(self.rng)}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        if "rng" not in state:
            raise TrainnetError("dummy data state lacks rng")
        try:
            rng_from_array(self.rng, state["rng"])
        except (ValueError, TypeError, KeyError) as exc:
            raise TrainnetError(f"dummy data state: bad random generator state ({exc})") from None


@register("DummyData")
class DummyData(HostData):
    Params = DummyDataParams
    caffe_params = {"dummy_data_param": None}
    num_tops = (1, None)

    def setup(self, bottom_shapes):
        p = self.p
        legacy = {k: getattr(p, k) for k in ("num", "channels", "height", "width")}
        if any(legacy.values()) and p.shape:
            raise self.error("give shape or the legacy num/channels/height/width, not both")
        if any(legacy.values()):
            n = count_tops(self, default=max(len(v) for v in legacy.values()))
            for name, values in legacy.items():
                if len(values) not in (1, n):
                    raise self.error(f"{name}: {len(values)} values for {n} tops; give one, or one "
                                     "per top")
            shapes = [tuple(v[i if len(v) > 1 else 0] for v in legacy.values()) for i in range(n)]
        else:
            n = count_tops(self, default=max(len(p.shape), 1))
            if len(p.shape) not in (1, n):
                raise self.error(f"shape: {len(p.shape)} shapes for {n} tops; give one, or one "
                                 "per top")
            shapes = [tuple(p.shape[i if len(p.shape) > 1 else 0].dim) for i in range(n)]
        if len(p.data_filler) not in (0, 1, n):
            raise self.error(f"data_filler: {len(p.data_filler)} fillers for {n} tops; give none "
                             "(zeros), one, or one per top")
        given = list(p.data_filler) or [FillerParameter()]
        self.fill_with = [given[i if len(given) > 1 else 0] for i in range(n)]
        for i, (f, s) in enumerate(zip(self.fill_with, shapes)):
            problem = fillers.check(f, s)
            if problem:
                raise self.error(f"data_filler for top {i}: {problem}")
        self.random = [i for i, f in enumerate(self.fill_with) if f.type != "constant"]
        return shapes

    def make_state(self, rng: np.random.Generator, device=None) -> Optional[DummyDataState]:
        if not self.random:
            return None
        own = np.random.default_rng(int(rng.integers(2**63)))
        backend = device.backend if device is not None and device.is_gpu else None
        return DummyDataState(own, [self.top_shapes[i] for i in self.random], backend)

    def forward_cpu(self, io: StepIO):
        for top, f in zip(io.top, self.fill_with):
            if f.type == "constant":
                top.fill(f.value)
            else:
                fillers.fill(top, f, io.state.rng)

    def forward_gpu(self, io: StepIO):
        """Host work, run before the device work (and outside a CUDA graph)."""
        gpu, state = io.gpu, io.state
        for i, f in enumerate(self.fill_with):
            if f.type == "constant":
                gpu.fill(io.top[i], f.value)
        if not self.random:
            return
        slot = state.slot
        for host, i in zip(state.host.take(slot), self.random):
            fillers.fill(host, self.fill_with[i], state.rng)
            gpu.upload(io.top[i], host)
        state.host.uploaded[slot] = gpu.record()
        state.slot = 1 - slot
