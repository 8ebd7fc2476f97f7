"""What trainnet writes for Caffe: every field Caffe needs, and nothing that reads back otherwise.

Each shipped net and solver, every layer type of tests/every_type and a default solver is written
as prototxt; the text must read back to the same validated model, hold every field Caffe cannot
run without (``LAYER_NEEDS``, ``solver_needs``) and every field where Caffe would assume another
value than the one trainnet holds (``CAFFE_DEFAULTS``).
"""

from pathlib import Path

import pytest

from test_netcfg import EVERY_TYPE, without_location
from trainnet.layers import known_types
from trainnet.layers.base import layer_class
from trainnet.netcfg import NetConfig, SolverConfig, load_net, load_net_text, load_solver, load_solver_text
from trainnet.netcfg.caffe_defaults import CAFFE_DEFAULTS, REQUIRED, caffe_needs, must_write
from trainnet.netcfg.text_format import Field, parse_text
from trainnet.netcfg.to_prototxt import MESSAGES, dump_net_prototxt, dump_solver_prototxt

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "configs").rglob("*.yaml")) + sorted((ROOT / "trainnet" / "zoo" / "nets").glob("*.yaml"))
SHIPPED_NETS = [p for p in SHIPPED if "solver" not in p.name]
SHIPPED_SOLVERS = [p for p in SHIPPED if "solver" in p.name]

_CONV = [("convolution_param", [("num_output",)]),
         ("convolution_param", [("kernel_size",), ("kernel_h", "kernel_w")])]
# What Caffe cannot run without: fields caffe.proto gives no default that a layer CHECKs or reads.
# type -> [(message, alternatives)]: the message holds every field of at least one alternative.
LAYER_NEEDS = {
    # ConvolutionParameter num_output (no default): BaseConvolutionLayer CHECK_GT(num_output_, 0);
    # "Either kernel_size or kernel_h and kernel_w required"
    "Convolution": _CONV,
    "Deconvolution": _CONV,
    # PoolingLayer: kernel_size, or kernel_h and kernel_w, unless global_pooling
    "Pooling": [("pooling_param", [("kernel_size",), ("kernel_h", "kernel_w"), ("global_pooling",)])],
    # InnerProductParameter num_output (no default): the weight's first axis
    "InnerProduct": [("inner_product_param", [("num_output",)])],
    # EmbedParameter num_output, input_dim (no defaults): CHECK_GT(K_, 0) "input_dim must be positive"
    "Embed": [("embed_param", [("num_output",)]), ("embed_param", [("input_dim",)])],
    # DataParameter source, batch_size (no defaults): the database to open; the batch's first axis
    "Data": [("data_param", [("source",)]), ("data_param", [("batch_size",)])],
    # ImageDataParameter source (no default): the list file it reads
    "ImageData": [("image_data_param", [("source",)])],
    # HDF5DataParameter source, batch_size (no defaults): the list of HDF5 files; the batch's axis
    "HDF5Data": [("hdf5_data_param", [("source",)]), ("hdf5_data_param", [("batch_size",)])],
    # HDF5OutputParameter file_name (no default): the file HDF5OutputLayer creates
    "HDF5Output": [("hdf5_output_param", [("file_name",)])],
    # MemoryDataLayer: "batch_size, channels, height, and width must be specified and positive"
    "MemoryData": [("memory_data_param", [("batch_size", "channels", "height", "width")])],
    # TileLayer: CHECK(tile_param.has_tiles()) "Number of tiles must be specified"
    "Tile": [("tile_param", [("tiles",)])],
    # ClipParameter: required float min = 1; required float max = 2;
    "Clip": [("clip_param", [("min",)]), ("clip_param", [("max",)])],
    # DummyDataLayer: a shape per top, or num, channels, height and width
    "DummyData": [("dummy_data_param", [("shape",), ("num", "channels", "height", "width")])],
    # InfogainLossLayer: the matrix from infogain_loss_param.source unless a third bottom holds it
    "InfogainLoss": [("infogain_loss_param", [("source",)])],
}
# SGDSolver::GetLearningRate reads these for each policy (caffe.proto: no defaults).
POLICY_NEEDS = {"fixed": (), "step": ("stepsize", "gamma"), "exp": ("gamma",), "inv": ("gamma", "power"),
                "multistep": ("stepvalue", "gamma"), "poly": ("power", "max_iter"),
                "sigmoid": ("gamma", "stepsize")}


