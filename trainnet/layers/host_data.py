"""What the layers whose tops the host fills share (a dataset reader, fillers, the user): no
bottoms and no backward, since a source's tops take no gradient."""

from __future__ import annotations

from trainnet.layers.base import Layer, StepIO


class HostData(Layer):
    """Base of the source layers whose tops come from the host: Data and its kin, DummyData,
    Input."""

    num_bottoms = (0, 0)
    is_data = True
    has_backward = False
    backward_reads_bottom = False

    def backward_cpu(self, io: StepIO):
        """Nothing: the plan runs no backward for a source."""

    def backward_gpu(self, io: StepIO):
        """Nothing, as on the CPU."""
