"""Camera frames: raw or compressed sensor bytes to numpy views, and views to model tensors.

``frame_view`` never copies: it wraps the message buffer (``array.array`` from rclpy,
``bytes`` from a bag) in a strided numpy view that honours row padding (``step``) and byte
order (``is_bigendian``). ``Preprocessor`` then writes the model tensor into a buffer it owns:
crop is a view, the resized frame is the one model-sized intermediate, and the colour order,
the colour-to-luma conversion and the affine normalisation run on that small image. An area
shrink by a rational factor with small terms (640x480 to 224x224 is 20/7 by 15/7) runs as
two small matrix products (:class:`AreaShrink`), about twice as fast as OpenCV's general
area resize, converting the 8-bit frame to float32 a few rows at a time in a tile that
stays in the CPU cache; its averages are not rounded back to 8 bits. At most one full-size
copy is made, into a reused buffer: the float32 conversion of other area shrinks (OpenCV's
general area resize is faster on float32) or the byte swap of a frame whose byte order
differs from this machine's. Compressed frames (JPEG, PNG,
compressedDepth) are decoded with OpenCV, which releases the GIL, so ``TensorBuilder`` can
turn several cameras into tensors in parallel threads.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
import math
import struct
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

from wam_runtime.core.contract import CameraSpec

# encoding -> (channels, pixel dtype, channel order); 'D' is depth, 'L' is luma.
PIXEL_FORMATS: Dict[str, Tuple[int, np.dtype, str]] = {
    'rgb8': (3, np.dtype(np.uint8), 'RGB'),
    'bgr8': (3, np.dtype(np.uint8), 'BGR'),
    'rgba8': (4, np.dtype(np.uint8), 'RGBA'),
    'bgra8': (4, np.dtype(np.uint8), 'BGRA'),
    'mono8': (1, np.dtype(np.uint8), 'L'),
    'mono16': (1, np.dtype(np.uint16), 'D'),
    '16UC1': (1, np.dtype(np.uint16), 'D'),
    '32FC1': (1, np.dtype(np.float32), 'D'),
}

_TO_GREY = {'RGB': cv2.COLOR_RGB2GRAY, 'BGR': cv2.COLOR_BGR2GRAY,
            'RGBA': cv2.COLOR_RGBA2GRAY, 'BGRA': cv2.COLOR_BGRA2GRAY}
_INTERPOLATION = {'nearest': cv2.INTER_NEAREST, 'linear': cv2.INTER_LINEAR,
                  'area': cv2.INTER_AREA}
_REDUCED_COLOUR = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                   8: cv2.IMREAD_REDUCED_COLOR_8}
_REDUCED_GREY = {2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
                 8: cv2.IMREAD_REDUCED_GRAYSCALE_8}
# compressed_depth_image_transport prefixes the PNG with {int32 format; float quant[2]}.
_DEPTH_HEADER = struct.Struct('<iff')


class FrameError(ValueError):
    """A frame cannot be used; ``reason`` is a short code for counters and diagnostics."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f'{reason}: {detail}')
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class RawFrame:
    """An uncompressed frame as it arrived (``data`` is the message buffer, not a copy)."""

    data: Any
    height: int
    width: int
    encoding: str
    step: int
    is_bigendian: bool = False


@dataclass(frozen=True)
class CompressedFrame:
    """A compressed frame as it arrived: JPEG or PNG bytes and the transport's format."""

    data: Any
    format: str  # noqa: A003 - the sensor_msgs/CompressedImage field name


