"""``--threads N`` (or ``TRAINNET_THREADS``): the CPU threads a command's math uses (and the
data layers' ``workers``, where a net leaves them unset: the command applies that to the net).

NumPy's BLAS (OpenBLAS, MKL, BLIS, Accelerate) sizes its thread pool when NumPy loads, from
environment variables.  ``trainnet.launch`` (the ``trainnet`` command) reads ``--threads`` and
``TRAINNET_THREADS`` from the command line before anything imports NumPy and sets those
variables; when NumPy is already loaded (``python -m trainnet.cli``, a test's CliRunner),
threadpoolctl, if installed, resizes the pools in place; failing both, the command says the
count could not be applied."""

from __future__ import annotations

import os
from typing import Optional

import click

from trainnet.launch import BLAS_VARS

ENV = "TRAINNET_THREADS"
_limits = []  # threadpoolctl's limiters, held for the process's life


def threads_option(fn):
    return click.option("--threads", type=click.IntRange(min=1), envvar=ENV, default=None,
                        help=f"CPU threads for the math (BLAS), and the data layers' workers "
                        f"where the net sets none [env {ENV}; default: the BLAS library's own "
                        "choice, one worker].")(fn)


def apply_threads(count: Optional[int]) -> Optional[str]:
    """Give NumPy's BLAS ``count`` threads; returns the line saying how (None: not asked)."""
    if count is None:
        return None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is not None:
        _limits.append(threadpool_limits(limits=count, user_api="blas"))
        return f"BLAS threads: {count} (threadpoolctl)"
    if all(os.environ.get(var) == str(count) for var in BLAS_VARS[:2]):
        return f"BLAS threads: {count} ({', '.join(BLAS_VARS[:2])} set before NumPy loaded)"
    return (f"Warning: --threads {count}: the BLAS threads are unchanged: NumPy was loaded before "
            "the option was read (not through the trainnet command) and threadpoolctl is not "
            f"installed; set {BLAS_VARS[1]}={count} in the environment, or install threadpoolctl")
