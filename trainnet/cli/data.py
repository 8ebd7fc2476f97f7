"""Datasets: `trainnet data ...`, what Caffe's tools and example scripts do."""

from __future__ import annotations

import os
from pathlib import Path

import click

from trainnet.cli.common import echo, main, user_errors
from trainnet.cli.progress import Reporter

BACKEND_HELP = "Database kind (Caffe's -backend)."


def backend_option(default):
    return click.option("--backend", type=click.Choice(["lmdb", "leveldb"], case_sensitive=False),
                        default=default, show_default=bool(default),
                        help=BACKEND_HELP + ("" if default else " Default: detected."))


def dataset_options(fn):
    """--dest and --mirror, as every download command takes them."""
    fn = click.option("--mirror", default=None, help="Base URL to download from "
                      "(file:///folder/ for a local copy).")(fn)
    return click.option("--dest", type=click.Path(file_okay=False),
                        help="Data root (default: $TRAINNET_DATA, else ./data).")(fn)


def data_root(dest) -> Path:
    from trainnet.data.paths import DEFAULT_ROOT, ENV

    return Path(dest or os.environ.get(ENV) or DEFAULT_ROOT)


def say_where(dest, root: Path) -> None:
    from trainnet.data.paths import ENV

    if dest and not os.environ.get(ENV):
        echo(f"Set {ENV}={root.resolve()} so configs find it.")


def report_outputs(paths) -> None:
    for path in paths:
        echo(f"Wrote {path}")


def report_mean(mean) -> None:
    """compute_image_mean's closing lines."""
    from trainnet.data.mean import channel_means

    echo(f"Number of channels: {mean.shape[0]}")
    for c, value in enumerate(channel_means(mean)):
        echo(f"mean_value channel [{c}]: {value:g}")


@main.group(epilog="""\b
Example:
  trainnet data mnist
  trainnet data cifar10 --backend lmdb
  trainnet data imageset train.txt images/ out/train_lmdb --resize 256 256 --shuffle""")
def data():
    """Fetch datasets and convert them as Caffe's tools do."""


@data.command("mnist", epilog="""\b
Example:
  trainnet data mnist                      # IDX files under $TRAINNET_DATA/mnist
  trainnet data mnist --backend lmdb       # and Caffe's LMDBs of them""")
@dataset_options
@click.option("--lmdb", "out", type=click.Path(file_okay=False),
              help="Also write OUT/mnist_train_lmdb and OUT/mnist_test_lmdb (create_mnist.sh).")
@backend_option("lmdb")
@user_errors
def data_mnist(dest, mirror, out, backend):
    """Download MNIST into DEST/mnist and verify its checksums; with --lmdb, convert it."""
    from trainnet.data.convert import convert_mnist
    from trainnet.data.download import DEFAULT_MIRROR, download_mnist

    root, reporter = data_root(dest), Reporter(every=10000)
    paths = download_mnist(root / "mnist", mirror=mirror or DEFAULT_MIRROR, log=reporter.log,
                           progress=reporter)
    echo(f"MNIST is in {root / 'mnist'} ({len(paths)} files verified)")
    if out:
        report_outputs(convert_mnist(root / "mnist", Path(out), backend.upper(), reporter))
    say_where(dest, root)


@data.command("cifar10", epilog="""\b
Example:
  trainnet data cifar10                    # the binary batches and Caffe's mean
  trainnet data cifar10 --backend lmdb""")
@dataset_options
@click.option("--lmdb", "out", type=click.Path(file_okay=False),
              help="Also write OUT/cifar10_train_lmdb, OUT/cifar10_test_lmdb and "
              "OUT/mean.binaryproto (create_cifar10.sh).")
@click.option("--images", type=click.Path(file_okay=False),
              help="Also write IMAGES/{train,test}/<class>/<index>.png, IMAGES/train.txt, "
              "IMAGES/test.txt ('path label' lists for ImageData) and IMAGES/labels.txt.")
