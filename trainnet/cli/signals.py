"""Signals while training, as Caffe's ``--sigint-effect`` and ``--sighup-effect``: each is
``stop`` (finish the iteration, snapshot, exit), ``snapshot`` (snapshot after the iteration and
go on) or ``none``.  SIGTERM (what schedulers, systemd and Kubernetes send) and SIGQUIT take the
SIGINT effect; SIGUSR1 (Slurm's warning before a time limit) takes the SIGHUP effect.  A second
stop signal while stopping aborts at once."""

from __future__ import annotations

import contextlib
import signal
from typing import Iterator

import click

EFFECTS = ("stop", "snapshot", "none")
LIKE_SIGINT = ("SIGINT", "SIGTERM", "SIGQUIT")
LIKE_SIGHUP = ("SIGHUP", "SIGUSR1")


def signal_options(fn):
    fn = click.option("--sighup-effect", type=click.Choice(EFFECTS), default="snapshot",
                      show_default=True, help="What SIGHUP and SIGUSR1 do while training.")(fn)
    return click.option("--sigint-effect", type=click.Choice(EFFECTS), default="stop",
                        show_default=True, help="What SIGINT (Ctrl-C), SIGTERM and SIGQUIT do "
                        "while training.")(fn)


@contextlib.contextmanager
def handled(solver, sigint_effect: str, sighup_effect: str) -> Iterator[None]:
    """Route the signals to ``solver`` while training.  The handlers only set the solver's
    requests (it reports them at the iteration's end): a handler that printed could interrupt
    a write to the same stream."""
    effects = {**{name: sigint_effect for name in LIKE_SIGINT},
               **{name: sighup_effect for name in LIKE_SIGHUP}}

    def handler(signum, frame):
        name = signal.Signals(signum).name
        effect = effects[name]
        if effect == "stop":
            if solver.stop_requested:
                raise KeyboardInterrupt(f"a second {name} while stopping")
            solver.request_stop(name)
        elif effect == "snapshot":
            solver.request_snapshot(name)

    previous = {}
    for name in effects:
        signum = getattr(signal, name, None)
        if signum is not None:
            previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
