"""Config messages shared by many layers, named and defaulted as in Caffe's caffe.proto."""

from __future__ import annotations

from typing import Annotated, Literal, Optional, TypeVar

import math

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator

INT32 = (-2**31, 2**31 - 1)
INT64 = (-2**63, 2**63 - 1)
INT64_FIELDS = frozenset({"dim", "random_seed"})  # int64 in caffe.proto; every other is 32-bit


def _as_list(value):
    """Caffe's repeated fields: YAML may give one value or a list."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


class Strict(BaseModel):
    """Base of every config model: unknown keys and wrong types are errors; models are immutable.

    Numbers are held to what caffe.proto can carry: an integer field is 32-bit (``dim`` and
    ``random_seed`` 64-bit), so ``num_output: 2**61`` is refused where it would otherwise wrap or
    overflow further on (Caffe's blobs are int-indexed too); a float field must be finite
    (``1e400`` reads as inf).  A float for an integer field is refused, as Caffe's prototxt
    parser refuses it (``num_output: 1e9`` must be written ``1000000000``)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @field_validator("*")
    @classmethod
    def _caffe_number_ranges(cls, value, info: ValidationInfo):
        for item in value if isinstance(value, list) else (value,):
            if type(item) is float and not math.isfinite(item):
                raise ValueError(f"must be a finite number, got {item}")
            if type(item) is int:
                lo, hi = INT64 if info.field_name in INT64_FIELDS else INT32
                if not lo <= item <= hi:
                    bits = 64 if hi == INT64[1] else 32
                    raise ValueError(f"{item} is out of range: Caffe's field is a {bits}-bit "
                                     f"integer ({lo:,} to {hi:,})")
        return value


# A repeated field that accepts a scalar too (`top: conv1` or `top: [conv1]`).
StrList = Annotated[list[str], BeforeValidator(_as_list)]
FloatList = Annotated[list[float], BeforeValidator(_as_list)]
BoolList = Annotated[list[bool], BeforeValidator(_as_list)]
UIntList = Annotated[list[Annotated[int, Field(ge=0)]], BeforeValidator(_as_list)]
PosIntList = Annotated[list[Annotated[int, Field(ge=1)]], BeforeValidator(_as_list)]

T = TypeVar("T")
Repeated = Annotated[list[T], BeforeValidator(_as_list)]  # one mapping or a list of them

Phase = Literal["TRAIN", "TEST"]


class FillerParameter(Strict):
    """How a parameter blob is initialised (Caffe's FillerParameter)."""

    type: Literal["constant", "uniform", "gaussian", "xavier", "msra", "positive_unitball",
                  "bilinear"] = "constant"
    value: float = 0.0
    min: float = 0.0
    max: float = 1.0
    mean: float = 0.0
    std: float = Field(1.0, ge=0)
    sparse: int = -1
    variance_norm: Literal["FAN_IN", "FAN_OUT", "AVERAGE"] = "FAN_IN"


class ParamSpec(Strict):
    """Per-parameter-blob settings on a layer: sharing name and learning-rate/decay multipliers."""

    name: str = ""
    share_mode: Literal["STRICT", "PERMISSIVE"] = "STRICT"
    lr_mult: float = 1.0
    decay_mult: float = 1.0


class NetStateRule(Strict):
    """An include/exclude rule: a layer is in the net when the net state meets it."""

    phase: Optional[Phase] = None
    min_level: Optional[int] = None
    max_level: Optional[int] = None
    stage: StrList = []
    not_stage: StrList = []


class NetState(Strict):
    phase: Phase = "TEST"
    level: int = 0
    stage: StrList = []


class TransformationParameter(Strict):
    """Input preprocessing of data layers: ``(x - mean) * scale`` with optional mirror and crop."""

    scale: float = 1.0
    mirror: bool = False
    crop_size: int = Field(0, ge=0)
    mean_file: Optional[str] = None
    mean_value: FloatList = []
    force_color: bool = False
    force_gray: bool = False


class BlobShape(Strict):
    dim: Annotated[list[Annotated[int, Field(ge=0)]], BeforeValidator(_as_list)]


class Preprocess(Strict):
    """How a model's inputs were prepared when it was trained: recorded with the model (a zoo
    net, a converted Caffe model), never guessed.  An image in [0, 1] becomes the net's input as
    pycaffe's Transformer does: resize, centre-crop to the input size, reorder channels, times
    ``raw_scale``, minus the mean, times ``input_scale``."""

    channel_order: Literal["BGR", "RGB", "GRAY"] = "BGR"
    raw_scale: float = Field(255.0, gt=0)   # pixel values span [0, raw_scale] before the mean
    mean_value: FloatList = []              # one per channel (in channel_order) or one for all
    mean_file: Optional[str] = None         # a binaryproto mean, instead of mean_value
    input_scale: float = Field(1.0, gt=0)   # applied after the mean is subtracted
    resize: PosIntList = []                 # [H, W] to resize to before the centre crop
    labels: Optional[str] = None            # class names, one per line (synset_words.txt)