@backend_option("lmdb")
@user_errors
def data_cifar10(dest, mirror, out, images, backend):
    """Download CIFAR-10 (binary version) into DEST/cifar10 and verify its checksums; with
    --lmdb or --images, convert it."""
    from trainnet.data.cifar_download import DEFAULT_MIRROR, download_cifar10
    from trainnet.data.cifar_images import export_cifar10_images
    from trainnet.data.convert import convert_cifar10, write_cifar10_mean
    from trainnet.formats.blobproto import load_mean

    root, reporter = data_root(dest), Reporter(every=10000)
    folder = download_cifar10(root / "cifar10", mirror=mirror or DEFAULT_MIRROR,
                              log=reporter.log, progress=reporter)
    echo(f"CIFAR-10 is in {folder} (7 files verified)")
    mean_file = write_cifar10_mean(folder)
    if mean_file:
        echo(f"Wrote {mean_file} (the training images' mean, as create_cifar10.sh computes it)")
    if out:
        outputs = convert_cifar10(folder, Path(out), backend.upper(), reporter)
        report_outputs(outputs)
        report_mean(load_mean(outputs[-1]))
    if images:
        counts = export_cifar10_images(folder, Path(images), reporter)
        echo(f"Wrote {counts['train']} train and {counts['test']} test images with their lists "
             f"to {images}")
    say_where(dest, root)


@data.command("imageset", epilog="""\b
Example:
  trainnet data imageset train.txt images/ train_lmdb --resize 256 256 --shuffle""")
@click.argument("list_file", metavar="LIST", type=click.Path(dir_okay=False))
@click.argument("root", type=click.Path(file_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--resize", nargs=2, type=click.IntRange(min=1), metavar="H W",
              help="Resize every image to H x W (Pillow's bilinear filter smooths as it "
              "shrinks, where Caffe's OpenCV INTER_LINEAR samples: pixels differ, most when "
              "shrinking a lot).")
@click.option("--shuffle", is_flag=True, help="Shuffle the list before writing.")
@click.option("--seed", type=int, help="Seed of --shuffle (default: a random one).")
@click.option("--gray", is_flag=True, help="Store grey images (one channel).")
@click.option("--encoded", is_flag=True, help="Store image files, not pixels.")
@click.option("--encode-type", type=click.Choice(["jpg", "png"], case_sensitive=False),
              help="Store encoded images in this format (implies --encoded): a file already "
              "in it is stored as is unless --resize or --gray change its pixels, any other is "
              "re-encoded. Default: each file's own format.")
@click.option("--check-size", is_flag=True, help="Require every image to have the same size.")
@click.option("--skip-bad", is_flag=True, help="Skip missing or unreadable images (Caffe logs "
              "and skips them) instead of stopping.")
@backend_option("lmdb")
@user_errors
def data_imageset(list_file, root, out, resize, shuffle, seed, gray, encoded, encode_type,
                  check_size, skip_bad, backend):
    """Convert the images of LIST ('path label' per line, read from ROOT/path) into the
    database OUT (Caffe's convert_imageset)."""
    from trainnet.data.imageset import ImagesetOptions, convert_imageset

    options = ImagesetOptions(resize=tuple(resize) if resize else None, gray=gray,
                              encoded=encoded, encode_type=encode_type and encode_type.lower(),
                              check_size=check_size, skip_bad=skip_bad)
    reporter = Reporter(every=1000)
    result = convert_imageset(Path(list_file), Path(root), Path(out), backend.upper(), options,
                              shuffle=shuffle, seed=seed, log=reporter.log, progress=reporter)
    skipped = f"; skipped {len(result.skipped)} bad images" if result.skipped else ""
    echo(f"Wrote {result.written} records to {out}{skipped}")


@data.command("mean", epilog="""\b
Example:
  trainnet data mean train_lmdb mean.binaryproto""")
@click.argument("source", type=click.Path(file_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@backend_option(None)
@user_errors
def data_mean(source, out, backend):
    """Write the mean image of the database SOURCE to OUT (.binaryproto), as Caffe's
    compute_image_mean."""
    from trainnet.data.mean import compute_image_mean
    from trainnet.data.output import refuse_existing
    from trainnet.formats.blobproto import save_blob

    refuse_existing([Path(out)])
    mean = compute_image_mean(Path(source), backend, Reporter(every=10000))
    save_blob(out, mean, legacy=True)
    echo(f"Wrote {out}")
    report_mean(mean)