def frame_view(data: Any, height: int, width: int, encoding: str, step: int,
               is_bigendian: bool = False) -> np.ndarray:
    """Wrap raw image bytes as an (H, W, C) view without copying.

    The view's dtype is uint8, uint16 or float32 in the frame's byte order. Raises
    FrameError('unsupported_encoding' | 'bad_size') for frames that cannot be read.
    """
    if encoding not in PIXEL_FORMATS:
        raise FrameError('unsupported_encoding',
                         f'{encoding!r} (supported: {sorted(PIXEL_FORMATS)})')
    channels, dtype, _ = PIXEL_FORMATS[encoding]
    if height <= 0 or width <= 0:
        raise FrameError('bad_size', f'{width}x{height}')
    size = dtype.itemsize
    row = width * channels * size
    if step < row:
        raise FrameError('bad_size', f'step {step} < width*channels*bytes {row}')
    buf = np.frombuffer(data, dtype=np.uint8)
    need = step * (height - 1) + row
    if buf.size < need:
        raise FrameError('bad_size', f'{buf.size} bytes for {width}x{height} {encoding} '
                                     f'with step {step} (need {need})')
    if size > 1:
        dtype = dtype.newbyteorder('>' if is_bigendian else '<')
    view = np.ndarray((height, width, channels), dtype=dtype, buffer=buf,
                      strides=(step, channels * size, size))
    if not view.flags.aligned:
        # Rows at odd addresses (a step that is not a multiple of the pixel size): OpenCV
        # cannot read them in place. Rare enough to afford the copy.
        return np.ascontiguousarray(view)
    view.flags.writeable = False
    return view


def jpeg_header(data: Any) -> Optional[Tuple[int, int, int]]:
    """Return (width, height, components) from a JPEG's frame header, or None if not JPEG."""
    b = memoryview(data).cast('B') if not isinstance(data, (bytes, bytearray)) else data
    n = len(b)
    if n < 4 or b[0] != 0xFF or b[1] != 0xD8:
        return None
    i = 2
    while i + 4 <= n:
        if b[i] != 0xFF:
            return None
        marker = b[i + 1]
        if marker == 0xFF:          # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = (b[i + 2] << 8) | b[i + 3]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD,
                      0xCE, 0xCF):
            if i + 9 >= n:
                return None
            height = (b[i + 5] << 8) | b[i + 6]
            width = (b[i + 7] << 8) | b[i + 8]
            return width, height, b[i + 9]
        if marker == 0xDA:          # start of scan before a frame header: malformed
            return None
        i += 2 + length
    return None


def decode_compressed(data: Any, fmt: str, reduction: int = 1) -> Tuple[np.ndarray, str]:
    """Decode a CompressedImage payload; return an (H, W, C) array and its encoding.

    ``fmt`` is the message's ``format`` ('jpeg', 'png', 'rgb8; jpeg compressed bgr8',
    '16UC1; compressedDepth png', ...). Colour comes back in OpenCV's order (bgr8 or bgra8),
    which is how image_transport compresses it. ``reduction`` (2, 4 or 8) decodes a JPEG at
    that fraction of its size in the DCT domain, which is several times faster. Raises
    FrameError('decode_failed' | 'unsupported_encoding').
    """
    fmt_l = fmt.lower()
    buf = np.frombuffer(data, dtype=np.uint8)
    if 'compresseddepth' in fmt_l:
        return _decode_compressed_depth(buf, fmt)
    flags = cv2.IMREAD_UNCHANGED
    if reduction > 1:
        info = jpeg_header(buf)
        if info is None:
            raise FrameError('decode_failed', f'reduced decoding needs a JPEG ({fmt!r})')
        table = _REDUCED_GREY if info[2] == 1 else _REDUCED_COLOUR
        flags = table[reduction] | cv2.IMREAD_IGNORE_ORIENTATION
    img = cv2.imdecode(buf, flags)
    if img is None:
        raise FrameError('decode_failed', f'{buf.size} bytes of {fmt!r} did not decode')
    if img.ndim == 2:
        img = img[:, :, None]
    channels = img.shape[2]
    if img.dtype == np.uint8:
        encoding = {1: 'mono8', 3: 'bgr8', 4: 'bgra8'}.get(channels)
    elif img.dtype == np.uint16 and channels == 1:
        encoding = '16UC1' if fmt_l.startswith('16uc1') else 'mono16'
    else:
        encoding = None
    if encoding is None:
        raise FrameError('unsupported_encoding',
                         f'decoded {fmt!r} to {channels} x {img.dtype} channels')
    return img, encoding


