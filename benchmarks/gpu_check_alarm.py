"""A pytest plugin bounding each test's time with SIGALRM (``-p gpu_check_alarm``), for
benchmarks/gpu_check.sh: pytest-timeout may be absent on a bare GPU machine.

Each phase of a test (set-up, call, tear-down) gets ``GPU_CHECK_TEST_SECONDS`` (default 60);
past it the phase raises ``TestTimedOut`` and the test fails or errors, naming the bound, and
the run goes on.  A call stuck inside C (a hung kernel) sees the alarm only when it returns to
Python: the script's global ``timeout`` is the backstop for that.
"""

from __future__ import annotations

import os
import signal

import pytest


class TestTimedOut(Exception):
    __test__ = False  # not a test class


def seconds() -> int:
    return int(os.environ.get("GPU_CHECK_TEST_SECONDS", "60"))


def _raise(signum, frame):
    raise TestTimedOut(f"over the bound of {seconds()} s per test phase (GPU_CHECK_TEST_SECONDS)")


def _bounded():
    previous = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(seconds())
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    yield from _bounded()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    yield from _bounded()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield from _bounded()
