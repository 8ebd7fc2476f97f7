"""The model zoo's nets: the classic Caffe nets shipped as editable YAML configs (``nets/``),
with what is known of each from outside trainnet (``index.yaml``): where it comes from, its
published parameter count, input and output shapes.  ``zoo:NAME`` names one wherever a net
path is accepted."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from trainnet.errors import ConfigError
from trainnet.netcfg.common import Preprocess
from trainnet.netcfg.net import NET_SCHEMES
from trainnet.netcfg.source import load_yaml
from trainnet.registry import Registry

HERE = Path(__file__).resolve().parent
INDEX = HERE / "index.yaml"
NETS = HERE / "nets"

Shape = tuple[int, ...]


@dataclass(frozen=True)
class ZooNet:
    name: str
    description: str
    prototxt: str                  # the original Caffe definition the YAML was written from
    params: int                    # learned parameters (BatchNorm's running statistics excluded)
    params_source: str             # where that figure comes from
    input_shape: Shape
    outputs: dict[str, Shape]      # the net's outputs and their shapes
    shapes: dict[str, Shape]       # a few intermediate blobs and their expected shapes
    preprocess: Preprocess         # the published input preparation, from the net's YAML


@functools.cache
def _index() -> Registry:
    table = Registry("zoo net")
    for name, entry in load_yaml(INDEX)[0].items():
        table.register(name)(entry)
    return table


def names() -> list[str]:
    """The zoo's net names, in the index's order (small nets first, then by family)."""
    return list(_index().entries)


def _entry(name: str) -> dict:
    try:
        return _index()[name]
    except KeyError as exc:
        raise ConfigError(exc.args[0]) from None


def net_path(name: str) -> Path:
    """The packaged YAML config of zoo net ``name``; a ConfigError naming the known nets (and
    the closest one) for an unknown name."""
    _entry(name)
    return NETS / f"{name}.yaml"


NET_SCHEMES.register("zoo")(net_path)  # zoo:NAME wherever netcfg loads a net


def _shape(value) -> Shape:
    return tuple(int(d) for d in value)


def info(name: str) -> ZooNet:
    """What is recorded of zoo net ``name``.  The preprocess record is read from the net's YAML
    without building its layers, so this works whatever layer types are registered."""
    entry = _entry(name)
    data = load_yaml(net_path(name))[0]
    return ZooNet(name=name, description=entry["description"], prototxt=entry["prototxt"],
                  params=int(entry["params"]), params_source=entry["params_source"],
                  input_shape=_shape(entry["input"]),
                  outputs={k: _shape(v) for k, v in entry["outputs"].items()},
                  shapes={k: _shape(v) for k, v in entry.get("shapes", {}).items()},
                  preprocess=Preprocess.model_validate(data["preprocess"]))
