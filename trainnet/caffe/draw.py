"""pycaffe's ``caffe.draw`` (python/caffe/draw.py) over trainnet's drawing code (trainnet.tools.draw).

``caffe_net`` is Caffe's NetParameter (``caffe_pb2``, as NetSpec's ``to_proto()`` gives it, or
as read with ``text_format.Merge``) or a trainnet NetConfig.  With ``phase`` (caffe.TRAIN or
caffe.TEST) the net is compiled for that phase and its blob shapes are on the edges; with
``phase=None`` every layer is drawn whatever its phase, without shapes, as pycaffe does.  A net
that cannot compile (a data file not on this machine) is drawn without shapes too.

Graphviz's ``dot`` lays the picture out when it is on PATH, else trainnet's own renderer does.
pycaffe's ``get_pydot_graph`` returns a pydot object; trainnet has no pydot dependency, so
``get_graph_dot`` returns the Graphviz DOT text instead."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from trainnet.caffe.mode import phase_name
from trainnet.errors import TrainnetError
from trainnet.netcfg import NetConfig, NetState, load_net_text
from trainnet.plan import compile_net
from trainnet.plan.filter import filter_layers
from trainnet.tools.draw import (NET_VIEW, Graph, config_graph, graph_of, picture_format, render,
                                 to_dot, write_picture)

__all__ = ["draw_net", "draw_net_to_file", "get_graph_dot"]


def net_config(caffe_net) -> NetConfig:
    """A NetConfig from a caffe_pb2.NetParameter (or the NetConfig itself)."""
    if isinstance(caffe_net, NetConfig):
        return caffe_net
    if not hasattr(caffe_net, "layer") or not hasattr(caffe_net, "SerializeToString"):
        raise TypeError(f"caffe_net must be a caffe_pb2.NetParameter or a NetConfig, got "
                        f"{type(caffe_net).__name__}")
    from google.protobuf import text_format  # protobuf is a dependency; only pycaffe's side needs it

    return load_net_text(text_format.MessageToString(caffe_net), "net.prototxt")


def _graph(caffe_net, rankdir: str, phase) -> Graph:
    cfg = net_config(caffe_net)
    if phase is None:
        return config_graph(cfg, str(rankdir).upper())
    name = phase_name(phase)
    try:
        return graph_of(compile_net(cfg, name, **NET_VIEW), rankdir=rankdir)
    except TrainnetError:  # drawing needs no data: draw the phase's layers without shapes
        return config_graph(cfg, str(rankdir).upper(), filter_layers(cfg.layer, NetState(phase=name)))


def get_graph_dot(caffe_net, rankdir: str = "LR", phase=None, label_edges: bool = True,
                  display_lrm: bool = False) -> str:
    """The net as Graphviz DOT text (in place of pycaffe's ``get_pydot_graph``, which returns a
    pydot.Dot: feed this text to ``pydot.graph_from_dot_data`` for one).  ``label_edges`` and
    ``display_lrm`` are accepted for pycaffe's signature; edges always carry their blob."""
    return to_dot(_graph(caffe_net, rankdir, phase))


def draw_net(caffe_net, rankdir: str, ext: str = "png", phase=None,
             display_lrm: bool = False) -> bytes:
    """The picture of the net as bytes in format ``ext`` (png, svg, pdf or dot)."""
    fmt = picture_format(f"net.{ext}", ext)
    payload, _note = render(_graph(caffe_net, rankdir, phase), fmt)
    return payload


def draw_net_to_file(caffe_net, filename, rankdir: str = "LR", phase=None,
                     display_lrm: bool = False) -> Optional[str]:
    """Draw the net into ``filename``, its format from its suffix (png, svg, pdf or dot); returns
    the note that trainnet's own renderer drew it when Graphviz is missing (None otherwise)."""
    fmt = picture_format(filename)
    return write_picture(_graph(caffe_net, rankdir, phase), Path(filename), fmt)
