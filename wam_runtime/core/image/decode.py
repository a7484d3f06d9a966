"""Compressed frames (JPEG, PNG, compressedDepth) to arrays, decoded with OpenCV.

OpenCV releases the GIL while it decodes, so several cameras decode in parallel threads.
A JPEG can be decoded at 1/2, 1/4 or 1/8 of its size in the DCT domain, several times
faster, when the model needs no more pixels than that.
"""

import struct
from typing import Any, Optional, Tuple

import cv2
import numpy as np

from wam_runtime.core.image.formats import FrameError

_REDUCED_COLOUR = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                   8: cv2.IMREAD_REDUCED_COLOR_8}
_REDUCED_GREY = {2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
                 8: cv2.IMREAD_REDUCED_GRAYSCALE_8}
# compressed_depth_image_transport prefixes the PNG with {int32 format; float quant[2]}.
_DEPTH_HEADER = struct.Struct('<iff')


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
