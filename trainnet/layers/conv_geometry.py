"""Convolution geometry shared by Convolution, Deconvolution and the depthwise path: the
parameters (Caffe's ConvolutionParameter) and their check against an NCHW bottom."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from trainnet.layers.base import Layer, spatial_pair
from trainnet.netcfg.common import FillerParameter, PosIntList, Strict, UIntList

UInt = Optional[int]


class ConvolutionParams(Strict):
    num_output: int = Field(ge=1)
    bias_term: bool = True
    pad: UIntList = []          # default 0
    kernel_size: PosIntList = []  # no default: kernel_size or kernel_h/kernel_w is required
    stride: PosIntList = []       # default 1
    dilation: PosIntList = []     # default 1
    pad_h: UInt = Field(None, ge=0)
    pad_w: UInt = Field(None, ge=0)
    kernel_h: UInt = Field(None, ge=1)
    kernel_w: UInt = Field(None, ge=1)
    stride_h: UInt = Field(None, ge=1)
    stride_w: UInt = Field(None, ge=1)
    group: int = Field(1, ge=1)
    weight_filler: FillerParameter = FillerParameter()
    bias_filler: FillerParameter = FillerParameter()
    axis: int = 1
    force_nd_im2col: bool = False  # accepted for Caffe compatibility; 2-D only here
    engine: Literal["DEFAULT", "CAFFE", "CUDNN"] = "DEFAULT"  # accepted, ignored


def kernel_geometry(layer: Layer, shape: tuple) -> tuple[int, ...]:
    """Check a Convolution's or Deconvolution's parameters against its NCHW bottom ``shape``;
    returns (kh, kw, ph, pw, sh, sw, dh, dw).  A misfit raises the layer's located error."""
    p = layer.p
    if p.axis not in (1, -3):
        raise layer.error(f"axis {p.axis}: only axis 1 (the channels of an NCHW bottom) is "
                          "supported")
    if len(shape) != 4:
        raise layer.error(f"expects a 4-D NCHW bottom, got {len(shape)}-D {shape}")
    try:
        kh, kw = spatial_pair(p.kernel_size, p.kernel_h, p.kernel_w, 0, "kernel")
        ph, pw = spatial_pair(p.pad, p.pad_h, p.pad_w, 0, "pad")
        sh, sw = spatial_pair(p.stride, p.stride_h, p.stride_w, 1, "stride")
        dh, dw = spatial_pair(p.dilation, None, None, 1, "dilation")
    except ValueError as e:
        raise layer.error(str(e)) from None
    if kh == 0 or kw == 0:  # the schema rejects zeros; 0 here means "not given"
        raise layer.error("kernel_size (or kernel_h and kernel_w) is required and must be > 0")
    if shape[1] % p.group:
        raise layer.error(f"{shape[1]} input channels are not divisible by group {p.group}")
    if p.num_output % p.group:
        raise layer.error(f"num_output {p.num_output} is not divisible by group {p.group}")
    return kh, kw, ph, pw, sh, sw, dh, dw
