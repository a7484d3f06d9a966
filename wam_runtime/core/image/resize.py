"""Resizing: the interpolation a contract camera asks for, letterbox geometry, area shrinks.

An area shrink by a rational factor with small terms (640x480 to 224x224 is 20/7 by 15/7)
runs as two small matrix products (:class:`AreaShrink`), about twice as fast as OpenCV's
general area resize, converting the 8-bit frame to float32 a few rows at a time in a tile
that stays in the CPU cache; its averages are not rounded back to 8 bits.
"""

import math
from typing import Optional, Tuple

import cv2
import numpy as np

from wam_runtime.core.contract import CameraSpec

_INTERPOLATION = {'nearest': cv2.INTER_NEAREST, 'linear': cv2.INTER_LINEAR,
                  'area': cv2.INTER_AREA}


def choose_interpolation(spec: CameraSpec, src_w: int, src_h: int, dst_w: int,
                         dst_h: int) -> int:
    """Return the OpenCV interpolation flag for resizing ``src`` to ``dst`` for ``spec``.

    ``auto``: nearest neighbour for depth, area when shrinking, linear when enlarging.
    """
    if spec.interpolation != 'auto':
        return _INTERPOLATION[spec.interpolation]
    if spec.is_depth:
        # Never blend valid depth with invalid (0) pixels or a near surface with a far one:
        # an average of the two is a depth where nothing is.
        return cv2.INTER_NEAREST
    shrink = dst_w < src_w or dst_h < src_h
    return cv2.INTER_AREA if shrink else cv2.INTER_LINEAR


def letterbox_geometry(src_w: int, src_h: int, width: int,
                       height: int) -> Tuple[int, int, int, int]:
    """Return (inner_w, inner_h, x0, y0) of an aspect-preserving fit into width x height."""
    s = min(width / src_w, height / src_h)
    nw, nh = max(1, round(src_w * s)), max(1, round(src_h * s))
    return nw, nh, (width - nw) // 2, (height - nh) // 2


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """Return the (n_out, n_in) box-filter weights of an area shrink along one axis.

    Output sample j averages the input interval [j * s, (j + 1) * s) with s = n_in / n_out,
    input samples counted by the fraction of them inside it (OpenCV's INTER_AREA).
    """
    if not 0 < n_out <= n_in:
        raise ValueError(f'area shrink needs 0 < n_out <= n_in, got {n_out} and {n_in}')
    scale = n_in / n_out
    edges = np.arange(n_out + 1, dtype=np.float64) * scale
    lo, hi = edges[:-1, None], edges[1:, None]
    i = np.arange(n_in, dtype=np.float64)[None, :]
    overlap = np.clip(np.minimum(hi, i + 1) - np.maximum(lo, i), 0.0, None)
    return overlap / scale


class AreaShrink:
    """Area shrink of (H, W, C) frames by a rational factor, as two small matrix products.

    With H / h = p / q and W / w = r / t in lowest terms, every p x r block of input pixels
    maps onto a q x t block of output pixels through the same weights, so the rows are one
    batched (q x p) product and the columns one (C*r -> C*t) product over all blocks; BLAS
    runs both far faster than OpenCV's general area resize. ``plan`` returns None where the
    blocks would be large (the products would grow with them).
    """

    MAX_BLOCK = 64
    TILE_BYTES = 256 * 1024

    def __init__(self, in_w: int, in_h: int, out_w: int, out_h: int, channels: int) -> None:
        """Precompute the block weights (use :meth:`plan` to check that they are small)."""
        gy, gx = math.gcd(in_h, out_h), math.gcd(in_w, out_w)
        self.blocks_y = gy
        self.p, self.q = in_h // gy, out_h // gy
        self.r, self.t = in_w // gx, out_w // gx
        self.shape_in = (in_h, in_w, channels)
        self.shape_out = (out_h, out_w, channels)
        self._rows = area_weights(self.p, self.q).astype(np.float32)        # (q, p)
        cols = area_weights(self.r, self.t).T                                # (r, t)
        self._cols = np.kron(cols, np.eye(channels)).astype(np.float32)     # (rC, tC)
        self._mid = np.empty((gy, self.q, in_w * channels), np.float32)
        block_bytes = self.p * in_w * channels * 4
        self._tile = np.empty((max(1, min(gy, self.TILE_BYTES // block_bytes)), self.p,
                               in_w * channels), np.float32)
        self._out = np.empty((out_h * gx, self.t * channels), np.float32)

    @classmethod
    def plan(cls, in_w: int, in_h: int, out_w: int, out_h: int,
             channels: int) -> Optional['AreaShrink']:
        """Return a shrinker, or None if this is not a shrink with blocks <= MAX_BLOCK."""
        if not (0 < out_w <= in_w and 0 < out_h <= in_h) or (out_w, out_h) == (in_w, in_h):
            return None
        if max(in_h // math.gcd(in_h, out_h), in_w // math.gcd(in_w, out_w)) > cls.MAX_BLOCK:
            return None
        return cls(in_w, in_h, out_w, out_h, channels)

    def __call__(self, src: np.ndarray) -> np.ndarray:
        """Return the (h, w, C) float32 shrink of an (H, W, C) frame (a reused buffer).

        A float32 C-contiguous frame is used in place; any other (an 8-bit frame, a crop
        view) is converted to float32 a few row blocks at a time, into a tile that stays in
        the CPU cache, so no full-size copy of the frame is ever made.
        """
        h, w, c = self.shape_in
        if src.dtype == np.float32 and src.flags.c_contiguous:
            np.matmul(self._rows, src.reshape(self.blocks_y, self.p, w * c), out=self._mid)
        else:
            tile = self._tile
            k = tile.shape[0]
            for i in range(0, self.blocks_y, k):
                n = min(k, self.blocks_y - i)
                np.copyto(tile[:n].reshape(n * self.p, w, c),
                          src[i * self.p:(i + n) * self.p], casting='unsafe')
                np.matmul(self._rows, tile[:n], out=self._mid[i:i + n])
        np.matmul(self._mid.reshape(-1, self.r * c), self._cols, out=self._out)
        return self._out.reshape(self.shape_out)
