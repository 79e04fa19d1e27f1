"""Convolution semantics of the IR's ``conv`` op: the contract the frontends read ONNX / Keras attributes into and
the conv family (kernels/conv/) implements. It sits in the IR so that frontends depend on it without reaching into
a kernel family.

Layout on chip: channels last. An activation event is ``[*spatial, C]`` (NWC: ``[L, C]``; NHWC: ``[H, W, C]``),
weights are ``[*kernel, C / groups, M]`` (the ONNX ``[M, C / groups, *kernel]`` transposed), the result
``[*out, M]``. For output position ``o`` and filter ``m`` of group ``g = m // (M / groups)``:

    acc[o, m] = sum_{k, c} x_padded[o * stride + k * dilation, g * C_g + c] * w[k, c, m]

with ``x_padded`` the input surrounded by ``pads_begin`` / ``pads_end`` copies of ``pad_code`` per spatial axis
(the code of the real value 0: the input's zero point, so that padding adds exactly what the source's zero padding
adds). Output sizes follow ONNX Conv: ``floor((in + pb + pe - dilation * (k - 1) - 1) / stride) + 1``, with
``auto_pad`` SAME_UPPER / SAME_LOWER / VALID resolved as ONNX defines it. ``exact_conv`` is the exact integer
model (int64, refused where a sum could leave 2**62).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nn2aie.ir.host import channels_last_order

EXACT_LIMIT = 1 << 62


@dataclass(frozen=True)
class ConvGeometry:
    """Shape parameters of one convolution (1-D or 2-D; tuples have one entry per spatial axis)."""

    spatial: tuple[int, ...]
    channels: int
    kernel: tuple[int, ...]
    filters: int
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads_begin: tuple[int, ...]
    pads_end: tuple[int, ...]
    groups: int = 1

    def problem(self) -> str | None:
        """Why the geometry is not a convolution (None when it is)."""
        n = len(self.spatial)
        if n not in (1, 2):
            return f"{n} spatial axes (1-D and 2-D convolutions are supported)"
        for name, v in (("kernel", self.kernel), ("strides", self.strides), ("dilations", self.dilations),
                        ("pads_begin", self.pads_begin), ("pads_end", self.pads_end)):
            if len(v) != n:
                return f"{name} {list(v)} does not have one entry per spatial axis ({n})"
        if min(self.spatial) < 1 or min(self.kernel) < 1 or min(self.strides) < 1 or min(self.dilations) < 1:
            return "sizes, kernel, strides and dilations must be positive"
        if min(self.pads_begin + self.pads_end) < 0:
            return "negative padding"
        if self.groups < 1 or self.channels % self.groups or self.filters % self.groups:
            return f"{self.groups} groups do not divide {self.channels} input and {self.filters} output channels"
        if min(self.out_spatial, default=0) < 1:
            return f"the kernel {list(self.kernel)} (dilation {list(self.dilations)}) is larger than the padded " \
                   f"input {list(self.spatial)}"
        for k, pb, pe in zip(self.kernel, self.pads_begin, self.pads_end, strict=True):
            if pb >= k or pe >= k:  # ONNX allows it; a window of only padding is not what any exporter writes
                return f"padding {pb}/{pe} not smaller than the kernel {k}"
        return None

    @property
    def out_spatial(self) -> tuple[int, ...]:
        return tuple((i + pb + pe - d * (k - 1) - 1) // s + 1 for i, k, s, d, pb, pe in zip(
            self.spatial, self.kernel, self.strides, self.dilations, self.pads_begin, self.pads_end, strict=True))

    @property
    def depthwise(self) -> bool:
        return self.groups == self.channels and self.groups > 1

    @property
    def macs_per_event(self) -> int:
        return int(np.prod(self.out_spatial)) * self.filters * int(np.prod(self.kernel)) * (self.channels //
                                                                                           self.groups)

    @classmethod
    def from_onnx(cls, spatial: tuple[int, ...], channels: int, kernel: tuple[int, ...], filters: int,
                  strides=None, dilations=None, pads=None, auto_pad: str = "NOTSET", group: int = 1) -> ConvGeometry:
        """ONNX Conv attributes (``pads`` = [begin_1, ..., begin_n, end_1, ..., end_n]) -> the geometry."""
        n = len(spatial)
        strides = tuple(int(s) for s in (strides or [1] * n))
        dilations = tuple(int(d) for d in (dilations or [1] * n))
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            begin, end = [], []
            for i, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
                out = -(-i // s)
                total = max((out - 1) * s + d * (k - 1) + 1 - i, 0)
                small = total // 2
                begin.append(small if auto_pad == "SAME_UPPER" else total - small)
                end.append(total - begin[-1])
            pb, pe = tuple(begin), tuple(end)
        elif auto_pad == "VALID":
            pb = pe = (0,) * n
        elif auto_pad in ("NOTSET", ""):
            p = [int(v) for v in (pads or [0] * (2 * n))]
            if len(p) != 2 * n:
                raise ValueError(f"pads {p} need {2 * n} entries")
            pb, pe = tuple(p[:n]), tuple(p[n:])
        else:
            raise ValueError(f"auto_pad {auto_pad!r} is not an ONNX value")
        return cls(tuple(int(v) for v in spatial), int(channels), tuple(int(v) for v in kernel), int(filters),
                   strides, dilations, pb, pe, int(group))


def sum_bound(geo: ConvGeometry, x_max_abs: int, w: np.ndarray, bias_max_abs: int = 0) -> int:
    """A bound on every partial sum: per filter, the sum of |w| over its window times the largest |x|."""
    col = np.abs(np.asarray(w, dtype=np.int64)).reshape(-1, geo.filters).sum(axis=0)
    return int(col.max(initial=0)) * int(x_max_abs) + int(bias_max_abs)


def exact_conv(x: np.ndarray, w: np.ndarray, geo: ConvGeometry, pad_code: int = 0) -> np.ndarray:
    """The exact accumulators: ``x`` [events, *spatial, C], ``w`` [*kernel, C / groups, M] -> [events, *out, M]
    int64 (see the module docstring)."""
    why = geo.problem()
    if why is not None:
        raise ValueError(why)
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    n = len(geo.spatial)
    if x.shape[1:] != (*geo.spatial, geo.channels) or w.shape != (*geo.kernel, geo.channels // geo.groups,
                                                                    geo.filters):
        raise ValueError(f"shapes {list(x.shape)} / {list(w.shape)} do not match the geometry")
    if sum_bound(geo, int(np.abs(x).max(initial=0)) + abs(pad_code), w) >= EXACT_LIMIT:
        raise ValueError("a sum could leave 2**62")
    pad = [(0, 0)] + list(zip(geo.pads_begin, geo.pads_end, strict=True)) + [(0, 0)]
    xp = np.pad(x, pad, constant_values=pad_code)
    events = x.shape[0]
    out = geo.out_spatial
    cg, mg = geo.channels // geo.groups, geo.filters // geo.groups
    acc = np.zeros((events, *out, geo.filters), dtype=np.int64)
    for offset in np.ndindex(*geo.kernel):  # one kernel tap at a time: a strided slice of the padded input
        index = tuple(slice(o * d, o * d + (size - 1) * s + 1, s) for o, d, size, s in zip(
            offset, geo.dilations, out, geo.strides, strict=True))
        patch = xp[(slice(None), *index, slice(None))]  # [events, *out, C]
        tap = w[offset]  # [C / groups, M]
        for g in range(geo.groups):
            acc[..., g * mg:(g + 1) * mg] += patch[..., g * cg:(g + 1) * cg] @ tap[:, g * mg:(g + 1) * mg]
    assert acc.shape[1:1 + n] == out
    return acc


def weights_from_onnx(w: np.ndarray) -> np.ndarray:
    """ONNX Conv weights ``[M, C / groups, *kernel]`` -> the channels-last ``[*kernel, C / groups, M]``."""
    w = np.asarray(w)
    return np.moveaxis(w, (0, 1), (-1, -2))


def nchw_flatten_order(spatial: tuple[int, ...], channels: int) -> np.ndarray:
    """Where each element of an ONNX ``Flatten`` of a ``[C, *spatial]`` event sits in the channels-last flatten of
    the same event: ``flatten_nchw(x) == flatten_nhwc(x)[order]``. A Dense after the Flatten then reads the
    channels-last tensor with its weight rows permuted (``W_nhwc[order] = W_nchw``, i.e. ``W_nhwc =
    W_nchw[argsort(order)]``), so no transpose runs on chip."""
    return channels_last_order((channels, *spatial))


def dense_rows_for_nhwc(w_nchw_rows: np.ndarray, spatial: tuple[int, ...], channels: int) -> np.ndarray:
    """The weight matrix ``[C * prod(spatial), N]`` of a Dense that reads an ONNX (channels-first) Flatten, for
    the channels-last flatten instead."""
    order = nchw_flatten_order(spatial, channels)
    w = np.asarray(w_nchw_rows)
    out = np.empty_like(w)
    out[order] = w
    return out
