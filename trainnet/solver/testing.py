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
    """The loss or a gradient went non-finite; the message (one line) says where and what was
    saved; ``table`` holds debug_info's lines of the pass up to the first non-finite blob (the
    solver logs them before raising)."""

    table: list[str] = []


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


def test_all(solver) -> dict:
    """Test every test net of ``solver`` with its test_iter, logging and recording each result;
    returns (and keeps) test net #0's outputs.  A stop requested meanwhile raises Interrupted."""
    results = []
    for i, (net, n) in enumerate(zip(solver.test_nets, solver.cfg.test_iter)):
        try:
            outputs = average_outputs(net, n, stop=lambda: solver.stop_requested)
        except NonFiniteOutput as exc:  # the test data or a test-only layer: training goes on
            solver.log(f"Iteration {solver.iter}, Testing net (#{i}): {exc}")
            solver.record(event="test", iter=solver.iter, net=i, error=str(exc))
            results.append({})
            continue
        parts = [f"{name} = {float(value):.6g}" for name, value in outputs.items()
                 if np.ndim(value) == 0]
        solver.log(f"Iteration {solver.iter}, Testing net (#{i}): " + ", ".join(parts))
        solver.record(event="test", iter=solver.iter, net=i,
                      outputs={k: (float(v) if np.ndim(v) == 0 else np.asarray(v).tolist())
                               for k, v in outputs.items()})
        results.append(outputs)
        solver._report_data(net, solver.iter)
    solver.test_results = results
    solver.last_test = results[0] if results else {}
    return solver.last_test
