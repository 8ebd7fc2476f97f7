"""The ``trainnet`` command's entry point.  It imports the command line itself, so that Ctrl-C
while that is still loading (a second or so on a cold start) is one line and exit status 130,
as it is once a command runs, not a traceback from the middle of an import.

Before that import (and so before NumPy loads) it turns ``--threads N`` or ``TRAINNET_THREADS``
into the variables NumPy's BLAS reads once, at load (see trainnet.cli.threads)."""

from __future__ import annotations

import os
import sys
from typing import Optional

BLAS_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS")


def thread_count(argv: list[str], environ=os.environ) -> Optional[str]:
    """The value of the last ``--threads N`` / ``--threads=N`` before a lone ``--``, else
    TRAINNET_THREADS; None when neither is a positive integer (click then says what is wrong)."""
    value = environ.get("TRAINNET_THREADS")
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "--threads" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--threads="):
            value = arg.partition("=")[2]
    return value if value and value.isdigit() and int(value) > 0 else None


def set_thread_env(argv: list[str], environ=os.environ) -> None:
    count = thread_count(argv, environ)
    if count is not None:
        for var in BLAS_VARS:
            environ[var] = count


def run() -> None:
    set_thread_env(sys.argv[1:])
    try:
        from trainnet.cli import main
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    main()
