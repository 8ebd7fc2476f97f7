"""The `trainnet` command line: one click group, its commands in modules by subject.

It is where the registries netcfg reads configs against are filled: importing trainnet.layers
registers every layer type, importing trainnet.zoo the ``zoo:NAME`` net names."""

import trainnet.layers  # noqa: F401
import trainnet.zoo  # noqa: F401
from trainnet.cli import data, models, run  # noqa: F401  (each registers its commands)
from trainnet.cli.common import main

__all__ = ["main"]
