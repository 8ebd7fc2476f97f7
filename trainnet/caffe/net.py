"""pycaffe's Net over trainnet's compiled plan and runtime Net.

A Net made here keeps every blob in its own memory (the plan compiled without reuse, in-place
runs or folds beyond what the config says), so any blob may be read after a pass, or written
and the pass resumed from a layer (``forward(start=...)``).  ``keep=[...]`` instead compiles
the packed plan training uses and leaves only the named blobs (and the outputs) readable.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Sequence


from trainnet.caffe import mode
from trainnet.caffe.blob import Blob
from trainnet.caffe.net_files import NetFiles
from trainnet.caffe.net_passes import NetPasses
from trainnet.errors import TrainnetError
from trainnet.netcfg import NetConfig, load_net
from trainnet.netcfg.common import BlobShape
from trainnet.plan import compile_net
from trainnet.runtime.net import Net as RuntimeNet


class LayerView:
    """An entry of ``Net.layers``: the layer's ``type``, ``name`` and parameter ``blobs``."""

    def __init__(self, name: str, type_name: str, blobs: list[Blob]):
        self.name, self.type, self.blobs = name, type_name, blobs

    def __repr__(self) -> str:
        return f"<{self.type} layer {self.name!r}>"


class Net(NetFiles, NetPasses):
    """``Net(model, phase)``, ``Net(model, weights, phase)`` or keywords (``phase=``,
    ``weights=``, ``level=``, ``stages=``); ``model`` a prototxt or YAML file (or a NetConfig).
    ``keep``: compile for speed, keeping only these blobs (and the outputs) readable."""

    def __init__(self, model, *args, phase=None, weights: Optional[str] = None, level: int = 0,
                 stages: Optional[Sequence[str]] = None, keep: Optional[Sequence[str]] = None):
        if len(args) == 2:
            weights, phase = args
        elif len(args) == 1:
            phase = args[0]
        elif args:
            raise TypeError("Net(model, phase) or Net(model, weights, phase)")
        if phase is None:
            raise TypeError("Net needs a phase: caffe.TRAIN or caffe.TEST")
        self.cfg = model if isinstance(model, NetConfig) else load_net(str(model))
        self.phase = mode.phase_name(phase)
        self._level, self._stages, self._keep = level, list(stages or []), keep
        self._pending: dict[str, tuple[int, ...]] = {}
        self._blobs: OrderedDict[str, Blob] = OrderedDict()
        self._param_views: dict[tuple[str, int], Blob] = {}
        self._owner = None   # what runs this net's runtime when not this object (a Solver)
        self._build(mode.device(), params=None, rng=mode.rng())
        if weights is not None:
            self.copy_from(weights)

    @classmethod
    def _over(cls, runtime: RuntimeNet, cfg: NetConfig) -> "Net":
        """A pycaffe view of a runtime Net made elsewhere (a Solver's nets)."""
        net = cls.__new__(cls)
        net.cfg, net.phase, net._keep = cfg, runtime.plan.phase, None
        net._level, net._stages, net._pending = 0, [], {}
        net._blobs, net._param_views, net._owner = OrderedDict(), {}, "a Solver"
        net._attach(runtime)
        return net

    # --- planning ---------------------------------------------------------------------------
    def _build(self, device, params, rng) -> None:
        if self._owner is not None:
            raise TrainnetError(f"this net is run by {self._owner}: re-planning it (reshape, "
                                "share_with) would leave the solver running another copy")
        cfg = _with_input_shapes(self.cfg, self._pending)
        backward = self.phase == "TRAIN" or cfg.force_backward
        if self._keep is None:
            options = dict(reuse_memory=False, in_place=False, fuse=False)
        else:
            options = dict(keep=list(self._keep))
        plan = compile_net(cfg, self.phase, level=self._level, stages=self._stages,
                           backward=backward, gpu=device.is_gpu, **options)
        before = self.__dict__.get("_net")   # a re-plan keeps the Python layers' objects
        kept = {s.name: s.layer.user for s in before.plan.steps if s.type == "Python"} \
            if before is not None else {}
        for step in plan.steps:
            if step.name in kept and step.type == "Python":
                step.layer.adopt(kept[step.name])
        self._attach(RuntimeNet(plan, device, params=params, rng=rng))
        self.cfg, self._pending = cfg, {}

    def _attach(self, runtime: RuntimeNet) -> None:
        self._net = runtime
        plan = runtime.plan
        inputs = {t for s in plan.steps if s.layer.filled_by_user and s.type == "Input" for t in s.tops}
        shown = plan.blobs if self._keep is None else \
            [n for n in plan.blobs if n in {*self._keep, *plan.outputs, *inputs}]
        for name in shown:
            blob = self._blobs.get(name)
            data, diff = runtime.data(name), runtime.diff(name)
            if blob is None:
                hook = self._reshape_input if name in inputs else None
                self._blobs[name] = Blob(name, data, diff, hook)
            else:
                blob._bind(data, diff)
        for gone in [n for n in self._blobs if n not in shown]:
            del self._blobs[gone]
        self._inputs = [t for s in plan.steps if s.type == "Input" for t in s.tops]
        self._views = [LayerView(s.name, s.type, self._param_blobs(s, io))
                       for s, io in zip(plan.steps, runtime.ios)]
        # a Python layer is shown as the user's own object, as pycaffe shows it, its blobs
        # the net's parameters (on the host; on a GPU with host copies, from its first pass)
        self._layers = [getattr(s.layer, "user", None) if s.type == "Python" else view
                        for s, view in zip(plan.steps, self._views)]
        for s, io in zip(plan.steps, runtime.ios):
            if s.type == "Python" and not getattr(io.state, "host_copies", True):
                for blob, w, dw in zip(s.layer.user.blobs, io.params, io.param_diff):
                    blob.data, blob.diff = w, (dw if dw is not None else blob.diff)
        self._index = {}
        for s in plan.steps:
            for name in [s.name, *s.fused]:
                self._index[name] = s.index

    def _param_blobs(self, step, io) -> list[Blob]:
        out = []
        for j, (use, data) in enumerate(zip(step.params, io.params)):
            slot = self._net.plan.params[use.slot]
            store = self._net.params if slot.key in self._net.params.index else self._net.own_params
            diff = store.view(store.diff, store.lookup(slot)).reshape(data.shape)
            blob = self._param_views.get((step.name, j))
            if blob is None:
                blob = self._param_views[step.name, j] = Blob(f"{step.name}[{j}]", data, diff)
            else:   # re-planned or shared: the Blob a caller holds shows the new memory
                blob._bind(data, diff)
            out.append(blob)
        return out

    def _reshape_input(self, name: str, shape: tuple[int, ...]) -> None:
        self._pending[name] = shape

    def reshape(self) -> None:
        """Re-plan for the shapes given to input blobs' ``reshape``, keeping the parameters."""
        if self._pending:
            self._build(self._net.device, params=self._net.params, rng=self._net.rng)

    # --- what pycaffe shows -----------------------------------------------------------------
    @property
    def blobs(self) -> OrderedDict:
        return self._blobs

    @property
    def params(self) -> OrderedDict:
        return OrderedDict((l.name, l.blobs) for l in self._views if l.blobs)

    @property
    def layers(self) -> list[LayerView]:
        return self._layers

    @property
    def _layer_names(self) -> list[str]:
        return [l.name for l in self._views]

    @property
    def layer_dict(self) -> OrderedDict:
        return OrderedDict((v.name, l) for v, l in zip(self._views, self._layers))

    @property
    def inputs(self) -> list[str]:
        return list(self._inputs)

    @property
    def outputs(self) -> list[str]:
        return list(self._net.plan.outputs)

    @property
    def top_names(self) -> OrderedDict:
        return OrderedDict((s.name, list(s.tops)) for s in self._net.plan.steps)

    @property
    def bottom_names(self) -> OrderedDict:
        return OrderedDict((s.name, list(s.bottoms)) for s in self._net.plan.steps)

    def share_with(self, other: "Net") -> None:
        """Use ``other``'s parameters (by layer name) from now on, as Caffe's
        ShareTrainedLayersWith: a change to one is a change to both."""
        if other._net.device is not self._net.device:
            raise TrainnetError("share_with: the two nets are on different devices")
        self._build(self._net.device, params=other._net.params, rng=self._net.rng)


def _with_input_shapes(cfg: NetConfig, shapes: dict[str, tuple[int, ...]]) -> NetConfig:
    """``cfg`` with the Input layers' shapes of the blobs in ``shapes`` replaced."""
    if not shapes:
        return cfg
    layers = []
    for layer in cfg.layer:
        if layer.type == "Input" and any(t in shapes for t in layer.top):
            dims = list(layer.params.shape)  # one shape for every top, or one per top
            dims += [dims[-1]] * (len(layer.top) - len(dims)) if dims else []
            new = [BlobShape(dim=list(shapes[t])) if t in shapes else d
                   for t, d in zip(layer.top, dims)]
            layer = layer.model_copy(update={"params": layer.params.model_copy(update={"shape": new})})
        layers.append(layer)
    return cfg.model_copy(update={"layer": layers})
