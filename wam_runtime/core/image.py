"""Camera frames: raw sensor bytes to numpy views, and views to model input tensors.

``frame_view`` never copies: it wraps the message buffer (``array.array`` from rclpy,
``bytes`` from a bag) in a strided numpy view that honours row padding (``step``).
``Preprocessor`` then writes the model tensor into a buffer it owns: the resized frame is
the only intermediate, and it is the size of the model input, not of the camera.
"""

from typing import Any, Dict, Tuple

import cv2
import numpy as np

from wam_runtime.core.contract import CameraSpec

# encoding -> (channels, channel order as indices into RGB, or None for mono)
ENCODINGS: Dict[str, Tuple[int, Tuple[int, ...]]] = {
    'rgb8': (3, (0, 1, 2)),
    'bgr8': (3, (2, 1, 0)),
    'rgba8': (4, (0, 1, 2)),
    'bgra8': (4, (2, 1, 0)),
    'mono8': (1, (0,)),
}


class FrameError(ValueError):
    """A frame cannot be used; ``reason`` is a short code for counters and diagnostics."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f'{reason}: {detail}')
        self.reason = reason


def frame_view(data: Any, height: int, width: int, encoding: str, step: int) -> np.ndarray:
    """Wrap raw image bytes as an (H, W, C) uint8 view without copying.

    Raises FrameError('unsupported_encoding' | 'bad_size') for frames that cannot be read.
    """
    if encoding not in ENCODINGS:
        raise FrameError('unsupported_encoding',
                         f'{encoding!r} (supported: {sorted(ENCODINGS)})')
    channels = ENCODINGS[encoding][0]
    if height <= 0 or width <= 0:
        raise FrameError('bad_size', f'{width}x{height}')
    row = width * channels
    if step < row:
        raise FrameError('bad_size', f'step {step} < width*channels {row}')
    buf = np.frombuffer(data, dtype=np.uint8)
    need = step * (height - 1) + row
    if buf.size < need:
        raise FrameError('bad_size', f'{buf.size} bytes for {width}x{height} {encoding} '
                                     f'with step {step} (need {need})')
    return np.lib.stride_tricks.as_strided(
        buf, shape=(height, width, channels), strides=(step, channels, 1), writeable=False)


def _resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    if img.shape[1] == width and img.shape[0] == height:
        return img
    shrink = width < img.shape[1] or height < img.shape[0]
    out = cv2.resize(img, (width, height),
                     interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return out if out.ndim == 3 else out[:, :, None]


class Preprocessor:
    """Turn (H, W, C) uint8 frames into the input tensor of one contract camera."""

    def __init__(self, spec: CameraSpec) -> None:
        """Allocate the output tensor once; every call writes into it."""
        self.spec = spec
        dtype = np.dtype(spec.dtype)
        self._out = np.zeros(spec.tensor_shape(), dtype=dtype)
        std = np.asarray(spec.std, dtype=np.float32)
        # x * scale - mean) / std  ==  x * (scale / std) - mean / std
        self._gain = (spec.scale / std).astype(np.float32)
        self._offset = (np.asarray(spec.mean, dtype=np.float32) / std).astype(np.float32)
        self._identity = spec.dtype == 'uint8'

    def __call__(self, frame: np.ndarray, encoding: str) -> np.ndarray:
        """Return the model tensor for ``frame`` (the returned array is reused per call)."""
        spec = self.spec
        if encoding not in ENCODINGS:
            raise FrameError('unsupported_encoding', repr(encoding))
        order = ENCODINGS[encoding][1]
        if spec.channels == 3 and len(order) == 1:
            raise FrameError('wrong_encoding',
                             f'camera {spec.name!r} needs colour, got {encoding}')
        if spec.channels == 1 and len(order) != 1:
            # Colour to mono: ITU-R BT.601 luma on the RGB channels.
            rgb = frame[:, :, list(order)].astype(np.float32)
            frame = (rgb @ np.array([0.299, 0.587, 0.114], np.float32))[:, :, None]
            frame = np.clip(frame + 0.5, 0, 255).astype(np.uint8)
            order = (0,)
        if spec.resize == 'pad':
            small = self._letterbox(frame)
        else:
            small = _resize(frame, spec.width, spec.height)
        # Channel reorder is a view; the cast + affine map below is the one pass over pixels.
        src = small[:, :, 2::-1] if order == (2, 1, 0) else small[:, :, :len(order)]
        if spec.layout == 'NCHW':
            src = src.transpose(2, 0, 1)
            gain, offset = self._gain[:, None, None], self._offset[:, None, None]
        else:
            gain, offset = self._gain, self._offset
        dst = self._out[0]
        if self._identity:
            np.copyto(dst, src)
        else:
            np.multiply(src, gain, out=dst, casting='unsafe')
            np.subtract(dst, offset, out=dst, casting='unsafe')
        return self._out

    def _letterbox(self, frame: np.ndarray) -> np.ndarray:
        spec = self.spec
        h, w = frame.shape[:2]
        s = min(spec.width / w, spec.height / h)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        inner = _resize(frame, nw, nh)
        canvas = np.zeros((spec.height, spec.width, frame.shape[2]), dtype=np.uint8)
        y0, x0 = (spec.height - nh) // 2, (spec.width - nw) // 2
        canvas[y0:y0 + nh, x0:x0 + nw] = inner
        return canvas


def reference_preprocess(frame: np.ndarray, encoding: str, spec: CameraSpec) -> np.ndarray:
    """Slow, obvious reference of :class:`Preprocessor` for tests and benchmarks."""
    order = list(ENCODINGS[encoding][1])
    img = np.ascontiguousarray(frame[:, :, order])
    if spec.channels == 1 and img.shape[2] == 3:
        luma = img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        img = np.clip(luma + 0.5, 0, 255).astype(np.uint8)[:, :, None]
    if spec.resize == 'pad':
        img = Preprocessor(spec)._letterbox(img)
    else:
        img = _resize(img, spec.width, spec.height)
    x = img.astype(np.float64) * spec.scale
    x = (x - np.asarray(spec.mean)) / np.asarray(spec.std)
    if spec.layout == 'NCHW':
        x = x.transpose(2, 0, 1)
    return x[None].astype(spec.dtype)
