"""The ``trainnet`` command's entry point.  It imports the command line itself, so that Ctrl-C
while that is still loading (a second or so on a cold start) is one line and exit status 130,
as it is once a command runs, not a traceback from the middle of an import."""

from __future__ import annotations

import sys


def run() -> None:
    try:
        from trainnet.cli import main
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    main()
