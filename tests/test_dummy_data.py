"""DummyData: Caffe's shape and filler rules; random tops the same on the CPU and the GPU, pass
after pass, in CUDA graphs and across snapshots."""

from types import SimpleNamespace

import numpy as np
import pytest
from pydantic import ValidationError

from layer_check import make_io
from trainnet.errors import ConfigError
from trainnet.layers.base import layer_class
from trainnet.layers.fillers import fill
from trainnet.netcfg import load_net_text
from trainnet.netcfg.common import FillerParameter
from trainnet.plan import compile_net
from trainnet.runtime.device import CPU
from trainnet.runtime.net import Net


def with_tops(params, n_tops):
    cls = layer_class("DummyData")
    common = SimpleNamespace(top=[f"t{i}" for i in range(n_tops)])
    return cls("dummy", cls.Params.model_validate(params), "TRAIN", [], common=common)


@pytest.mark.parametrize("params,n_tops,shapes", [
    ({"shape": {"dim": [2, 3]}}, 1, [(2, 3)]),
    ({"shape": {"dim": [2, 3]}}, 2, [(2, 3), (2, 3)]),
    ({"shape": [{"dim": [2, 3]}, {"dim": [4]}]}, 2, [(2, 3), (4,)]),
    ({"num": 2, "channels": [3, 1], "height": 4, "width": 5}, 2, [(2, 3, 4, 5), (2, 1, 4, 5)]),
])
def test_shapes(params, n_tops, shapes):
    layer = with_tops(params, n_tops)
    assert layer.top_shapes == shapes
    assert layer.is_data and not layer.has_backward


@pytest.mark.parametrize("fillers,want", [
    ([], [[0, 0, 0], [0, 0, 0]]),                                  # none: zeros
    ({"value": 2}, [[2, 2, 2], [2, 2, 2]]),                         # one for all tops
    ([{"value": 1}, {"value": -1}], [[1, 1, 1], [-1, -1, -1]]),     # one per top
])
def test_fillers_none_one_or_one_per_top(fillers, want):
    layer = with_tops({"shape": {"dim": [3]}, "data_filler": fillers}, 2)
    io = make_io(layer, [])
    io.top[0][...] = 9  # filled again on every pass
    layer.forward(io, CPU)
    assert [list(t) for t in io.top] == want


def test_random_tops_are_drawn_from_the_layer_generator_every_pass():
    layer = with_tops({"shape": [{"dim": [2, 3]}, {"dim": [4]}],
                       "data_filler": [{"type": "uniform", "min": -1}, {"value": 5}]}, 2)
    io = make_io(layer, [])
    io.state = layer.make_state(np.random.default_rng(3))
    twin = np.random.default_rng(int(np.random.default_rng(3).integers(2**63)))
    for _ in range(3):
        layer.forward(io, CPU)
        want = np.empty((2, 3))  # make_io's tops are float64
        fill(want, FillerParameter(type="uniform", min=-1), twin)
        np.testing.assert_array_equal(io.top[0], want)
        assert list(io.top[1]) == [5] * 4


def test_errors():
    def error(params, n_tops=1):
        with pytest.raises(ConfigError) as info:
            with_tops(params, n_tops)
        return info.value.message

    assert error({"shape": [{"dim": [1]}] * 2}, 3) == \
        "shape: 2 shapes for 3 tops; give one, or one per top"
    assert error({"shape": {"dim": [1]}, "num": 2}) == \
        "give shape or the legacy num/channels/height/width, not both"
    assert error({"num": [1, 2], "channels": 1, "height": 1, "width": 1}, 3) == \
        "num: 2 values for 3 tops; give one, or one per top"
    assert error({"shape": {"dim": [1]}, "data_filler": [{}, {}]}, 3) == \
        "data_filler: 2 fillers for 3 tops; give none (zeros), one, or one per top"
    assert error({"shape": {"dim": [3, 3]}, "data_filler": {"type": "bilinear"}}) == \
        "data_filler for top 0: the bilinear filler needs a 4-D blob with square kernels, " \
        "got (3, 3)"
    with pytest.raises(ValidationError):
        with_tops({"shape": {"dim": [-1]}}, 1)


NET = """\
name: dummy
layer:
  - name: dummy
    type: DummyData
    top: [data, noise, label]
    shape: [{dim: [4, 6]}, {dim: [4, 6]}, {dim: [4]}]
    data_filler: [{type: gaussian, std: 0.5}, {type: uniform, min: -0.1, max: 0.1}, {value: 2}]
  - {name: mix, type: Concat, bottom: [data, noise], top: mix}
  - {name: ip, type: InnerProduct, bottom: mix, top: ip, num_output: 3,
     weight_filler: {type: xavier}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip, label], top: loss}
"""


def losses(device, passes, graph=False, state=None, seed=0):
    plan = compile_net(load_net_text(NET, "dummy.yaml"), "TRAIN", gpu=device.is_gpu)
    net = Net(plan, device, rng=np.random.default_rng(seed), graph=graph)
    if state is not None:
        net.states["dummy"].set_state(state)
    out = [net.forward() for _ in range(passes)]
    return net, out


def test_a_net_draws_new_data_each_pass_and_resumes_from_its_state():
    _, whole = losses(CPU, 3)
    assert len(set(whole)) == 3
    first, _ = losses(CPU, 1)
    state = first.states["dummy"].get_state()
    assert set(state) == {"rng"}
    _, resumed = losses(CPU, 2, state=state)
    assert resumed == whole[1:]


@pytest.mark.parametrize("graph", [False, True])
def test_the_gpu_draws_what_the_cpu_draws(gpu_device, graph):
    cpu_net, cpu = losses(CPU, 4)
    gpu_net, gpu = losses(gpu_device, 4, graph=graph)
    assert gpu_net.host_steps and gpu_net.host_steps[0][0].name == "dummy"
    assert gpu_net.use_graph == graph
    np.testing.assert_allclose(gpu, cpu, rtol=1e-5)
    # blobs still live after the pass (the plan reuses the memory of the others)
    np.testing.assert_array_equal(gpu_device.to_host(gpu_net.data("mix")), cpu_net.data("mix"))
    np.testing.assert_array_equal(gpu_device.to_host(gpu_net.data("label")), cpu_net.data("label"))
