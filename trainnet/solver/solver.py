"""The training loop: Caffe's Solver::Solve with test, display, snapshot and exact resume."""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from trainnet.errors import TrainnetError
from trainnet.netcfg.solver import SolverConfig
from trainnet.netcfg.solver_nets import SolverNet, solver_test_nets, solver_train_net
from trainnet.plan.compile import compile_net
from trainnet.plan.filter import filter_layers
from trainnet.runtime import locate
from trainnet.runtime.debug_info import PassFigures
from trainnet.runtime.device import CPU, Device
from trainnet.runtime.net import Net
from trainnet.solver import debug_info, resume
from trainnet.solver.outputs import LogWriteError, RunFiles, snapshot_prefix
from trainnet.solver.testing import Diverged, Interrupted, NonFiniteOutput, average_outputs, test_all
from trainnet.solver.lr_policy import learning_rate
from trainnet.solver.update import update_rule

__all__ = ["Solver", "Diverged", "NonFiniteOutput", "average_outputs"]  # the last three: testing's


class Solver:
    """Trains the net a SolverConfig names; ``log`` receives the progress lines."""

    def __init__(self, cfg: SolverConfig, device: Device = CPU,
                 log: Callable[[str], None] = lambda line: None, graph: bool = True,
                 compile_options: dict | None = None):
        """``compile_options`` go to compile_net for every net (pycaffe's Solver keeps every
        blob readable); ``callbacks`` are (on_start, on_gradients) pairs called in each
        iteration, before its passes and before its update (pycaffe's add_callback)."""
        self.cfg = cfg
        self.compile_options = compile_options or {}
        self.callbacks: list[tuple[Callable[[], None], Callable[[], None]]] = []
        self.device = device
        self.log = log
        seed = cfg.random_seed if cfg.random_seed >= 0 else int(np.random.SeedSequence().entropy % 2**63)
        seeds = np.random.SeedSequence(seed).spawn(2)
        self.rng = np.random.default_rng(seeds[0])
        self.test_rng = np.random.default_rng(seeds[1])
        train = solver_train_net(cfg)
        log(f"Creating training net from {train.source}")
        self.net = Net(self._compile(train, "TRAIN", device), device, rng=self.rng)
        # the train net's own layers, in file order (Caffe's order of layers and parameter blobs)
        self.train_cfg = train.cfg.model_copy(update={"layer": filter_layers(train.cfg.layer,
                                                                             train.state)})
        self.test_nets: list[Net] = []
        tests = solver_test_nets(cfg)
        self.test_cfgs = [test.cfg for test in tests]  # each test net's config, as read
        for i, test in enumerate(tests):
            log(f"Creating test net (#{i}) specified by {test.source}")
            self.test_nets.append(Net(self._compile(test, "TEST", device), device, rng=self.test_rng,
                                      params=self.net.params, graph=graph))
        lr_mult, decay_mult = self.net.params.multipliers()
        self.rule = update_rule(cfg.type)(cfg, lr_mult, decay_mult)
        # On a GPU a pass (forward, backward) and the update are each captured as a CUDA graph
        # on their second run and replayed after (_run); the data layers run before them.
        self.graph = graph and device.is_gpu
        if self.graph and self.net.graph_blocker:
            self.graph = False
            log(f"CUDA graph off: layer '{self.net.graph_blocker}' works on the host after device work")
        self._graphs: dict[str, object] = {}
        if device.is_gpu:
            self.rule.to_device(device)
        self.iter = 0
        self.losses: deque[float] = deque(maxlen=cfg.average_loss)
        self.explosion = debug_info.ExplosionWatch(cfg.loss_explosion_factor)
        self.figures: Optional[PassFigures] = None  # debug_info's, of the last iteration
        self.stop_requested = self.snapshot_requested = False
        self.stop_reason = self.snapshot_reason = ""
        self.last_test: dict = {}
        self.test_results: list[dict] = []   # the last test's outputs, one dict per test net
        self.prefix = snapshot_prefix(cfg)
        self.files = RunFiles(self.prefix)
        if not self.net.loss_tops:
            log(f"Warning: the training net '{self.net.plan.net_name}' has no loss (no top with "
                "a loss_weight): training would change nothing but weight decay")
        # iter_size > 1: the passes' gradients are summed here, then copied into the arena
        self._acc = device.zeros(self.net.params.diff.shape) if cfg.iter_size > 1 else None
        self._grads = self.net.params.diff if self._acc is None else self._acc
        self._t0 = time.perf_counter()
        self._window = (self._t0, 0)  # time and iteration of the last display (reset by solve)

    def _compile(self, net: SolverNet, phase: str, device: Device):
        """debug_info compiles with no fusion: every layer its own step, as in Caffe's lines."""
        options = {**self.compile_options, **({"fuse": False} if self.cfg.debug_info else {})}
        return compile_net(net.cfg, phase, level=net.state.level, stages=list(net.state.stage),
                           gpu=device.is_gpu, **options)

    @property
    def log_path(self) -> Path:
        return self.files.log_path

    def record(self, **fields) -> None:
        self.files.record(**fields)

    # --- the loop ---------------------------------------------------------------------------
    def request_stop(self, why: str = "") -> None:
        """Finish the current iteration (or interrupt a test), snapshot, and return from
        ``solve`` (Ctrl-C, SIGTERM); ``why`` is said in the log.  Safe in a signal handler."""
        self.stop_requested, self.stop_reason = True, why

    def request_snapshot(self, why: str = "") -> None:
        """Snapshot after the current iteration and go on (SIGHUP)."""
        self.snapshot_requested, self.snapshot_reason = True, why

    def solve(self) -> dict:
        """Train to max_iter; the run's files (log, lock) are taken first, so that every output
        problem is reported before any work is done."""
        self.files.open()
        for note in self.files.notes:
            self.log(f"Warning: {note}")
        try:
            with np.errstate(all="ignore"):  # divergence is caught and located, not warned of
                return self._solve()
        except LogWriteError as exc:
            self.log(f"Iteration {self.iter}: the log cannot be written; snapshotting and stopping")
            try:
                self.snapshot()
            except TrainnetError as failed:
                raise TrainnetError(f"{exc}; the snapshot failed too: {failed}") from None
            raise TrainnetError(f"{exc}; stopped at iteration {self.iter} after a snapshot") from None
        finally:
            self.files.close()

    def _solve(self) -> dict:
        cfg = self.cfg
        self.log(f"Solving {self.net.plan.net_name} on {self.device}: {self.net.plan.param_count:,} "
                 f"parameters, iterations {self.iter} -> {cfg.max_iter}")
        if cfg.snapshot == 1 and cfg.max_iter - self.iter > 1:
            self.log(resume.every_iteration_warning(self))
        self._t0 = time.perf_counter()
        self._window = (self._t0, self.iter)
        if self._acc is not None:  # no sum left over from an iteration an error cut short
            self.device.fill(self._acc, 0)
        while self.iter < cfg.max_iter and not self.stop_requested:
            self.step_once()
            if self.stop_requested:
                break
            if self.snapshot_requested and self.snapshot_reason:
                self.log(f"{self.snapshot_reason}: snapshot at iteration {self.iter}")
            if (cfg.snapshot and self.iter % cfg.snapshot == 0) or self.snapshot_requested:
                self.snapshot_requested = False
                self.snapshot()
        if self.stop_requested:
            self.log(f"Stopped at iteration {self.iter}"
                     + (f" ({self.stop_reason})" if self.stop_reason else ""))
            self.snapshot()
            return self.last_test
        if cfg.snapshot_after_train and (not cfg.snapshot or self.iter % cfg.snapshot != 0):
            self.snapshot()
        if cfg.display and self.iter % cfg.display == 0:
            self._final_display()
        if cfg.test_interval and self.iter % cfg.test_interval == 0:
            try:
                self.test_all()
            except Interrupted:
                self.log(f"Iteration {self.iter}: test interrupted")
        self.log("Optimization Done.")
        return self.last_test

    def _final_display(self) -> None:
        """Caffe's last display: a forward of the trained weights; a loss that is not finite
        there is a divergence, reported (and raised) as an iteration's is."""
        marked = (locate.mark(self.net), self.rng.bit_generator.state)
        loss = self.net.forward()
        if not np.isfinite(loss):
            debug_info.diverged(self, self.iter, loss, marked)
        self.losses.append(loss)
        self.log(f"Iteration {self.iter}, loss = {sum(self.losses) / len(self.losses):.6g}")

    def step_once(self) -> None:
        cfg, it = self.cfg, self.iter
        if cfg.test_interval and it % cfg.test_interval == 0 and (it > 0 or cfg.test_initialization):
            try:
                self.test_all()
            except Interrupted:
                self.log(f"Iteration {it}: test interrupted")
                return
        rate = learning_rate(cfg, it)
        marked = (locate.mark(self.net), self.rng.bit_generator.state)
        loss = self._iteration(rate, it, marked)
        self.losses.append(loss)
        self.iter += 1  # before the log is written: a failing write snapshots a consistent state
        if self.figures is not None:  # Caffe's order: the passes' lines, the display, the update's
            debug_info.report_passes(self, self.figures)
        debug_info.watch_loss(self, it, loss)
        smoothed = sum(self.losses) / len(self.losses)
        if cfg.display and it % cfg.display == 0:
            now = time.perf_counter()
            (then, then_it), self._window = self._window, (now, it)
            speed = (f" ({(it - then_it) / (now - then):.1f} iter/s, {now - self._t0:.1f} s)"
                     if it > then_it else "")  # the speed since the last display, the run's time
            self.log(f"Iteration {it}{speed}, loss = {smoothed:.6g}, lr = {rate:.6g}")
            self.record(event="train", iter=it, loss=loss, smoothed_loss=smoothed, lr=rate,
                        seconds=round(now - self._t0, 3))
            self._report_data(self.net, it)
            if self.figures is not None:
                debug_info.report_update(self, it, self.figures)

    def _iteration(self, rate: float, it: int, marked) -> float:
        """iter_size forward/backward passes, the divergence check, then the update; returns
        the mean loss.  The host runs the data layers and reads the loss; the device work of a
        pass and the update go through ``_run`` (a captured graph on a GPU), the update only
        once the host has checked the loss and the gradient."""
        net, n = self.net, self.cfg.iter_size
        self.rule.prepare(rate, it)
        for on_start, _ in self.callbacks:
            on_start()
        loss = 0.0
        figures = debug_info.due(self, it)  # a display iteration's figures, step by step
        for _ in range(n):
            net.forward_host(figures)
            if figures is None:
                self._run("pass", self._pass)
            else:
                self._pass(figures)
                figures.take_norms(self._grads)
                figures.pass_index += 1
            loss += net.loss()
        loss /= n
        for _, on_gradients in self.callbacks:
            on_gradients()
        if not np.isfinite(loss) or not self.rule.finite(self._grads):
            debug_info.diverged(self, it, loss, marked)
        if figures is not None:
            figures.before_update()
        self._run("update", self._update)
        if figures is not None:
            figures.after_update()
        self.figures = figures
        return loss

    def _pass(self, figures: Optional[PassFigures] = None) -> None:
        """One pass's device work: forward, backward, the sum over iter_size, and (on a GPU)
        the count of non-finite gradients that ``rule.finite`` reads.  ``figures`` (debug_info)
        observes each step: the pass then runs eagerly, outside any graph."""
        self.net.forward_device(figures)
        self.net.backward(figures)
        if self._acc is not None:
            self.device.add(self._acc, self.net.params.diff)
        self.rule.queue_check(self._grads)

    def _update(self) -> None:
        params, acc = self.net.params, self._acc
        if acc is not None:
            self.device.copy(params.diff, acc)
            self.device.fill(acc, 0)
        self.rule.update(params.data, params.diff)

    def _run(self, name: str, work: Callable[[], object]) -> None:
        """Run ``work``; with CUDA graphs (a GPU only) eagerly the first time (kernels compile),
        then as a graph captured on the second run and replayed after."""
        if not self.graph:
            work()
        elif name in self._graphs:
            graph = self._graphs[name]
            if graph is None:
                graph = self._graphs[name] = self.device.backend.capture(work)
            graph.replay()
        else:
            work()
            self._graphs[name] = None

    def test_all(self) -> dict:
        """Test every test net with its test_iter; returns (and keeps) test net #0's outputs.
        A stop requested meanwhile raises Interrupted."""
        return test_all(self)

    def _report_data(self, net: Net, it: int) -> None:
        """Log what the net's data layers report (records skipped as unreadable)."""
        for note in net.data_notes():
            self.log(f"Iteration {it}, data: {note}")
            self.record(event="data", iter=it, message=note)

    # --- snapshots ---------------------------------------------------------------------------
    def snapshot(self) -> Path:
        """Weights and state for this iteration in snapshot_format; returns the state's path.
        With snapshot_keep, the older snapshots beyond the newest N go."""
        return resume.snapshot(self)

    def restore(self, state_path: Path) -> None:
        """Continue exactly where a snapshot left off (a Caffe state: as far as it can say)."""
        resume.restore(self, Path(state_path))
        self.explosion.seed(self.losses, self.iter)  # not blind for the first iterations