def keys(fields: list[Field]) -> dict[str, list[Field]]:
    out: dict[str, list[Field]] = {}
    for f in fields:
        out.setdefault(f.key, []).append(f)
    return out


def message(layer: dict, name: str) -> dict:
    return keys(layer[name][0].value) if name in layer else {}


def check_layer_written(cfg, written: dict) -> None:
    """``written``: the fields of the layer's prototxt, by key."""
    needs = LAYER_NEEDS.get(cfg.type, [])
    if cfg.type == "InfogainLoss" and len(cfg.bottom) >= 3:
        needs = []
    for msg, alternatives in needs:
        given = message(written, msg)
        assert any(all(k in given for k in alt) for alt in alternatives), \
            f"{cfg.name} ({cfg.type}): Caffe needs {msg} to give one of {alternatives}"
    for msg in layer_class(cfg.type).caffe_params:
        for field, caffe_default in caffe_needs(msg).items():
            if must_write(getattr(cfg.params, field), caffe_default):
                assert field in message(written, msg), f"{cfg.name}: {msg}.{field} not written"


def check_net_text(cfg: NetConfig, text: str, file: str = "w.prototxt") -> None:
    """``text`` reads back as ``cfg`` (less ``preprocess``, which Caffe has no field for) and says
    what Caffe needs."""
    again = load_net_text(text, file)
    assert without_location(again) == without_location(cfg.model_copy(update={"preprocess": None}))
    layers = [keys(f.value) for f in parse_text(text, file) if f.key == "layer"]
    assert len(layers) == len(cfg.layer)
    for layer, written in zip(cfg.layer, layers):
        assert written["type"][0].value == layer.type
        check_layer_written(layer, written)


def check_solver_text(cfg: SolverConfig, text: str) -> None:
    again = load_solver_text(text, "s.prototxt")
    assert again.model_copy(update={"file": None}) == cfg.model_copy(update={"file": None})
    written = keys(parse_text(text, "s.prototxt"))
    assert any(k in written for k in ("net", "net_param", "train_net", "train_net_param"))
    needs = ("base_lr", "lr_policy") + POLICY_NEEDS[cfg.lr_policy]
    assert all(k in written for k in needs), f"{needs} not all in\n{text}"
    if cfg.test_interval:
        assert "test_iter" in written  # Caffe: "test_iter must be specified for each test network"
    for field, caffe_default in caffe_needs("SolverParameter").items():
        if must_write(getattr(cfg, field), caffe_default):
            assert field in written, field


# --- the table --------------------------------------------------------------------------------

def test_every_entry_of_the_caffe_defaults_table_names_a_field_the_writer_writes():
    owners = {}  # layer message -> the Params fields it holds, over every type that writes it
    for type_name in known_types():
        cls = layer_class(type_name)
        claimed = {f for fields in cls.caffe_params.values() if fields for f in fields}
        for msg, fields in cls.caffe_params.items():
            held = fields if fields is not None else [k for k in cls.Params.model_fields if k not in claimed]
            owners.setdefault(msg, set()).update(held)
    models = {name: set(model.model_fields) for model, name in MESSAGES.items()}
    for key, entries in CAFFE_DEFAULTS.items():
        fields = models.get(key, owners.get(key))
        assert fields is not None, f"{key}: neither a shared message nor a layer type's message"
        assert set(entries) <= fields, f"{key}: {set(entries) - fields} are not its fields"


