"""Frame items to model tensors: one pipeline per contract camera, cameras in parallel.

OpenCV's decode and resize and numpy's arithmetic release the GIL, so ``TensorBuilder``
turns several cameras into tensors in parallel threads.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np

from wam_runtime.core.contract import CameraSpec
from wam_runtime.core.image.decode import decode_compressed, jpeg_header
from wam_runtime.core.image.formats import CompressedFrame, frame_view, FrameError, RawFrame
from wam_runtime.core.image.preprocess import Preprocessor


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
