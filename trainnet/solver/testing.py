"""Testing a net as Caffe's solver does: outputs averaged over a number of batches."""

from __future__ import annotations

from typing import Callable

import numpy as np

from trainnet.errors import TrainnetError
from trainnet.runtime import locate
from trainnet.runtime.net import Net


class Interrupted(Exception):
    """A stop was requested while testing (Caffe's "Test interrupted")."""


class Diverged(TrainnetError):
    """The loss or a gradient went non-finite; the message says where and what was saved."""


class NonFiniteOutput(TrainnetError):
    """An output of a tested net is not finite; the message names the first blob that went so."""


def average_outputs(net: Net, iterations: int, stop: Callable[[], bool] = lambda: False
                    ) -> dict[str, float | np.ndarray]:
    """Run ``iterations`` forward passes and average each output (as Caffe's test does).
    An output that is not finite is an error naming the first blob that went non-finite (the
    batch is read again for that); ``stop`` returning True interrupts between batches."""
    totals: dict = {}
    for _ in range(iterations):
        if stop():
            raise Interrupted
        marked = locate.mark(net)
        with np.errstate(all="ignore"):
            net.forward()
        outputs = net.outputs()
        bad = [name for name, value in outputs.items() if not np.isfinite(value).all()]
        if bad:
            locate.rewind(net, marked)
            where = locate.locate_nonfinite(net, backward=False)
            raise NonFiniteOutput(f"net '{net.plan.net_name}': output '{bad[0]}' is not finite"
                                + (f"; first non-finite: {where}" if where else ""))
        for name, value in outputs.items():
            totals[name] = totals.get(name, 0) + value
    return {k: v / iterations for k, v in totals.items()}
