"""Frames to the input tensor of one contract camera, into buffers that are reused.

Crop is a view, the resized frame is the one model-sized intermediate, and the colour
order, the colour-to-luma conversion and the affine normalisation run on that small image.
At most one full-size copy is made, into a reused buffer: the float32 conversion of area
shrinks that :class:`AreaShrink` does not plan (OpenCV's general area resize is faster on
float32) or the byte swap of a frame whose byte order differs from this machine's.
"""

from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np

from wam_runtime.core.contract import CameraSpec
from wam_runtime.core.image.formats import FrameError, PIXEL_FORMATS
from wam_runtime.core.image.resize import AreaShrink, choose_interpolation, letterbox_geometry

_TO_GREY = {'RGB': cv2.COLOR_RGB2GRAY, 'BGR': cv2.COLOR_BGR2GRAY,
            'RGBA': cv2.COLOR_RGBA2GRAY, 'BGRA': cv2.COLOR_BGRA2GRAY}


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
            tw, th = letterbox_geometry(w, h, spec.width, spec.height)[:2]
        if choose_interpolation(spec, w, h, tw, th) != cv2.INTER_AREA:
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
        interp = choose_interpolation(self.spec, w, h, width, height)
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
        nw, nh, x0, y0 = letterbox_geometry(w, h, spec.width, spec.height)
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
