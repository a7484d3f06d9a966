"""Camera frames: raw or compressed sensor bytes to numpy views, and views to model tensors.

``formats``: pixel formats, frame items and the zero-copy ``frame_view``; ``decode``: JPEG,
PNG and compressedDepth with OpenCV; ``resize``: interpolation choice, letterbox geometry
and the matrix-product area shrink; ``preprocess``: one camera's tensor into reused buffers;
``pipeline``: frame items to tensors, cameras in parallel; ``reference``: the slow, obvious
chain the tests and benchmarks compare against.
"""

from wam_runtime.core.image.decode import decode_compressed, jpeg_header
from wam_runtime.core.image.formats import (
    CompressedFrame, frame_view, FrameError, PIXEL_FORMATS, RawFrame)
from wam_runtime.core.image.pipeline import CameraPipeline, Prepared, TensorBuilder
from wam_runtime.core.image.preprocess import Preprocessor
from wam_runtime.core.image.reference import reference_preprocess
from wam_runtime.core.image.resize import area_weights, AreaShrink

__all__ = [
    'area_weights', 'AreaShrink', 'CameraPipeline', 'CompressedFrame', 'decode_compressed',
    'frame_view', 'FrameError', 'jpeg_header', 'PIXEL_FORMATS', 'Prepared', 'Preprocessor',
    'RawFrame', 'reference_preprocess', 'TensorBuilder',
]
