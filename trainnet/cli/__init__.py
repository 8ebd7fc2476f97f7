"""The `trainnet` command line: one click group, its commands in modules by subject.

It is where the registries netcfg reads configs against are filled: importing trainnet.layers
registers every layer type, importing trainnet.zoo the ``zoo:NAME`` net names."""

import importlib

from trainnet.cli import data, draw, models, plan, plot, run, timing  # each registers its commands
from trainnet.cli.common import main

importlib.import_module("trainnet.layers")  # every layer type
importlib.import_module("trainnet.zoo")     # zoo:NAME

__all__ = ["data", "draw", "main", "models", "plan", "plot", "run", "timing"]
