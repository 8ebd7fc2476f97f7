"""What the layers whose tops the host fills share (a dataset reader, fillers, the user): no
bottoms and no backward, since a source's tops take no gradient."""

from __future__ import annotations

from trainnet.layers.no_backward import NoBackward


class HostData(NoBackward):
    """Base of the source layers whose tops come from the host: Data and its kin, DummyData,
    Input."""

    num_bottoms = (0, 0)
    is_data = True
