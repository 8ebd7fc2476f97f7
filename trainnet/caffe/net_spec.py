"""pycaffe's net_spec: build a net in Python and get Caffe's NetParameter (``caffe_pb2``).

    n = NetSpec()
    n.data, n.label = layers.Data(batch_size=64, backend=params.Data.LMDB, source="db",
                                  transform_param=dict(scale=1. / 255), ntop=2)
    n.conv1 = layers.Convolution(n.data, kernel_size=5, num_output=20,
                                 weight_filler=dict(type="xavier"))
    print(n.to_proto())   # prototxt

As in pycaffe: a keyword argument goes to the layer's ``*_param`` message when it names a field
of it, else to LayerParameter (``name``, ``loss_weight``, ``param=[dict(lr_mult=1)]``,
``include=dict(phase=caffe_pb2.TRAIN)``, a whole ``convolution_param=dict(...)``); ``ntop`` sets
the number of tops (0: the layer itself is returned), ``in_place=True`` makes the tops the
bottoms; a top is named by the NetSpec attribute it is stored in, else ``<Type><count>``; a layer
takes its first top's name.  Where pycaffe guesses the message from the type's name, trainnet
asks the layer type (``caffe_params``), so SoftmaxWithLoss's ``axis`` goes to ``softmax_param``
and ``normalization`` to ``loss_param``; an unknown layer type or parameter name is a
ConfigError naming it when the layer is made, not a protobuf error later.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Any, Optional

from trainnet.caffe.proto import caffe_pb2
from trainnet.errors import ConfigError
from trainnet.netcfg.layer_types import layer_class, registered

LAYER_FIELDS = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name


def param_name_dict() -> dict[str, str]:
    """Layer type -> the prefix of its parameter message's field (``Convolution`` ->
    ``convolution``), the type's own message when it has several (SoftmaxWithLoss -> softmax)."""
    return {type_name: next(iter(cls.caffe_params))[:-len("_param")]
            for type_name, cls in registered().items() if cls.caffe_params}


def to_proto(*tops) -> Any:
    """The NetParameter of the layers needed to compute ``tops``, in dependency order."""
    layers: OrderedDict = OrderedDict()
    autonames: Counter = Counter()
    for top in tops:
        top.fn._to_proto(layers, {}, autonames)
    net = caffe_pb2.NetParameter()
    net.layer.extend(layers.values())
    return net


def assign_proto(proto, name: str, value) -> None:
    """Set ``proto.name`` from Python data: a dict fills a message, a list (or a single value of
    a repeated field) appends, a list of dicts adds one message per dict."""
    is_repeated = hasattr(getattr(proto, name), "extend")
    if is_repeated and not isinstance(value, (list, tuple)):
        value = [value]
    if isinstance(value, (list, tuple)):
        if value and isinstance(value[0], dict):
            for item in value:
                message = getattr(proto, name).add()
                for key, inner in item.items():
                    assign_proto(message, key, inner)
        else:
            getattr(proto, name).extend(value)
    elif isinstance(value, dict):
        for key, inner in value.items():
            assign_proto(getattr(proto, name), key, inner)
    else:
        setattr(proto, name, value)


def _route(type_name: str, key: str) -> Optional[str]:
    """The LayerParameter field that holds parameter ``key`` of a ``type_name`` layer: one of
    the type's messages, or None for LayerParameter itself; ConfigError if none has it."""
    cls = layer_class(type_name)
    if key.endswith("param") and key in LAYER_FIELDS:
        return None
    claimed = {f for keys in cls.caffe_params.values() if keys for f in keys}
    for message, keys in cls.caffe_params.items():
        fields = LAYER_FIELDS[message].message_type.fields_by_name
        if (keys is not None and key in keys) or (keys is None and key in fields
                                                  and key not in claimed):
            return message
    if key in LAYER_FIELDS:
        return None
    takes = [f"{message} ({', '.join(keys or LAYER_FIELDS[message].message_type.fields_by_name)})"
             for message, keys in cls.caffe_params.items()]
    raise ConfigError(f"unknown parameter {key!r}: a {type_name} layer takes "
                      + ("; ".join(takes) + " and " if takes else "")
                      + "LayerParameter's fields (" + ", ".join(LAYER_FIELDS) + ")",
                      layer_type=type_name, field=key)


class Top:
    """One output of a layer (a Function), used as another layer's input."""

    def __init__(self, fn: "Function", n: int):
        self.fn = fn
        self.n = n

    def to_proto(self):
        """The NetParameter of the layers this top needs."""
        return to_proto(self)

    def _to_proto(self, layers, names, autonames):
        return self.fn._to_proto(layers, names, autonames)


