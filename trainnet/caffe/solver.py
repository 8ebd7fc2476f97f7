"""pycaffe's solvers over trainnet's Solver: ``get_solver(file)`` and ``SGDSolver(file)`` ...

A solver made here compiles its nets as ``trainnet.caffe.Net`` does (every blob readable after a
step), runs without CUDA graphs (a script may change anything between steps), and prints its
progress to stderr, as Caffe does.  ``trainnet train`` keeps the packed, graph-replayed plan.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Optional

from trainnet.caffe import mode
from trainnet.caffe.net import Net
from trainnet.netcfg import load_solver
from trainnet.solver.lr_policy import learning_rate
from trainnet.solver.solver import Solver as TrainSolver

OPEN_PLAN = dict(reuse_memory=False, in_place=False, fuse=False)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Solver:
    """The solver a solver file describes (its ``type``, unless a subclass names one)."""

    type: Optional[str] = None

    def __init__(self, solver_file, log: Callable[[str], None] = _stderr):
        cfg = load_solver(str(solver_file))
        if self.type is not None and cfg.type != self.type:
            cfg = cfg.model_copy(update={"type": self.type})
        self._solver = TrainSolver(cfg, mode.device(), log=log, graph=False,
                                   compile_options=OPEN_PLAN)
        self.param = cfg
        self._net = Net._over(self._solver.net, self._solver.train_cfg)
        self._test_nets = [Net._over(n, n_cfg) for n, n_cfg in
                           zip(self._solver.test_nets, self._solver.test_cfgs)]

    @property
    def net(self) -> Net:
        return self._net

    @property
    def test_nets(self) -> list[Net]:
        return self._test_nets

    @property
    def iter(self) -> int:
        return self._solver.iter

    @iter.setter
    def iter(self, value: int) -> None:
        self._solver.iter = int(value)

    def step(self, iters: int) -> None:
        """``iters`` iterations: tests at ``test_interval``, display, snapshots at ``snapshot``,
        as Caffe's Step."""
        s = self._solver
        for _ in range(int(iters)):
            s.step_once()
            if s.cfg.snapshot and s.iter % s.cfg.snapshot == 0:
                s.snapshot()

    def solve(self, resume_file: Optional[str] = None) -> dict:
        """Train to max_iter (from a snapshot's state with ``resume_file``); returns the last
        test's outputs."""
        if resume_file is not None:
            self.restore(resume_file)
        return self._solver.solve()

    def apply_update(self) -> None:
        """One update from the gradients in the net (the rate of the current iteration); the
        iteration count is left alone, as Caffe's ApplyUpdate."""
        s = self._solver
        s.rule.prepare(learning_rate(s.cfg, s.iter), s.iter)
        s.rule.update(s.net.params.data, s.net.params.diff)

    def snapshot(self) -> Path:
        return self._solver.snapshot()

    def restore(self, state_file) -> None:
        self._solver.restore(Path(state_file))

    def add_callback(self, on_start, on_gradients: Optional[Callable[[], None]] = None) -> None:
        """``on_start()`` before each iteration's passes and ``on_gradients()`` after them,
        before the update; or one object with ``on_start`` and ``on_gradients`` methods."""
        if on_gradients is None:
            on_start, on_gradients = on_start.on_start, on_start.on_gradients
        self._solver.callbacks.append((on_start, on_gradients))


def _typed(name: str) -> type:
    return type(f"{name}Solver", (Solver,), {"type": name, "__doc__": f"Caffe's {name} solver."})


SGDSolver = _typed("SGD")
NesterovSolver = _typed("Nesterov")
AdaGradSolver = _typed("AdaGrad")
RMSPropSolver = _typed("RMSProp")
AdaDeltaSolver = _typed("AdaDelta")
AdamSolver = _typed("Adam")


def get_solver(solver_file) -> Solver:
    """The solver of the type the file names (pycaffe's caffe.get_solver)."""
    return Solver(solver_file)