def _decode_compressed_depth(buf: np.ndarray, fmt: str) -> Tuple[np.ndarray, str]:
    if buf.size <= _DEPTH_HEADER.size:
        raise FrameError('decode_failed', f'compressedDepth payload of {buf.size} bytes')
    _, quant_a, quant_b = _DEPTH_HEADER.unpack(buf[:_DEPTH_HEADER.size].tobytes())
    img = cv2.imdecode(buf[_DEPTH_HEADER.size:], cv2.IMREAD_UNCHANGED)
    if img is None or img.dtype != np.uint16 or img.ndim != 2:
        raise FrameError('decode_failed', f'compressedDepth {fmt!r} is not a 16-bit PNG')
    if fmt.lower().startswith('32fc1'):
        # Quantised inverse depth: d = a / (v - b), 0 means invalid.
        v = img.astype(np.float32)
        with np.errstate(divide='ignore', invalid='ignore'):
            depth = np.where(img > 0, np.float32(quant_a) / (v - np.float32(quant_b)),
                             np.float32(np.nan))
        return depth.astype(np.float32)[:, :, None], '32FC1'
    return img[:, :, None], '16UC1'


def _interpolation(spec: CameraSpec, src_w: int, src_h: int, dst_w: int, dst_h: int) -> int:
    if spec.interpolation != 'auto':
        return _INTERPOLATION[spec.interpolation]
    if spec.is_depth:
        # Never blend valid depth with invalid (0) pixels or a near surface with a far one:
        # an average of the two is a depth where nothing is.
        return cv2.INTER_NEAREST
    shrink = dst_w < src_w or dst_h < src_h
    return cv2.INTER_AREA if shrink else cv2.INTER_LINEAR


def _resize(img: np.ndarray, width: int, height: int, interpolation: int) -> np.ndarray:
    if img.shape[1] == width and img.shape[0] == height:
        return img
    out = cv2.resize(img, (width, height), interpolation=interpolation)
    return out if out.ndim == 3 else out[:, :, None]