class Function:
    """A layer not yet written: its type, input tops and parameters."""

    def __init__(self, type_name: str, inputs, params: dict):
        try:
            layer_class(type_name)
        except KeyError as exc:
            raise ConfigError(exc.args[0], layer_type=type_name, field="type") from None
        for i, top in enumerate(inputs):
            if not isinstance(top, Top):
                raise ConfigError(f"input {i} is a {type(top).__name__}, not a top (a layer's "
                                  "output; a layer made with ntop=0 has none)",
                                  layer_type=type_name, field="bottom")
        self.type_name = type_name
        self.inputs = tuple(inputs)
        self.params = dict(params)
        self.ntop = self.params.pop("ntop", 1)
        self.in_place = self.params.pop("in_place", False)
        self.routes = {key: _route(type_name, key) for key in self.params}
        self.tops = tuple(Top(self, n) for n in range(self.ntop))
        if self.in_place and self.ntop != len(self.inputs):
            raise ConfigError(f"in_place needs as many tops as bottoms ({len(self.inputs)}), "
                              f"got ntop={self.ntop}", layer_type=type_name, field="in_place")

    def _get_name(self, names, autonames) -> str:
        if self not in names and self.ntop > 0:
            names[self] = self._get_top_name(self.tops[0], names, autonames)
        elif self not in names:
            autonames[self.type_name] += 1
            names[self] = self.type_name + str(autonames[self.type_name])
        return names[self]

    def _get_top_name(self, top: Top, names, autonames) -> str:
        if top not in names:
            autonames[top.fn.type_name] += 1
            names[top] = top.fn.type_name + str(autonames[top.fn.type_name])
        return names[top]

    def _to_proto(self, layers, names, autonames) -> None:
        if self in layers:
            return
        bottom_names = []
        for top in self.inputs:
            top._to_proto(layers, names, autonames)
            bottom_names.append(layers[top.fn].top[top.n])
        layer = caffe_pb2.LayerParameter(type=self.type_name, bottom=bottom_names)
        if self.in_place:
            layer.top.extend(layer.bottom)
        else:
            layer.top.extend(self._get_top_name(top, names, autonames) for top in self.tops)
        layer.name = self._get_name(names, autonames)
        for key, value in self.params.items():
            route = self.routes[key]
            try:
                assign_proto(layer if route is None else getattr(layer, route), key, value)
            except (TypeError, ValueError, AttributeError) as exc:
                raise ConfigError(f"{value!r} does not fit {route or 'LayerParameter'}.{key}: "
                                  f"{exc}", layer=layer.name, layer_type=self.type_name,
                                  field=key) from None
        layers[self] = layer


class NetSpec:
    """Named tops, in the order they are set; ``to_proto`` writes every layer they need, each
    top named by its attribute (``n.conv1 = ...``) or key (``n["conv1"] = ...``)."""

    def __init__(self):
        super().__setattr__("tops", OrderedDict())

    def __setattr__(self, name, value):
        self.tops[name] = value

    def __getattr__(self, name):
        try:
            return self.tops[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setitem__(self, key, value):
        self.__setattr__(key, value)

    def __getitem__(self, item):
        return self.__getattr__(item)

    def __delitem__(self, name):
        del self.tops[name]

    def keys(self):
        return list(self.tops.keys())

    def vals(self):
        return list(self.tops.values())

    def to_proto(self):
        names = {value: key for key, value in self.tops.items()}
        autonames: Counter = Counter()
        layers: OrderedDict = OrderedDict()
        for top in self.tops.values():
            top._to_proto(layers, names, autonames)
        net = caffe_pb2.NetParameter()
        net.layer.extend(layers.values())
        return net


class Layers:
    """``layers.Convolution(bottom, ..., num_output=20)``: a layer by its Caffe type string,
    giving its top, a tuple of tops (``ntop`` > 1) or, with ``ntop=0``, the layer itself."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)

        def layer_fn(*args, **kwargs):
            fn = Function(name, args, kwargs)
            if fn.ntop == 0:
                return fn
            return fn.tops[0] if fn.ntop == 1 else fn.tops
        return layer_fn


class Parameters:
    """``params.Pooling.MAX``: the enum values (and everything else) of ``<Name>Parameter``, or of
    the parameter message of layer type ``Name`` (``params.Deconvolution`` is
    ConvolutionParameter)."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        message = getattr(caffe_pb2, name + "Parameter", None)
        if message is None and name in registered() and layer_class(name).caffe_params:
            message = LAYER_FIELDS[next(iter(layer_class(name).caffe_params))].message_type
            message = getattr(caffe_pb2, message.name)
        if message is None:
            raise AttributeError(f"no Caffe message {name}Parameter and no layer type {name} "
                                 "with parameters")
        return message


layers = Layers()
params = Parameters()
