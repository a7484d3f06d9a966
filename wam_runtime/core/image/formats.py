"""Pixel formats and raw frames: sensor bytes to a numpy view, without copying.

``frame_view`` wraps the message buffer (``array.array`` from rclpy, ``bytes`` from a bag)
in a strided numpy view that honours row padding (``step``) and byte order
(``is_bigendian``).
"""

from dataclasses import dataclass
from typing import Any, Dict, Tuple

import numpy as np

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
