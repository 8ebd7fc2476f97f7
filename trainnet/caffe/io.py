"""pycaffe's ``caffe.io``: the Transformer that turns images into a net's input blobs, image
loading and resizing, and array <-> BlobProto / Datum conversion, with pycaffe's names,
signatures and semantics (``from trainnet import caffe``; ``caffe.io.load_image(...)``).

The image helpers live in ``io_image``.  Messages are read by field access only, so any class
with Caffe's fields works (trainnet's ``formats.caffe_pb`` or a ``caffe_pb2``); new messages are
``trainnet.caffe.proto.caffe_pb2`` ones, so they go into that module's NetParameter and the rest.
"""

from __future__ import annotations

import numpy as np

from trainnet.caffe.io_image import load_image, oversample, resize_image
from trainnet.data.datum import RecordError, datum_array, encode_datum
from trainnet.caffe.proto import caffe_pb2
from trainnet.formats.blobproto import blob_proto, blob_shape, varint

__all__ = ["Transformer", "load_image", "resize_image", "oversample", "blobproto_to_array",
           "array_to_blobproto", "arraylist_to_blobprotovector_str",
           "arraylist_to_blobprotovecor_str", "blobprotovector_str_to_arraylist",
           "array_to_datum", "datum_to_array"]


class Transformer:
    """Prepares H x W x K images for a net's inputs and turns blobs back into images.

    ``inputs`` maps each input blob's name to its shape (N, C, H, W), e.g.
    ``{'data': net.blobs['data'].data.shape}``.  Per input, ``preprocess`` applies in this
    order: as float32, resize to the blob's H x W, transpose, channel swap, raw scale, subtract
    the mean, input scale; ``deprocess`` undoes them in reverse.
    """

    def __init__(self, inputs):
        self.inputs = inputs
        self.transpose = {}
        self.channel_swap = {}
        self.raw_scale = {}
        self.mean = {}
        self.input_scale = {}

    def _check_input(self, in_):
        if in_ not in self.inputs:
            raise ValueError(f"{in_} is not one of the net inputs: {self.inputs}")

    def _shape(self, in_) -> tuple:
        return tuple(int(d) for d in self.inputs[in_])

    def preprocess(self, in_, data) -> np.ndarray:
        """``data`` (H' x W' x K) as the K x H x W float32 array input ``in_`` takes.  The
        caller's array is never changed."""
        self._check_input(in_)
        caffe_in = np.array(data, dtype=np.float32)
        in_dims = self._shape(in_)[2:]
        if caffe_in.shape[:2] != in_dims:
            caffe_in = resize_image(caffe_in, in_dims)
        if self.transpose.get(in_) is not None:
            caffe_in = caffe_in.transpose(self.transpose[in_])
        if self.channel_swap.get(in_) is not None:
            caffe_in = caffe_in[list(self.channel_swap[in_]), :, :]
        if self.raw_scale.get(in_) is not None:
            caffe_in *= self.raw_scale[in_]
        if self.mean.get(in_) is not None:
            caffe_in -= self.mean[in_]
        if self.input_scale.get(in_) is not None:
            caffe_in *= self.input_scale[in_]
        return caffe_in

    def deprocess(self, in_, data) -> np.ndarray:
        """Undo ``preprocess`` on a blob (or one item of it; singleton axes are squeezed)."""
        self._check_input(in_)
        data = np.asarray(data)
        decaf_in = np.array(data, dtype=np.result_type(data.dtype, np.float32)).squeeze()
        if self.input_scale.get(in_) is not None:
            decaf_in /= self.input_scale[in_]
        if self.mean.get(in_) is not None:
            decaf_in += self.mean[in_]
        if self.raw_scale.get(in_) is not None:
            decaf_in /= self.raw_scale[in_]
        if self.channel_swap.get(in_) is not None:
            decaf_in = decaf_in[np.argsort(self.channel_swap[in_]), :, :]
        if self.transpose.get(in_) is not None:
            decaf_in = decaf_in.transpose(np.argsort(self.transpose[in_]))
        return decaf_in

    def set_transpose(self, in_, order):
        """The axis order taking an image (H x W x K) to the blob's (K x H x W): (2, 0, 1)."""
        self._check_input(in_)
        if len(order) != len(self.inputs[in_]) - 1:
            raise ValueError("Transpose order needs to have the same number of dimensions as "
                             f"the input: {len(order)} axes given, the input has "
                             f"{len(self.inputs[in_]) - 1} per item")
        self.transpose[in_] = order

    def set_channel_swap(self, in_, order):
        """The order to take the channels in after the transpose: (2, 1, 0) for RGB to BGR."""
        self._check_input(in_)
        if len(order) != self.inputs[in_][1]:
            raise ValueError("Channel swap needs to have the same number of dimensions as the "
                             f"input channels: {len(order)} given, the input has "
                             f"{self.inputs[in_][1]}")
        self.channel_swap[in_] = order

    def set_raw_scale(self, in_, scale):
        """The factor applied before the mean: 255 for models trained on [0, 255] pixels while
        ``load_image`` gives [0, 1]."""
        self._check_input(in_)
        self.raw_scale[in_] = scale

    def set_mean(self, in_, mean):
        """The mean subtracted: one value per channel (C,), or a mean image (C, H, W) or (H, W)
        for one channel, of the input's shape.  Any other shape is a ValueError, as pycaffe's:
        a 256 x 256 ImageNet mean for a 227 x 227 input is taken per channel
        (``mean.mean(1).mean(1)``) or cropped, a choice left to the caller."""
        self._check_input(in_)
        mean = np.asarray(mean)
        shape = self._shape(in_)[1:]
        if mean.ndim == 1:
            if mean.shape[0] != shape[0]:
                raise ValueError(f"Mean channels incompatible with input: the mean has "
                                 f"{mean.shape[0]}, the input {shape[0]}")
            mean = mean[:, np.newaxis, np.newaxis]
        else:
            if mean.ndim == 2:
                mean = mean[np.newaxis]
            if mean.ndim != 3:
                raise ValueError(f"Mean shape invalid: {mean.shape}; a mean is (C,), (C, H, W) "
                                 "or (H, W)")
            if mean.shape[0] != shape[0]:
                raise ValueError(f"Mean shape incompatible with input shape: the mean "
                                 f"{mean.shape} has {mean.shape[0]} channels, the input "
                                 f"{shape} {shape[0]}")
            if mean.shape != tuple(shape):
                raise ValueError(f"Mean shape incompatible with input shape: the mean is "
                                 f"{mean.shape}, the input {tuple(shape)} (take the mean per "
                                 "channel, mean.mean(1).mean(1), or crop it)")
        self.mean[in_] = mean

    def set_input_scale(self, in_, scale):
        """The factor applied after the mean is subtracted."""
        self._check_input(in_)
        self.input_scale[in_] = scale


