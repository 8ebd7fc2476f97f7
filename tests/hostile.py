"""What every hostile-input test asserts: a bad input ends in exactly one clean line on stderr
(``error: ...``) and a non-zero exit, never a traceback; run in-process (fast) or as a real
subprocess (signals, memory, concurrency)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from trainnet.cli import main

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


def cli(*args, cwd: Path | None = None, env: dict | None = None) -> Outcome:
    """``trainnet ARGS`` in this process (click's runner), stdout and stderr apart."""
    old = Path.cwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        result = CliRunner().invoke(main, [str(a) for a in args], env=env)
    finally:
        os.chdir(old)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback: let the test show it
    return Outcome(result.exit_code, result.stdout, result.stderr)


def trainnet_process(*args, cwd: Path | None = None, **popen) -> subprocess.Popen:
    """``trainnet ARGS`` as a real process (``python -m trainnet``), pipes for its output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **popen.pop("env", {})}
    return subprocess.Popen([sys.executable, "-m", "trainnet", *map(str, args)], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **popen)


def run_process(*args, cwd: Path | None = None, timeout: float = 120, **popen) -> Outcome:
    proc = trainnet_process(*args, cwd=cwd, **popen)
    out, err = proc.communicate(timeout=timeout)
    return Outcome(proc.returncode, out, err)


# a line of a run's log (train, test): glog's stamp; they go to stderr, as glog's do
STAMPED = re.compile(r"^[IW]\d{4} \d\d:\d\d:\d\d\.\d{3} ")


def assert_one_error(outcome: Outcome, *fragments: str, code: int | None = None) -> str:
    """Exactly one ``error:`` line on stderr (besides a run's time-stamped log lines) holding
    every fragment, a non-zero exit (``code``
    when given), no traceback anywhere; returns the line."""
    lines = [line for line in outcome.stderr.splitlines()
             if line.strip() and not STAMPED.match(line)]
    assert "Traceback" not in outcome.stderr + outcome.stdout, outcome.stderr
    assert outcome.code != 0 if code is None else outcome.code == code, (outcome.code, outcome.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), outcome.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]
