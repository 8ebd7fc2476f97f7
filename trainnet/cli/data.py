"""Datasets: `trainnet data ...`."""

from __future__ import annotations

import os
from pathlib import Path

import click

from trainnet.cli.common import echo, main, user_errors


@main.group()
def data():
    """Fetch datasets."""


@data.command("mnist")
@click.option("--dest", type=click.Path(file_okay=False),
              help="Data root (default: $TRAINNET_DATA, else ./data); files go to DEST/mnist.")
@click.option("--mirror", default=None, help="Base URL to download from.")
@user_errors
def data_mnist(dest, mirror):
    """Download MNIST and verify its checksums."""
    from trainnet.data.download import DEFAULT_MIRROR, download_mnist

    from trainnet.data.paths import DEFAULT_ROOT

    root = Path(dest or os.environ.get("TRAINNET_DATA") or DEFAULT_ROOT)
    paths = download_mnist(root / "mnist", mirror=mirror or DEFAULT_MIRROR, log=echo)
    echo(f"MNIST is in {root / 'mnist'} ({len(paths)} files verified)")
    if dest and not os.environ.get("TRAINNET_DATA"):
        echo(f"Set TRAINNET_DATA={root.resolve()} so configs find it.")
