"""The model zoo: every packaged net loads and compiles, its shapes and learned parameter count are
the recorded (published) ones, and zoo:NAME works wherever a net path does."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from conftest import data_root
from trainnet.cli import main
from trainnet.errors import ConfigError
from trainnet.netcfg import dump_net, load_net, load_net_text, load_solver_text
from trainnet.netcfg.to_prototxt import dump_net_prototxt
from trainnet.plan import compile_net
from trainnet.runtime.net import Net
from trainnet.zoo.registry import NETS, info, names, net_path

ALL = ["lenet", "cifar10_quick", "cifar10_full", "caffenet", "alexnet", "vgg16", "googlenet",
       "resnet50", "squeezenet_v1_0", "squeezenet_v1_1", "mobilenet_v1"]


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def learned_params(cfg, plan) -> int:
    """Elements of the net's parameter blobs, less BatchNorm's running mean, variance and scale
    factor: Caffe updates those by averaging, never by gradient (lr_mult fixed at 0), and the
    published counts (torchvision's num_params, Keras's trainable params) leave them out."""
    types = {layer.name: layer.type for layer in cfg.layer}
    return sum(slot.count for slot in plan.params if types[slot.key[0]] != "BatchNorm")


def shared_caffe_file(name: str):
    """A file of the shared data as a zoo net names it (caffe/ilsvrc12/..., cifar10/...);
    skips when the data is absent."""
    root = data_root()
    for place in ([root / "caffe" / name, root / name] if root else []):
        if place.is_file():
            return place
    pytest.skip(f"{name} not found under TRAINNET_DATA (or ../shared/data)")


def test_index_and_packaged_files_list_the_same_nets():
    assert names() == ALL
    assert sorted(p.stem for p in NETS.glob("*.yaml")) == sorted(ALL)
    assert all(net_path(name).is_file() for name in names())


@pytest.mark.parametrize("name", ALL)
def test_zoo_net_compiles_to_its_recorded_shapes_and_parameter_count(name):
    z = info(name)
    cfg = load_net(f"zoo:{name}")
    plan = compile_net(cfg, "TEST", backward=False)
    assert cfg.layer[0].type == "Input" and plan.blob("data").shape == z.input_shape
    assert {out: plan.blob(out).shape for out in plan.outputs} == z.outputs
    for blob, shape in z.shapes.items():
        assert plan.blob(blob).shape == shape, blob
    assert learned_params(cfg, plan) == z.params
    assert cfg.preprocess == z.preprocess


@pytest.mark.parametrize("name", ALL)
def test_zoo_net_keeps_caffes_conventions(name):
    """Unique layer names (weights load by name), a Softmax 'prob' on top, a preprocess record."""
    cfg = load_net(net_path(name))
    layer_names = [layer.name for layer in cfg.layer]
    assert len(set(layer_names)) == len(layer_names)
    assert (cfg.layer[-1].name, cfg.layer[-1].type) == ("prob", "Softmax")
    p = info(name).preprocess
    assert p.raw_scale == 255.0 and p.input_scale > 0
    assert p.channel_order == ("GRAY" if name == "lenet" else "RGB" if name.startswith("cifar")
                               else "BGR")
    assert bool(p.mean_value) + bool(p.mean_file) == (0 if name == "lenet" else 1)


@pytest.mark.parametrize("name", ALL)
def test_zoo_net_layers_round_trip_through_caffe_prototxt(name):
    cfg = load_net(net_path(name))
    again = load_net_text(dump_net_prototxt(cfg), f"{name}.prototxt")
    assert dump_net(again)["layer"] == dump_net(cfg)["layer"]


def test_zoo_lenet_is_caffes_lenet_prototxt_at_batch_1():
    caffe = load_net(shared_caffe_file("lenet/lenet.prototxt"))
    ours = load_net("zoo:lenet")
    assert caffe.layer[0].params.shape[0].dim == [64, 1, 28, 28]
    assert dump_net(caffe)["layer"][1:] == dump_net(ours)["layer"][1:]


@pytest.mark.parametrize("name", ["lenet", "cifar10_quick", "cifar10_full", "squeezenet_v1_1"])
def test_small_zoo_nets_run_forward_to_probabilities(name):
    plan = compile_net(load_net(f"zoo:{name}"), "TEST")
    net = Net(plan, rng=np.random.default_rng(0))
    net.data("data")[...] = np.random.default_rng(1).uniform(0, 1, size=plan.blob("data").shape)
    net.forward()
    prob = np.asarray(net.data("prob")).reshape(plan.blob("prob").shape[:2])
    assert np.all(np.isfinite(prob)) and np.allclose(prob.sum(axis=1), 1.0, atol=1e-5)


def test_info_records_the_published_figures():
    z = info("resnet50")
    assert z.params == 25_557_032 + 64  # torchvision's figure plus the Caffe original's conv1 bias
    assert "github.com/KaimingHe" in z.prototxt and "25,557,032" in z.params_source
    assert info("lenet").preprocess.input_scale == 0.00390625
    assert info("mobilenet_v1").preprocess.input_scale == 0.017
    assert info("caffenet").preprocess.mean_file == "caffe/ilsvrc12/imagenet_mean.binaryproto"


@pytest.mark.parametrize("name", ["cifar10_quick", "caffenet", "alexnet"])
def test_recorded_channel_order_agrees_with_the_published_mean(name):
    """CIFAR-10's mean image starts with red (mean 125.3 > blue 113.9): Caffe stores its planes as
    the dataset does; ImageNet's starts with blue (104.0 < red 122.7): Caffe's BGR."""
    from trainnet.formats.blobproto import load_mean

    pre = info(name).preprocess
    first, _, last = load_mean(shared_caffe_file(pre.mean_file)).reshape(3, -1).mean(axis=1)
    assert (first > last) == (pre.channel_order == "RGB")
    assert len(shared_caffe_file(pre.labels).read_text().split("\n")) >= 10


def test_unknown_zoo_name_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"unknown zoo net 'lenett' \(did you mean 'lenet'\?\); "
                                          r"known: alexnet, caffenet, .*vgg16"):
        net_path("lenett")
    with pytest.raises(ConfigError, match="unknown zoo net 'nope'"):
        load_net("zoo:nope")


def test_solver_net_may_name_a_zoo_net():
    cfg = load_solver_text("net: zoo:lenet\nbase_lr: 0.01\nmax_iter: 1\n", "solver.yaml")
    assert load_net(cfg.net_path).name == "LeNet"


def test_cli_plan_accepts_a_zoo_net():
    code, out = run("plan", "zoo:lenet")
    assert code == 0, out
    assert "431,080" in out and "prob 1x10" in out


def test_cli_zoo_list_has_one_line_per_net():
    code, out = run("zoo", "list")
    assert code == 0, out
    lines = out.strip().splitlines()
    assert [line.split()[0] for line in lines] == ALL
    assert lines[0].split()[1:3] == ["431,080", "1x1x28x28"]
    assert "138,357,544" in lines[ALL.index("vgg16")]


def test_cli_zoo_show_prints_the_editable_yaml():
    code, out = run("zoo", "show", "lenet")
    assert code == 0, out
    assert out == net_path("lenet").read_text()
    edited = yaml.safe_load(out)
    edited["layer"][0]["shape"]["dim"][0] = 8
    cfg = load_net_text(yaml.safe_dump(edited), "mine.yaml")
    assert compile_net(cfg, "TEST").blob("prob").shape == (8, 10)


def test_cli_zoo_show_plan():
    code, out = run("zoo", "show", "cifar10_quick", "--plan")
    assert code == 0, out
    assert "phase TEST" in out and "145,578" in out


@pytest.mark.parametrize("args", [["zoo", "show", "lenett"], ["plan", "zoo:lenett"]])
def test_cli_unknown_zoo_name_is_one_line(args):
    code, out = run(*args)
    assert code == 1
    assert out.startswith("error: unknown zoo net 'lenett' (did you mean 'lenet'?)")
    assert len(out.strip().splitlines()) == 1 and "Traceback" not in out
