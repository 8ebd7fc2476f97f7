"""What a layer without a backward declares: the plan runs no backward for it and keeps nothing
alive for one (ArgMax, Accuracy, Threshold, HDF5Output, and the host-filled sources)."""

from __future__ import annotations

from trainnet.layers.base import Layer, StepIO


class NoBackward(Layer):
    """Mix in before the layer's base class: ``class ArgMax(NoBackward, Layer)``."""

    has_backward = False
    backward_reads_bottom = False

    def backward_cpu(self, io: StepIO):
        """Nothing: the plan never runs a backward for this layer."""

    def backward_gpu(self, io: StepIO):
        """Nothing, as on the CPU."""
