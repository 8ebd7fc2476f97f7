"""Threshold: ``y = 1`` where ``x > threshold``, else 0.

Like Caffe's it has no backward (its gradient is 0 almost everywhere): the compiler refuses a
net whose loss needs a gradient through it; ``propagate_down: false`` on it says that none is
wanted.
"""

from __future__ import annotations

import numpy as np

from trainnet.layers.base import StepIO, register
from trainnet.layers.neuron import Neuron
from trainnet.layers.no_backward import NoBackward
from trainnet.netcfg.common import Strict
from trainnet.kernels.sources import kernel_source

KERNELS = kernel_source(__file__)


class ThresholdParams(Strict):
    threshold: float = 0.0


@register("Threshold")
class Threshold(NoBackward, Neuron):
    Params = ThresholdParams
    caffe_params = {"threshold_param": None}

    def forward_cpu(self, io: StepIO):
        np.greater(io.bottom[0], np.float32(self.p.threshold), out=io.top[0])

    def forward_gpu(self, io: StepIO):
        x, y = io.bottom[0], io.top[0]
        io.gpu.launch(KERNELS, "threshold_forward", x.size, y, x, np.float32(self.p.threshold),
                      np.int64(x.size))
