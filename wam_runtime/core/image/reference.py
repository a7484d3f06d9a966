"""The slow, obvious reference of the preprocessing chain, for tests and benchmarks."""

import cv2
import numpy as np

from wam_runtime.core.contract import CameraSpec
from wam_runtime.core.image.formats import PIXEL_FORMATS
from wam_runtime.core.image.resize import choose_interpolation, letterbox_geometry


def _reference_resize(img: np.ndarray, width: int, height: int,
                      spec: CameraSpec) -> np.ndarray:
    interp = choose_interpolation(spec, img.shape[1], img.shape[0], width, height)
    if interp == cv2.INTER_AREA and img.dtype == np.uint8 and spec.dtype != 'uint8':
        img = img.astype(np.float64)      # area shrinks average in float, unrounded
    if img.shape[1] == width and img.shape[0] == height:
        return img
    out = cv2.resize(img, (width, height), interpolation=interp)
    return out if out.ndim == 3 else out[:, :, None]


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
        nw, nh, x0, y0 = letterbox_geometry(w, h, spec.width, spec.height)
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
