"""Pooling's window geometry: its parameters (Caffe's PoolingParameter), Caffe's output size and
the check of a window against an NCHW bottom, and the layout of the CPU pass's padded cells."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class Cells:
    """The CPU pass's layout of a chunk of bottom planes: padded to ``Hp`` x ``Wp`` around the
    bottom (room for Caffe's ceil-rounded windows) and its columns split by phase modulo the
    stride, ``(planes, Hp, sw, Wq)`` with padded column ``q * sw + p`` at ``[:, :, p, q]``.  Every
    kernel tap then touches a row-strided view whose rows are contiguous runs of ``Wo`` cells, so
    NumPy's loops run over contiguous memory.  A chunk of planes small enough for the cache
    makes each tap's passes read what the last one left there."""

    H: int
    W: int
    Ho: int
    Wo: int
    kh: int
    kw: int
    ph: int
    pw: int
    sh: int
    sw: int

    @property
    def Hp(self) -> int:
        return max(self.H + 2 * self.ph, (self.Ho - 1) * self.sh + self.kh)

    @property
    def Wq(self) -> int:
        return -(-max(self.W + 2 * self.pw, (self.Wo - 1) * self.sw + self.kw) // self.sw)

    @property
    def direct(self) -> bool:
        """The bottom itself has this layout: no padding needed and stride 1 across."""
        return self.sw == 1 and (self.Hp, self.Wq) == (self.H, self.W)

    def shape(self, planes: int) -> tuple[int, int, int, int]:
        return planes, self.Hp, self.sw, self.Wq

    def taps(self, cells: np.ndarray):
        """(tap index, its (planes, Ho, Wo) view of ``cells``) in Caffe's window order."""
        hs = self.sh * (self.Ho - 1) + 1
        for i in range(self.kh):
            for j in range(self.kw):
                q = j // self.sw
                yield i * self.kw + j, cells[:, i:i + hs:self.sh, j % self.sw, q:q + self.Wo]

    def _phases(self):
        """Per column phase p: (first q, count, first bottom column) of the bottom's columns."""
        for p in range(self.sw):
            q0 = -(-(self.pw - p) // self.sw)
            w0 = q0 * self.sw + p - self.pw
            yield p, q0, max(0, -(-(self.W - w0) // self.sw)), w0

    def interior(self, cells: np.ndarray):
        """(view of ``cells``, the bottom columns it holds as a slice) per column phase."""
        for p, q0, n, w0 in self._phases():
            if n:
                yield cells[:, self.ph:self.ph + self.H, p, q0:q0 + n], slice(w0, self.W, self.sw)

    def fill_border(self, cells: np.ndarray, value: float) -> None:
        cells[:, :self.ph] = value
        cells[:, self.ph + self.H:] = value
        for p, q0, n, _ in self._phases():
            cells[:, self.ph:self.ph + self.H, p, :q0] = value
            cells[:, self.ph:self.ph + self.H, p, q0 + n:] = value

    def load(self, cells: np.ndarray, x: np.ndarray) -> None:
        """Copy the (planes, H, W) bottom chunk ``x`` into the interior of ``cells``."""
        for view, cols in self.interior(cells):
            np.copyto(view, x[:, :, cols])

    def store(self, dx: np.ndarray, cells: np.ndarray) -> None:
        """Copy the interior of ``cells`` into the (planes, H, W) chunk ``dx`` (the crop)."""
        for view, cols in self.interior(cells):
            np.copyto(dx[:, :, cols], view)


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
