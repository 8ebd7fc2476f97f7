"""MemoryData: batches from arrays handed in from Python (pycaffe's ``set_input_arrays``).

Caffe's MemoryDataLayer with its ``Reset(data, labels, n)`` path: ``Net.set_input_arrays(data,
labels)`` gives N items (data (N, channels, height, width), labels (N,), N a multiple of
batch_size); each forward takes the next batch_size of them, wrapping.  The arrays are used as
given (no transform_param, as Caffe's Reset path).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from pydantic import Field

from trainnet.errors import TrainnetError
from trainnet.layers.base import register
from trainnet.layers.data_base import DataLayer
from trainnet.netcfg.common import Strict


class MemoryDataParams(Strict):
    batch_size: int = Field(ge=1)
    channels: int = Field(ge=1)
    height: int = Field(ge=1)
    width: int = Field(ge=1)


class MemoryReader:
    """The arrays given last and the position of the next batch in them."""

    read_ahead = False  # the user may replace the arrays between passes

    def __init__(self, name: str, shapes: list[tuple[int, ...]]):
        self.name, self.shapes = name, shapes
        self.data: Optional[np.ndarray] = None
        self.labels: Optional[np.ndarray] = None
        self.pos = 0

    def set_arrays(self, data, labels) -> None:
        b, item = self.shapes[0][0], self.shapes[0][1:]
        data = np.ascontiguousarray(data, np.float32)
        labels = np.ascontiguousarray(labels, np.float32).reshape(-1)
        if data.ndim != 4 or data.shape[1:] != item:
            raise TrainnetError(f"MemoryData '{self.name}': data must be (N, {', '.join(map(str, item))}), "
                                f"got {data.shape}")
        if len(labels) != len(data):
            raise TrainnetError(f"MemoryData '{self.name}': {len(data)} items but {len(labels)} labels")
        if len(data) == 0 or len(data) % b:
            raise TrainnetError(f"MemoryData '{self.name}': the number of items ({len(data)}) must be "
                                f"a positive multiple of batch_size {b} (as in Caffe)")
        self.data, self.labels, self.pos = data, labels, 0

    def next_batch(self, *outs) -> None:
        if self.data is None:
            raise TrainnetError(f"MemoryData '{self.name}': no arrays given; call "
                                "Net.set_input_arrays(data, labels) before a forward pass")
        b = self.shapes[0][0]
        np.copyto(outs[0], self.data[self.pos:self.pos + b])
        if len(outs) > 1 and outs[1] is not None:
            np.copyto(outs[1], self.labels[self.pos:self.pos + b])
        self.pos = (self.pos + b) % len(self.data)

    def checkpoint(self) -> int:
        return self.pos

    @staticmethod
    def state_at(pos: int) -> dict[str, np.ndarray]:
        return {"pos": np.array(pos, np.int64)}

    def get_state(self) -> dict[str, np.ndarray]:
        return self.state_at(self.pos)

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        if "pos" not in state:
            raise TrainnetError(f"MemoryData '{self.name}': the state lacks its position")
        self.pos = int(np.asarray(state["pos"]).reshape(-1)[0])

    def notes(self) -> list[str]:
        return []


@register("MemoryData")
class MemoryData(DataLayer):
    Params = MemoryDataParams
    caffe_params = {"memory_data_param": None}
    num_tops = (1, 2)

    def setup(self, bottom_shapes):
        self.check_no_transform()
        p = self.p
        tops = [(p.batch_size, p.channels, p.height, p.width)]
        return tops + [(p.batch_size,)] if self.with_labels else tops

    def make_reader(self, rng):
        return MemoryReader(self.name, self.top_shapes)
