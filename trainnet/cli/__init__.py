"""The `trainnet` command line: one click group, its commands in modules by subject."""

from trainnet.cli import data, models, run  # noqa: F401  (each registers its commands)
from trainnet.cli.common import main

__all__ = ["main"]