def _letterbox_geometry(src_w: int, src_h: int, width: int,
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


class Preprocessor:
    """Turn (H, W, C) frames into the input tensor of one contract camera.

    Crop (a view), resize (the one model-sized intermediate), colour order or luma, then one
    affine pass ``x * scale / std - mean / std`` straight into the output tensor, which is
    allocated once and returned by every call; scratch buffers are reused too. Depth frames
    are converted to metres (16-bit values times ``depth_scale``, 32FC1 as is) and every
    invalid pixel reads 0: 16-bit 0, and 32FC1 NaN, +Inf, -Inf (REP 118: no return, too
    far, too near), 0 and negative. ``interpolation: auto`` resizes depth with nearest
    neighbour, so a valid pixel is never blended with an invalid one or across an edge;
    an explicit blending interpolation zeroes invalid 32FC1 pixels before resizing.
    ``resize: pad`` centres the resized frame (an odd remainder goes right and bottom) on
    bars of pixel value 0 (black; 0 m, invalid, for depth), normalised like every pixel.
    """

    def __init__(self, spec: CameraSpec) -> None:
        """Allocate the output tensor once; every call writes into it."""
        self.spec = spec
        self._out = np.zeros(spec.tensor_shape(), dtype=np.dtype(spec.dtype))
        std = np.asarray(spec.std, dtype=np.float64)
        self._gain = spec.scale / std
        self._offset = np.asarray(spec.mean, dtype=np.float64) / std
        self._identity = spec.dtype == 'uint8'
        self._planes = self._plane_views(self._out)
        self._scratch = None
        if spec.dtype == 'float16':
            self._scratch = np.zeros((spec.height, spec.width), np.float32)
        kind = 'D' if spec.is_depth else 'L'
        self._want = {'rgb8': 'RGB', 'bgr8': 'BGR'}.get(spec.encoding, kind)
        self._canvas: Dict[Tuple, np.ndarray] = {}
        self._buffers: Dict[str, np.ndarray] = {}
        self._shrink_key: Optional[Tuple[int, ...]] = None
        self._shrink: Optional[AreaShrink] = None

    def _plane_views(self, tensor: np.ndarray) -> List[np.ndarray]:
        spec = self.spec
        if tensor.shape != spec.tensor_shape() or tensor.dtype != np.dtype(spec.dtype):
            raise ValueError(f'out: camera {spec.name!r} needs a {spec.dtype} tensor of shape '
                             f'{spec.tensor_shape()}, got {tensor.dtype} {tensor.shape}')
        t = tensor[0]
        return [t[k] if spec.layout == 'NCHW' else t[:, :, k] for k in range(spec.channels)]

    def __call__(self, frame: np.ndarray, encoding: str, reduction: int = 1,
                 out: Optional[np.ndarray] = None) -> np.ndarray:
        """Return the model tensor for ``frame``.

        The tensor is written into ``out`` when given, else into a buffer that every call
        reuses. ``reduction`` says the frame was decoded at 1/reduction of the camera's
        size, so the contract's crop is divided by it.
        """
        spec = self.spec
        target = self._out if out is None else out
        planes = self._planes if out is None else self._plane_views(out)
        if encoding not in PIXEL_FORMATS:
            raise FrameError('unsupported_encoding', repr(encoding))
        order = PIXEL_FORMATS[encoding][2]
        want = self._want
        if (want == 'D') != (order == 'D') or (want in ('RGB', 'BGR') and order == 'L'):
            raise FrameError('wrong_encoding', f'camera {spec.name!r} ({spec.encoding}) '
                                               f'cannot use {encoding} frames')
        region = self._crop(frame, reduction)
        if want == 'D':
            if region.dtype.kind == 'f' and spec.interpolation not in ('auto', 'nearest') \
                    and region.shape[:2] != (spec.height, spec.width):
                # A blending resize must not spread NaN/Inf: invalid pixels become 0 first
                # (the one full-size copy, which also fixes the byte order).
                clean = self._buffer('depth_src', region.shape, np.float32)
                np.copyto(clean, region, casting='same_kind')
                clean[~(np.isfinite(clean) & (clean > 0))] = 0.0
                region = clean
            elif not region.dtype.isnative:
                region = region.astype(region.dtype.newbyteorder('='))
            small = self._fit(region)
            if small.dtype == np.float32:
                small = np.where(np.isfinite(small) & (small > 0), small, np.float32(0.0))
                unit = 1.0
            else:
                unit = spec.depth_scale
            for k in range(spec.channels):
                self._affine(small[:, :, 0], planes[k], k, unit)
            return target
        small = self._fit(region)
        if want == 'L':
            if order != 'L':
                small = cv2.cvtColor(small, _TO_GREY[order])[:, :, None]
            src = [0]
        else:
            src = [order.index(c) for c in want]
        for k, c in enumerate(src):
            self._affine(small[:, :, c], planes[k], k, 1.0)
        return target

    def max_reduction(self, frame_width: int, frame_height: int) -> int:
        """Return the largest JPEG decode reduction (1, 2, 4, 8) that loses no model pixel.

        A reduction is used only when the contract shrinks the (cropped) frame with area
        interpolation, the reduced region still has at least the model's size, and the crop
        and frame sizes divide evenly.
        """
        spec = self.spec
        if spec.is_depth:
            return 1
        x, y, w, h = spec.crop or (0, 0, frame_width, frame_height)
        tw, th = spec.width, spec.height
        if spec.resize == 'pad':
            tw, th = _letterbox_geometry(w, h, spec.width, spec.height)[:2]
        if _interpolation(spec, w, h, tw, th) != cv2.INTER_AREA:
            return 1
        for r in (8, 4, 2):
            if all(v % r == 0 for v in (x, y, w, h, frame_width, frame_height)) \
                    and w // r >= tw and h // r >= th:
                return r
        return 1

    def _crop(self, frame: np.ndarray, reduction: int) -> np.ndarray:
        crop = self.spec.crop
        if crop is None:
            return frame
        x, y, w, h = (v // reduction for v in crop)
        if x + w > frame.shape[1] or y + h > frame.shape[0]:
            raise FrameError('crop_outside_frame',
                             f'crop {list(crop)} of camera {self.spec.name!r} does not fit '
                             f'a {frame.shape[1] * reduction}x{frame.shape[0] * reduction} '
                             'frame')
        return frame[y:y + h, x:x + w]

    def _buffer(self, name: str, shape: Tuple[int, ...], dtype: Any) -> np.ndarray:
        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = self._buffers[name] = np.empty(shape, dtype)
        return buf

    def _scaled(self, region: np.ndarray, width: int, height: int) -> np.ndarray:
        """Resize into a reused buffer: the one model-sized intermediate."""
        h, w, c = region.shape
        if (w, h) == (width, height):
            return region
        interp = _interpolation(self.spec, w, h, width, height)
        src = region
        if interp == cv2.INTER_AREA and region.dtype == np.uint8 and width <= w \
                and height <= h and not self._identity:
            # Area shrinks of 8-bit frames into float tensors run on float32 and stay float:
            # no rounding back to 8 bits (8-bit tensors keep OpenCV's 8-bit result). The
            # matrix products convert tile by tile; OpenCV's general area resize, 1.5x
            # faster on float32, gets the one full-size copy of the frame.
            key = (w, h, width, height, c)
            if self._shrink_key != key:
                self._shrink_key = key
                self._shrink = AreaShrink.plan(w, h, width, height, c)
            if self._shrink is not None:
                return self._shrink(region)     # converts in cache-sized tiles
            src = self._buffer('area_src', region.shape, np.float32)
            np.copyto(src, region, casting='unsafe')
        dst = self._buffer('small', (height, width) if c == 1 else (height, width, c),
                           src.dtype)
        out = cv2.resize(src, (width, height), dst=dst, interpolation=interp)
        return out if out.ndim == 3 else out[:, :, None]

    def _fit(self, region: np.ndarray) -> np.ndarray:
        spec = self.spec
        h, w = region.shape[:2]
        if spec.resize == 'stretch':
            return self._scaled(region, spec.width, spec.height)
        nw, nh, x0, y0 = _letterbox_geometry(w, h, spec.width, spec.height)
        inner = self._scaled(region, nw, nh)
        key = (nw, nh, region.shape[2], inner.dtype.str)
        canvas = self._canvas.get(key)
        if canvas is None:
            # The bars stay zero between calls: only the inner rectangle is rewritten.
            canvas = np.zeros((spec.height, spec.width, region.shape[2]), inner.dtype)
            self._canvas = {key: canvas}
        canvas[y0:y0 + nh, x0:x0 + nw] = inner
        return canvas

    def _affine(self, src: np.ndarray, dst: np.ndarray, k: int, unit: float) -> None:
        if self._identity:
            np.copyto(dst, src, casting='unsafe')
            return
        gain = np.float32(self._gain[k] * unit)
        offset = np.float32(self._offset[k])
        if self._scratch is None:
            np.multiply(src, gain, out=dst, casting='unsafe')
            np.subtract(dst, offset, out=dst)
        else:
            np.multiply(src, gain, out=self._scratch, casting='unsafe')
            np.subtract(self._scratch, offset, out=dst, casting='same_kind')


@dataclass(frozen=True)
class Prepared:
    """A frame already turned into its model tensor on arrival, or the error it raised."""

    tensor: Optional[np.ndarray]
    error: Optional[FrameError] = None


class CameraPipeline:
    """One contract camera: a RawFrame or CompressedFrame to its model tensor."""

    def __init__(self, spec: CameraSpec, fast_jpeg: bool = False) -> None:
        """Preprocess for ``spec``; ``fast_jpeg`` allows reduced-size JPEG decoding."""
        self.spec = spec
        self.preprocess = Preprocessor(spec)
        self.fast_jpeg = fast_jpeg

    def prepare(self, item: Any) -> Prepared:
        """Return the frame's tensor in a new array of its own (or the FrameError)."""
        out = np.empty(self.spec.tensor_shape(), dtype=np.dtype(self.spec.dtype))
        try:
            return Prepared(self(item, out))
        except FrameError as exc:
            return Prepared(None, exc)

    def __call__(self, item: Any, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Return the tensor for one frame item; raise FrameError.

        Written into ``out`` when given, else into a buffer reused by every call. A
        :class:`Prepared` item is returned as it is (or its error raised).
        """
        if isinstance(item, Prepared):
            if item.error is not None:
                raise item.error
            return item.tensor
        if isinstance(item, RawFrame):
            view = frame_view(item.data, item.height, item.width, item.encoding, item.step,
                              item.is_bigendian)
            return self.preprocess(view, item.encoding, out=out)
        if isinstance(item, CompressedFrame):
            reduction = 1
            if self.fast_jpeg:
                info = jpeg_header(item.data)
                if info is not None:
                    reduction = self.preprocess.max_reduction(info[0], info[1])
            img, encoding = decode_compressed(item.data, item.format, reduction)
            return self.preprocess(img, encoding, reduction, out=out)
        raise FrameError('unsupported_encoding', f'not a frame: {type(item).__name__}')


class TensorBuilder:
    """Turn the frames of one observation into model input tensors, cameras in parallel.

    With ``threads`` > 1 every camera but the first runs on a small thread pool while the
    caller's thread does the first; OpenCV's resize and decode and numpy's arithmetic release
    the GIL, so N cameras cost about as much as the slowest one on N cores. Frames already
    :class:`Prepared` on arrival are used as they are.
    """

    def __init__(self, specs: Sequence[CameraSpec], threads: int = 1,
                 fast_jpeg: bool = False) -> None:
        """Build one pipeline per camera; ``threads`` <= 1 runs them one after the other."""
        self.pipelines = {s.name: CameraPipeline(s, fast_jpeg) for s in specs}
        workers = min(max(threads, 1), len(self.pipelines)) - 1
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix='preprocess') \
            if workers > 0 else None

    def __call__(self, frames: Mapping[str, Any]) -> Dict[str, np.ndarray]:
        """Return {camera: tensor}; raise FrameError naming the first camera that failed."""
        names = list(self.pipelines)
        # Frames prepared on arrival are ready; only the others go to the thread pool.
        work = [n for n in names if not isinstance(frames[n], Prepared)]
        futures = {}
        if self._pool is not None:
            futures = {n: self._pool.submit(self.pipelines[n], frames[n]) for n in work[1:]}
        out: Dict[str, np.ndarray] = {}
        error: Optional[FrameError] = None
        for n in names:
            try:
                out[n] = futures[n].result() if n in futures else self.pipelines[n](frames[n])
            except FrameError as exc:
                if error is None:
                    error = FrameError(exc.reason, f'camera {n!r}: {exc.detail}')
        if error is not None:
            raise error
        return out

    def close(self) -> None:
        """Stop the worker threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _reference_resize(img: np.ndarray, width: int, height: int,
                      spec: CameraSpec) -> np.ndarray:
    interp = _interpolation(spec, img.shape[1], img.shape[0], width, height)
    if interp == cv2.INTER_AREA and img.dtype == np.uint8 and spec.dtype != 'uint8':
        img = img.astype(np.float64)      # area shrinks average in float, unrounded
    return _resize(img, width, height, interp)


def reference_preprocess(frame: np.ndarray, encoding: str, spec: CameraSpec) -> np.ndarray:
    """Slow, obvious reference of :class:`Preprocessor` for tests and benchmarks.

    Converts at full resolution first (colour order, luma, depth in metres, in float64),
    then crops, resizes and normalises, with none of the fast path's buffer reuse.
    """
    order = PIXEL_FORMATS[encoding][2]
    img = np.array(frame, dtype=frame.dtype.newbyteorder('='))   # a private native copy
    if spec.crop is not None:
        x, y, w, h = spec.crop
        img = img[y:y + h, x:x + w]
    if spec.is_depth:
        metres = img[:, :, 0].astype(np.float64)
        if img.dtype == np.uint16:
            metres *= spec.depth_scale
        metres[~np.isfinite(metres) | (metres < 0)] = 0.0
        img = metres[:, :, None]
    elif spec.encoding == 'mono8':
        if order != 'L':
            rgb = img[:, :, [order.index(c) for c in 'RGB']]
            img = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)[:, :, None]
    else:
        want = 'RGB' if spec.encoding == 'rgb8' else 'BGR'
        img = np.ascontiguousarray(img[:, :, [order.index(c) for c in want]])
    h, w = img.shape[:2]
    if spec.resize == 'pad':
        nw, nh, x0, y0 = _letterbox_geometry(w, h, spec.width, spec.height)
        inner = _reference_resize(img, nw, nh, spec)
        canvas = np.zeros((spec.height, spec.width, img.shape[2]), inner.dtype)
        canvas[y0:y0 + nh, x0:x0 + nw] = inner
        img = canvas
    else:
        img = _reference_resize(img, spec.width, spec.height, spec)
    x = img.astype(np.float64)
    if spec.dtype != 'uint8':
        x = (x * spec.scale - np.asarray(spec.mean)) / np.asarray(spec.std)
    if spec.layout == 'NCHW':
        x = x.transpose(2, 0, 1)
    return x[None].astype(spec.dtype)
