"""Input: a blob the user fills before each forward; it only declares the shapes.

Caffe's rule: one ``shape`` per top, or a single ``shape`` shared by every top.
"""

from __future__ import annotations

from trainnet.layers.base import StepIO, count_tops, register
from trainnet.layers.host_data import HostData
from trainnet.netcfg.common import BlobShape, Repeated, Strict


class InputParams(Strict):
    shape: Repeated[BlobShape] = []


@register("Input")
class Input(HostData):
    Params = InputParams
    caffe_params = {"input_param": None}
    num_tops = (1, None)
    filled_by_user = True

    def setup(self, bottom_shapes):
        shapes = [tuple(s.dim) for s in self.p.shape]
        if not shapes:
            raise self.error("shape: give one shape per top, or one shape for all tops")
        n = count_tops(self, default=len(shapes))
        if len(shapes) == 1:
            return shapes * n
        if len(shapes) != n:
            raise self.error(f"shape: {len(shapes)} shapes given for {n} tops; give one per top "
                             "or a single one for all")
        return shapes

    def forward_cpu(self, io: StepIO):
        pass  # the user (or the solver) writes the top blobs

    def forward_gpu(self, io: StepIO):
        pass  # the tops are uploaded by the user (or the solver) before the pass
