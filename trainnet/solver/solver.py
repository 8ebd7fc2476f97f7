"""The training loop: Caffe's Solver::Solve with test, display, snapshot and exact resume."""

from __future__ import annotations

import json
import time
from collections import deque
from pathlib import Path
from typing import Callable

import numpy as np

from trainnet.errors import TrainnetError
from trainnet.netcfg.solver import SolverConfig
from trainnet.netcfg.solver_nets import SolverNet, solver_test_nets, solver_train_net
from trainnet.plan.compile import compile_net
from trainnet.plan.filter import filter_layers
from trainnet.runtime.device import CPU, Device
from trainnet.runtime.net import Net
from trainnet.solver import resume
from trainnet.solver.lr_policy import learning_rate
from trainnet.solver.update import update_rule


def average_outputs(net: Net, iterations: int) -> dict[str, float | np.ndarray]:
    """Run ``iterations`` forward passes and average each output (as Caffe's test does)."""
    totals: dict = {}
    for _ in range(iterations):
        net.forward()
        for name, value in net.outputs().items():
            totals[name] = totals.get(name, 0) + value
    return {k: v / iterations for k, v in totals.items()}


class Solver:
    """Trains the net a SolverConfig names; ``log`` receives the progress lines."""

    def __init__(self, cfg: SolverConfig, device: Device = CPU,
                 log: Callable[[str], None] = lambda line: None, graph: bool = True):
        self.cfg = cfg
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
        for i, test in enumerate(solver_test_nets(cfg)):
            log(f"Creating test net (#{i}) specified by {test.source}")
            self.test_nets.append(Net(self._compile(test, "TEST", device), device, rng=self.test_rng,
                                      params=self.net.params, graph=graph))
        lr_mult, decay_mult = self.net.params.multipliers()
        self.rule = update_rule(cfg.type)(cfg, lr_mult, decay_mult)
        # On a GPU one training iteration (forward, backward, update) is captured as a CUDA
        # graph on its second run and replayed after; the data layers run before it.
        self.graph = graph and device.is_gpu
        if self.graph and self.net.graph_blocker:
            self.graph = False
            log(f"CUDA graph off: layer '{self.net.graph_blocker}' works on the host after device work")
        self._graphs: dict[str, object] = {}
        if device.is_gpu:
            self.rule.to_device(device)
        self.iter = 0
        self.losses: deque[float] = deque(maxlen=cfg.average_loss)
        self.stop_requested = False
        self.last_test: dict = {}
        self.test_results: list[dict] = []   # the last test's outputs, one dict per test net
        self.prefix = self._prefix()
        self._acc = device.zeros(self.net.params.diff.shape) if cfg.iter_size > 1 else None
        self._t0 = time.perf_counter()
        self._window = (self._t0, 0)  # time and iteration of the last display (reset by solve)

    @staticmethod
    def _compile(net: SolverNet, phase: str, device: Device):
        return compile_net(net.cfg, phase, level=net.state.level, stages=list(net.state.stage),
                           gpu=device.is_gpu)

    def _prefix(self) -> Path:
        if self.cfg.snapshot_prefix:
            return Path(self.cfg.snapshot_prefix)
        solver_file = Path(self.cfg.file) if self.cfg.file else Path("trainnet")
        return solver_file.with_suffix("")

    @property
    def log_path(self) -> Path:
        return Path(f"{self.prefix}_log.jsonl")

    def record(self, **fields) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as f:
            f.write(json.dumps(fields) + "\n")

    # --- the loop ---------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Finish the current iteration, snapshot, and return from ``solve`` (Ctrl-C)."""
        self.stop_requested = True

    def solve(self) -> dict:
        cfg = self.cfg
        self.log(f"Solving {self.net.plan.net_name} on {self.device}: {self.net.plan.param_count:,} "
                 f"parameters, iterations {self.iter} -> {cfg.max_iter}")
        self._t0 = time.perf_counter()
        self._window = (self._t0, self.iter)
        while self.iter < cfg.max_iter and not self.stop_requested:
            self.step_once()
            if cfg.snapshot and self.iter % cfg.snapshot == 0:
                self.snapshot()
        if self.stop_requested:
            self.log(f"Stopped at iteration {self.iter}")
            self.snapshot()
            return self.last_test
        if cfg.snapshot_after_train and (not cfg.snapshot or self.iter % cfg.snapshot != 0):
            self.snapshot()
        if cfg.display and self.iter % cfg.display == 0:
            self.losses.append(self.net.forward())
            self.log(f"Iteration {self.iter}, loss = {sum(self.losses) / len(self.losses):.6g}")
        if cfg.test_interval and self.iter % cfg.test_interval == 0:
            self.test_all()
        self.log("Optimization Done.")
        return self.last_test

    def step_once(self) -> None:
        cfg, it = self.cfg, self.iter
        if cfg.test_interval and it % cfg.test_interval == 0 and (it > 0 or cfg.test_initialization):
            self.test_all()
        rate = learning_rate(cfg, it)
        loss = self._iteration_gpu(rate, it) if self.device.is_gpu else self._iteration_cpu(rate, it)
        if not np.isfinite(loss):
            raise TrainnetError(f"iteration {it}: the loss is {loss} (diverged); lower base_lr or "
                                "check the data")
        self.losses.append(loss)
        smoothed = sum(self.losses) / len(self.losses)
        if cfg.display and it % cfg.display == 0:
            now = time.perf_counter()
            (then, then_it), self._window = self._window, (now, it)
            speed = f" ({(it - then_it) / (now - then):.1f} iter/s)" if it > then_it else ""
            self.log(f"Iteration {it}{speed}, loss = {smoothed:.6g}, lr = {rate:.6g}")
            self.record(event="train", iter=it, loss=loss, smoothed_loss=smoothed, lr=rate,
                        seconds=round(now - self._t0, 3))
            self._report_data(self.net)
        self.iter += 1

    def _iteration_cpu(self, rate: float, it: int) -> float:
        """iter_size forward/backward passes and the update; returns the mean loss."""
        params, cfg = self.net.params, self.cfg
        if self._acc is None:
            loss = self.net.forward_backward()
        else:
            self._acc.fill(0)
            loss = 0.0
            for _ in range(cfg.iter_size):
                loss += self.net.forward_backward()
                self._acc += params.diff
            params.diff[...] = self._acc
            loss /= cfg.iter_size
        self.rule.apply(params.data, params.diff, rate, it)
        return loss

    def _iteration_gpu(self, rate: float, it: int) -> float:
        """The same on the GPU: the host uploads the batch and this iteration's rates, then
        the device work runs as one graph (two with iter_size > 1: passes, then the update)."""
        net, rule, device = self.net, self.rule, self.device
        w, g, acc = net.params.data, net.params.diff, self._acc
        rule.prepare(rate, it)
        if acc is None:
            net.forward_host()
            self._run("iteration", lambda: (net.forward_device(), net.backward(), rule.apply_gpu(w, g)))
            return net.loss()
        loss = 0.0
        for _ in range(self.cfg.iter_size):
            net.forward_host()
            self._run("pass", lambda: (net.forward_device(), net.backward(), device.add(acc, g)))
            loss += net.loss()
        self._run("update", lambda: (device.copy(g, acc), device.fill(acc, 0), rule.apply_gpu(w, g)))
        return loss / self.cfg.iter_size

    def _run(self, name: str, work: Callable[[], object]) -> None:
        """Run ``work`` eagerly the first time (kernels compile), then as a captured graph."""
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
        """Test every test net with its test_iter; returns (and keeps) test net #0's outputs."""
        results = []
        for i, (net, n) in enumerate(zip(self.test_nets, self.cfg.test_iter)):
            outputs = average_outputs(net, n)
            parts = []
            for name, value in outputs.items():
                if np.ndim(value) == 0:
                    parts.append(f"{name} = {float(value):.6g}")
            self.log(f"Iteration {self.iter}, Testing net (#{i}): " + ", ".join(parts))
            self.record(event="test", iter=self.iter, net=i,
                        outputs={k: (float(v) if np.ndim(v) == 0 else np.asarray(v).tolist())
                                 for k, v in outputs.items()})
            results.append(outputs)
            self._report_data(net)
        self.test_results = results
        self.last_test = results[0] if results else {}
        return self.last_test

    def _report_data(self, net: Net) -> None:
        """Log what the net's data layers report (records skipped as unreadable)."""
        for note in net.data_notes():
            self.log(f"Iteration {self.iter}, data: {note}")
            self.record(event="data", iter=self.iter, message=note)

    # --- snapshots ---------------------------------------------------------------------------
    def snapshot(self) -> Path:
        """Weights and state for this iteration in snapshot_format; returns the state's path."""
        return resume.snapshot(self)

    def restore(self, state_path: Path) -> None:
        """Continue exactly where a snapshot left off (a Caffe state: as far as it can say)."""
        resume.restore(self, Path(state_path))
