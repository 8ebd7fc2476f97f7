"""``python -m trainnet``: the ``trainnet`` command."""

from trainnet.launch import run

run()
