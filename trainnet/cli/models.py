"""Models: convert, classify and the zoo."""

from __future__ import annotations

from pathlib import Path

import click

from trainnet.cli.common import device_options, echo, main, user_errors
from trainnet.cli.threads import apply_threads, threads_option
from trainnet.errors import TrainnetError


def _preprocess(channel_order, raw_scale, mean_file, mean_value, input_scale, resize, labels,
                base=None):
    """The preprocessing the user states on the command line over ``base`` (what the model
    records), or ``base`` when they state none.  A mean given replaces the recorded mean of the
    other kind.  A bad value is one line naming its option (``preprocessing options:
    --raw-scale: must be > 0, got -1.0``)."""
    from pydantic import ValidationError

    from trainnet.netcfg.common import Preprocess
    from trainnet.netcfg.errors import first_message

    given = {k: v for k, v in dict(channel_order=channel_order, raw_scale=raw_scale,
                                   mean_file=mean_file, input_scale=input_scale,
                                   labels=labels).items() if v is not None}
    for key, text, kind in (("mean_value", mean_value, float), ("resize", resize, int)):
        if text:
            given[key] = [_number(key, v, kind) for v in text.split(",")]
    if not given:
        return base
    merged = base.model_dump(exclude_defaults=True) if base is not None else {}
    if "mean_value" in given or "mean_file" in given:
        merged.pop("mean_value", None), merged.pop("mean_file", None)
    try:
        return Preprocess.model_validate({**merged, **given})
    except ValidationError as exc:
        field, message = first_message(exc)
        option = "--" + field.replace("_", "-")
        raise TrainnetError(f"preprocessing options: {option}: {message}") from None


def _number(key: str, text: str, kind):
    try:
        return kind(text.strip())
    except ValueError:
        what, example = ("a number", "104,117,123") if kind is float else ("a whole number",
                                                                            "256,256")
        option = "--" + key.replace("_", "-")
        raise TrainnetError(f"preprocessing options: {option}: {text.strip()!r} is not {what} "
                            f"(give comma-separated values, as {example})") from None


def preprocess_options(fn):
    """How a model's inputs are prepared, shared by `convert` (which records it) and `classify`
    (which overrides the record with it)."""
    options = [
        click.option("--labels", help="Class names file, one per line (a leading WordNet id, as "
                     "in ilsvrc12/synset_words.txt, is dropped)."),
        click.option("--resize", metavar="H,W", help="Resize images to H,W before the centre crop."),
        click.option("--input-scale", type=float, help="Multiply the input by this after the mean."),
        click.option("--mean-value", metavar="V[,V...]", help="Mean per channel, in channel order."),
        click.option("--mean-file", help="A mean.binaryproto file."),
        click.option("--raw-scale", type=float, help="Pixel values span [0, RAW_SCALE] (255 for Caffe "
                     "ImageNet models)."),
        click.option("--channel-order", type=click.Choice(["BGR", "RGB", "GRAY"]),
                     help="Channel order the model expects (BGR for Caffe models)."),
    ]
    for option in options:
        fn = option(fn)
    return fn


@main.command(epilog="""\b
Example:
  trainnet convert lenet.prototxt lenet.yaml
  trainnet convert bvlc_reference_caffenet.caffemodel caffenet.safetensors --model zoo:caffenet
  trainnet convert lenet_iter_10000.caffemodel lenet.safetensors --model lenet.yaml \\
      --channel-order GRAY --raw-scale 255 --input-scale 0.00390625
  trainnet convert lenet.yaml --weights lenet.safetensors lenet.onnx
  trainnet convert resnet18.onnx resnet18.yaml resnet18.safetensors""")
@click.argument("src", type=click.Path(dir_okay=False))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.argument("weights_dst", required=False, type=click.Path(dir_okay=False))
@click.option("--model", help="The net (YAML, prototxt or zoo:NAME) the weights belong to: "
              "required to write a caffemodel; reading one, it checks and fixes blob shapes.")
@click.option("--weights", type=click.Path(dir_okay=False),
              help="Writing an ONNX model: the net's weights (safetensors or caffemodel); "
              "without them the net's fillers.")
@preprocess_options
@user_errors
def convert(src, dst, weights_dst, model, weights, channel_order, raw_scale, mean_file, mean_value,
            input_scale, resize, labels):
    """Convert SRC to DST, chosen by their suffixes: a net or solver between .prototxt and .yaml,
    weights from .caffemodel to .safetensors or back, a net (file or zoo:NAME) and its weights to
    .onnx, or an .onnx model to a net and its weights (SRC.onnx NET.yaml WEIGHTS.safetensors).
    The preprocessing options record how the model's inputs are prepared (a converted model never
    guesses it)."""
    from trainnet.zoo import convert as cv

    pre = _preprocess(channel_order, raw_scale, mean_file, mean_value, input_scale, resize, labels)
    src_path, dst_path = Path(src), Path(dst)
    onnx = ".onnx" in (src_path.suffix.lower(), dst_path.suffix.lower())
    if weights is not None and not dst_path.suffix.lower() == ".onnx":
        raise TrainnetError("--weights is for writing an ONNX model (NET --weights W model.onnx)")
    if weights_dst is not None and not src_path.suffix.lower() == ".onnx":
        raise TrainnetError(f"a third file ({weights_dst}) is only for importing an ONNX model: "
                            "trainnet convert model.onnx net.yaml weights.safetensors")
    if not src_path.is_file() and not (onnx and src.startswith("zoo:")):
        raise TrainnetError(f"{src}: no such file")
    if onnx:
        done = _convert_onnx(src, dst, weights_dst, weights, model, pre)
    elif {src_path.suffix.lower(), dst_path.suffix.lower()} & {".caffemodel", ".safetensors"}:
        done = cv.convert_weights(src_path, dst_path, model=model, preprocess=pre)
    else:
        done = cv.convert_config(src_path, dst_path, preprocess=pre)
    echo(f"Wrote {dst}{'' if weights_dst is None else ' and ' + weights_dst} ({done.kind})")
    for note in done.notes:
        echo(f"Note: {note}")