# Arrays <-> BlobProto / Datum, over trainnet's own blob and Datum code.

_DIFF_TAG = b"\x32"  # BlobProto.diff: field 6, packed (length-delimited)


def blobproto_to_array(blob, return_diff: bool = False) -> np.ndarray:
    """A BlobProto's ``data`` (or ``diff`` with ``return_diff``) as a float64 array in the blob's
    shape: ``shape.dim``, or in old blobs the 4-D num/channels/height/width.  A blob without a
    shape holds one value (a scalar).  ``double_data``/``double_diff`` are read when the float
    field is empty."""
    shape = blob_shape(blob)
    values = blob.diff if return_diff else blob.data
    if not len(values):
        values = blob.double_diff if return_diff else blob.double_data
    data = np.array(values, dtype=np.float64)
    count = int(np.prod(shape, dtype=np.int64))
    if data.size != count:
        what = "diff" if return_diff else "data"
        raise ValueError(f"the blob's shape {shape} needs {count} values but its {what} holds "
                         f"{data.size}")
    return data.reshape(shape)


def array_to_blobproto(arr: np.ndarray, diff: np.ndarray | None = None):
    """A BlobProto holding ``arr`` (any number of axes, in ``shape``) as float ``data``, and
    ``diff``, which must have as many values, as float ``diff``."""
    arr = np.asarray(arr)
    blob = caffe_pb2.BlobProto.FromString(blob_proto(arr).SerializeToString())
    if diff is not None:
        values = np.asarray(diff, dtype="<f4")
        if values.size != arr.size:
            raise ValueError(f"diff has {values.size} values, the array {arr.size} "
                             f"(shape {arr.shape})")
        if values.size:
            blob.MergeFromString(_DIFF_TAG + varint(values.nbytes) + values.tobytes(order="C"))
    return blob


def arraylist_to_blobprotovector_str(arraylist) -> bytes:
    """A serialized BlobProtoVector of one BlobProto per array."""
    vec = caffe_pb2.BlobProtoVector()
    vec.blobs.extend([array_to_blobproto(arr) for arr in arraylist])
    return vec.SerializeToString()


arraylist_to_blobprotovecor_str = arraylist_to_blobprotovector_str  # pycaffe's own spelling


def blobprotovector_str_to_arraylist(str) -> list[np.ndarray]:  # noqa: A002 (pycaffe's name)
    """The arrays of a serialized BlobProtoVector."""
    vec = caffe_pb2.BlobProtoVector()
    vec.ParseFromString(str)
    return [blobproto_to_array(blob) for blob in vec.blobs]


def array_to_datum(arr: np.ndarray, label: int | None = None):
    """A Datum holding a C x H x W array: uint8 as ``data`` bytes, any other dtype as
    ``float_data``; ``label`` is set only when given."""
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise ValueError(f"Incorrect array shape: a Datum holds a C x H x W array, got shape "
                         f"{arr.shape}")
    datum = caffe_pb2.Datum.FromString(encode_datum(arr, 0 if label is None else label))
    if label is None:
        datum.ClearField("label")
    return datum


def datum_to_array(datum) -> np.ndarray:
    """A Datum's C x H x W array: uint8 from ``data``, float64 from ``float_data`` (the label is
    ``datum.label``).  An encoded Datum (an image file) is decoded, channels in BGR order."""
    try:
        arr = datum_array(datum)
    except RecordError as exc:
        raise ValueError(f"the Datum {exc}") from None
    return np.array(arr, dtype=np.uint8 if arr.dtype == np.uint8 else np.float64)