def test_a_default_solver_writes_what_caffe_has_no_default_for():
    cfg = SolverConfig(net="n.prototxt")
    text = dump_solver_prototxt(cfg)
    lines = text.splitlines()
    # Caffe has no default for base_lr and lr_policy, and runs on the GPU unless told otherwise
    assert {"base_lr: 0.01", 'lr_policy: "fixed"', "solver_mode: CPU"} <= set(lines)
    assert "type" not in keys(parse_text(text, "s"))  # "SGD" is Caffe's default too
    check_solver_text(cfg, text)
    gpu = cfg.model_copy(update={"solver_mode": "GPU"})
    assert "solver_mode: GPU" in dump_solver_prototxt(gpu).splitlines()


def test_required_entry_is_written_at_any_value():
    assert repr(REQUIRED) == "REQUIRED"
    assert must_write(0.0, REQUIRED) and must_write("fixed", REQUIRED)
    assert not must_write(None, REQUIRED) and not must_write([], "x")
    assert must_write("CPU", "GPU") and not must_write("GPU", "GPU")


def test_a_layer_message_entry_is_written_at_trainnets_default(monkeypatch):
    """How a layer type's Params model declares a field Caffe defaults otherwise: an entry under
    its message.  Here, as if Caffe's pool default were AVE and FillerParameter's std 0.5."""
    text = ("layer:\n  - {name: p, type: Pooling, kernel_size: 2}\n"
            "  - {name: ip, type: InnerProduct, num_output: 2, weight_filler: {type: gaussian}}\n")
    cfg = load_net_text(text, "p.yaml")
    assert "pool:" not in dump_net_prototxt(cfg) and "std" not in dump_net_prototxt(cfg)
    monkeypatch.setitem(CAFFE_DEFAULTS, "pooling_param", {"pool": "AVE"})
    monkeypatch.setitem(CAFFE_DEFAULTS, "FillerParameter", {"std": 0.5})
    out = dump_net_prototxt(cfg)
    assert "  pooling_param {\n    pool: MAX\n    kernel_size: 2\n  }" in out
    # a filler left at its default is written only for the field Caffe reads otherwise
    assert ('    weight_filler {\n      type: "gaussian"\n      std: 1\n    }\n'
            '    bias_filler {\n      std: 1\n    }') in out
    check_net_text(cfg, out)


# --- every layer type, every shipped config -----------------------------------------------------

def test_every_layer_type_writes_what_caffe_needs():
    cfg = load_net_text(EVERY_TYPE, "every.yaml")
    assert {l.type for l in cfg.layer} >= set(LAYER_NEEDS)
    check_net_text(cfg, dump_net_prototxt(cfg))


@pytest.mark.parametrize("path", SHIPPED_NETS, ids=lambda p: p.name)
def test_shipped_net_writes_what_caffe_needs(path):
    cfg = load_net(path)
    check_net_text(cfg, dump_net_prototxt(cfg), path.stem + ".prototxt")


@pytest.mark.parametrize("path", SHIPPED_SOLVERS, ids=lambda p: p.name)
def test_shipped_solver_writes_what_caffe_needs(path):
    cfg = load_solver(path)
    check_solver_text(cfg, dump_solver_prototxt(cfg))


def test_missing_requirement_is_caught():
    """The checker itself: a convolution without its kernel, a solver without lr_policy."""
    cfg = load_net_text("layer:\n  - {name: c, type: Convolution, num_output: 2}\n", "c.yaml")
    with pytest.raises(AssertionError, match="kernel_size"):
        check_net_text(cfg, dump_net_prototxt(cfg))
    solver = SolverConfig(net="n.prototxt")
    text = "\n".join(l for l in dump_solver_prototxt(solver).splitlines() if "lr_policy" not in l)
    with pytest.raises(AssertionError, match="lr_policy"):
        check_solver_text(solver, text)