def _convert_onnx(src, dst, weights_dst, weights, model, pre):
    """`convert`'s ONNX cases: export (DST .onnx) or import (SRC .onnx, a net and weights out)."""
    if model is not None or pre is not None:
        raise TrainnetError("ONNX conversion takes no --model or preprocessing options: export "
                            "writes the record the net or its weights hold, import keeps the "
                            "model's own")
    if Path(dst).suffix.lower() == ".onnx":
        if Path(src).suffix.lower() == ".onnx":
            raise TrainnetError("convert an ONNX model to a net and weights: "
                                "trainnet convert model.onnx net.yaml weights.safetensors")
        from trainnet.zoo.onnx.export import export_onnx
        return export_onnx(src, Path(dst), weights=None if weights is None else Path(weights))
    if Path(dst).suffix.lower() not in (".yaml", ".yml") or weights_dst is None or \
            Path(weights_dst).suffix.lower() != ".safetensors":
        raise TrainnetError("import an ONNX model as a net and its weights: "
                            "trainnet convert model.onnx net.yaml weights.safetensors")
    from trainnet.zoo.onnx.importer import import_onnx
    return import_onnx(Path(src), Path(dst), Path(weights_dst))


@main.command(epilog="""\b
Example:
  trainnet classify --model zoo:caffenet --weights bvlc_reference_caffenet.caffemodel cat.jpg
  trainnet classify --model net.yaml --weights w.safetensors --channel-order RGB \\
      --mean-value 124,117,104 --top 3 *.png""")
@click.option("--model", required=True, help="A deploy net (YAML, prototxt or zoo:NAME), usually "
              "with a preprocess record.")
@click.option("--weights", required=True, type=click.Path(dir_okay=False),
              help="Weights (safetensors or caffemodel).")
@click.option("--top", default=5, show_default=True, type=click.IntRange(min=1))
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@preprocess_options
@device_options(graph=False)
@threads_option
@user_errors
def classify(model, weights, top, images, device, tf32, channel_order, raw_scale, mean_file,
             mean_value, input_scale, resize, labels, threads):
    """Print the TOP most probable classes of each of IMAGES.  They are prepared as the model's
    YAML `preprocess:` section (or else the weights' metadata) records; a preprocessing option
    given here replaces that field of the record."""
    from trainnet.netcfg import load_net
    from trainnet.runtime.device import get_device
    from trainnet.zoo.classify import classify as run
    from trainnet.zoo.classify import recorded_preprocess

    said = apply_threads(threads)
    if said:
        echo(said)
    cfg = load_net(model)
    pre = _preprocess(channel_order, raw_scale, mean_file, mean_value, input_scale, resize, labels,
                      base=recorded_preprocess(cfg, Path(weights)))
    results = run(cfg, Path(weights), [Path(i) for i in images], get_device(device, tf32=tf32),
                  top=top, preprocess=pre)
    for image, best in zip(images, results):
        echo(image)
        for prob, index, name in best:
            echo(f"  {prob:.4f}  {index:>5}  {name}")


@main.group(epilog="""\b
Example:
  trainnet zoo list
  trainnet zoo show resnet50 > resnet50.yaml   # a copy to edit
  trainnet plan zoo:resnet50""")
def zoo():
    """The model zoo: classic Caffe nets as editable YAML configs.  Give zoo:NAME wherever a
    net path goes (trainnet plan zoo:lenet, a solver's net: zoo:lenet)."""


@zoo.command("list", epilog="""\b
Example:
  trainnet zoo list""")
@user_errors
def zoo_list():
    """One line per zoo net: name, learned parameters, input shape, description."""
    from trainnet.zoo.registry import info, names

    for name in names():
        z = info(name)
        shape = "x".join(str(d) for d in z.input_shape)
        echo(f"{name:<17}{z.params:>13,}  {shape:<14}{z.description}")


@zoo.command("show", epilog="""\b
Example:
  trainnet zoo show caffenet > caffenet.yaml
  trainnet zoo show googlenet --plan""")
@click.argument("name")
@click.option("--plan", "as_plan", is_flag=True, help="Print the compiled plan instead of the YAML.")
@click.option("--phase", default="TEST", show_default=True, type=click.Choice(["TRAIN", "TEST"]),
              help="The phase to compile for (with --plan).")
@user_errors
def zoo_show(name, as_plan, phase):
    """Print zoo net NAME's YAML config (redirect it to a file to edit it), or its compiled plan."""
    from trainnet.zoo.registry import net_path

    path = net_path(name)
    if not as_plan:
        click.echo(path.read_text(), nl=False)
        return
    from trainnet.netcfg import load_net
    from trainnet.plan import compile_net, format_plan

    from trainnet.cli.plan import text_width

    echo(format_plan(compile_net(load_net(path), phase), text_width()))
