"""Pooling's window geometry: its parameters (Caffe's PoolingParameter), Caffe's output size and
the check of a window against an NCHW bottom, and the clipping of a kernel tap to the bottom
(the forward-only path)."""

from __future__ import annotations

from typing import Literal, Optional

import numpy as np
from pydantic import Field

from trainnet.layers.base import Layer, spatial_pair
from trainnet.netcfg.common import Strict

UInt = Optional[int]
FLT_MAX = float(np.finfo(np.float32).max)  # Caffe's initial max and padding, in any dtype


class PoolingParams(Strict):
    pool: Literal["MAX", "AVE", "STOCHASTIC"] = "MAX"
    pad: int = Field(0, ge=0)
    pad_h: UInt = Field(None, ge=0)
    pad_w: UInt = Field(None, ge=0)
    kernel_size: UInt = Field(None, ge=1)
    kernel_h: UInt = Field(None, ge=1)
    kernel_w: UInt = Field(None, ge=1)
    stride: int = Field(1, ge=1)
    stride_h: UInt = Field(None, ge=1)
    stride_w: UInt = Field(None, ge=1)
    engine: Literal["DEFAULT", "CAFFE", "CUDNN"] = "DEFAULT"  # accepted, ignored
    global_pooling: bool = False
    round_mode: Literal["CEIL", "FLOOR"] = "CEIL"


def pooled_size(size: int, kernel: int, pad: int, stride: int, ceil: bool, padded: bool) -> int:
    """Caffe's output size; when either pad is > 0 a last window that would start inside the
    padding is dropped."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if padded and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def clip_tap(tap: int, pad: int, stride: int, size: int, out: int) -> Optional[tuple[slice, slice]]:
    """For one kernel tap along one axis: the outputs whose window puts that tap inside the
    ``size`` input cells, and those input cells, as slices (None if there are none)."""
    lo = max(0, -(-(pad - tap) // stride))
    hi = min(out, (size - 1 + pad - tap) // stride + 1)
    if hi <= lo:
        return None
    start = lo * stride + tap - pad
    return slice(lo, hi), slice(start, start + (hi - lo - 1) * stride + 1, stride)


def window_geometry(layer: Layer, shape: tuple) -> tuple[int, ...]:
    """Check a Pooling's parameters against its NCHW bottom ``shape``; returns (Ho, Wo, kh, kw,
    ph, pw, sh, sw).  A misfit raises the layer's located error."""
    p = layer.p
    H, W = shape[2:]
    given = p.model_fields_set
    try:
        if p.global_pooling:
            if p.kernel_size is not None or p.kernel_h is not None or p.kernel_w is not None:
                raise ValueError("global_pooling takes the kernel from the bottom; "
                                 "do not give kernel_size or kernel_h/kernel_w")
            kh, kw = H, W
        else:
            kh, kw = spatial_pair([] if p.kernel_size is None else [p.kernel_size],
                                  p.kernel_h, p.kernel_w, 0, "kernel")
        ph, pw = spatial_pair([p.pad] if "pad" in given else [], p.pad_h, p.pad_w, 0, "pad")
        sh, sw = spatial_pair([p.stride] if "stride" in given else [], p.stride_h, p.stride_w,
                              1, "stride")
    except ValueError as e:
        raise layer.error(str(e)) from None
    if p.global_pooling and (ph, pw, sh, sw) != (0, 0, 1, 1):
        raise layer.error("global_pooling requires pad 0 and stride 1")
    if kh == 0 or kw == 0:  # the schema rejects zeros; 0 here means "not given"
        raise layer.error("kernel_size (or kernel_h and kernel_w) is required and must be > 0")
    if ph >= kh or pw >= kw:
        raise layer.error(f"pad {ph}x{pw} must be smaller than the kernel {kh}x{kw}")
    if kh > H + 2 * ph or kw > W + 2 * pw:
        raise layer.error(f"kernel {kh}x{kw} is larger than the padded input "
                          f"{H + 2 * ph}x{W + 2 * pw}")
    ceil, padded = p.round_mode == "CEIL", ph > 0 or pw > 0
    Ho, Wo = pooled_size(H, kh, ph, sh, ceil, padded), pooled_size(W, kw, pw, sw, ceil, padded)
    if (Ho - 1) * sh - ph >= H or (Wo - 1) * sw - pw >= W:  # Caffe would output NaN/-FLT_MAX
        raise layer.error(f"kernel {kh}x{kw} with stride {sh}x{sw} makes a last window that starts "
                          f"outside the {H}x{W} input; use round_mode FLOOR")
    return Ho, Wo, kh, kw, ph, pw, sh, sw
