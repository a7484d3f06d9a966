"""Frame views (zero copy, row padding) and preprocessing against a reference chain."""

import array

import numpy as np
import pytest

from wam_runtime.core.contract import CameraSpec
from wam_runtime.core.image import frame_view, FrameError, Preprocessor, reference_preprocess

RNG = np.random.default_rng(7)


def _rgb(h=48, w=64):
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_view_shares_memory_with_message_buffer():
    img = _rgb()
    buf = array.array('B', img.tobytes())     # what rclpy gives for Image.data
    view = frame_view(buf, 48, 64, 'rgb8', 64 * 3)
    assert np.shares_memory(view, np.frombuffer(buf, np.uint8))
    np.testing.assert_array_equal(view, img)


def test_view_honours_step_padding():
    img = _rgb(5, 7)
    padded = np.zeros((5, 7 * 3 + 11), np.uint8)
    padded[:, :21] = img.reshape(5, 21)
    padded[:, 21:] = 255                      # garbage in the padding
    view = frame_view(padded.tobytes(), 5, 7, 'rgb8', 32)
    np.testing.assert_array_equal(view, img)


@pytest.mark.parametrize('args,reason', [
    ((b'\0' * 100, 10, 10, 'rgb8', 30), 'bad_size'),
    ((b'\0' * 300, 10, 10, 'rgb8', 20), 'bad_size'),
    ((b'\0' * 300, 10, 10, 'yuv422', 30), 'unsupported_encoding'),
    ((b'', 0, 10, 'rgb8', 30), 'bad_size'),
])
def test_bad_frames_raise_with_reason(args, reason):
    with pytest.raises(FrameError) as info:
        frame_view(*args)
    assert info.value.reason == reason


def _spec(**kw):
    base = {'name': 'cam', 'input': 'image_cam', 'height': 32, 'width': 40}
    base.update(kw)
    return CameraSpec(**base)


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'rgba8', 'bgra8'])
@pytest.mark.parametrize('layout', ['NCHW', 'NHWC'])
@pytest.mark.parametrize('resize', ['stretch', 'pad'])
def test_preprocess_matches_reference(encoding, layout, resize):
    rgb = _rgb(60, 80)
    frame = {'rgb8': rgb, 'bgr8': rgb[:, :, ::-1],
             'rgba8': np.dstack([rgb, np.full(rgb.shape[:2], 9, np.uint8)]),
             'bgra8': np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 9, np.uint8)])}[
                 encoding]
    frame = np.ascontiguousarray(frame)
    spec = _spec(layout=layout, resize=resize, scale=1 / 255, mean=(0.485, 0.456, 0.406),
                 std=(0.229, 0.224, 0.225))
    got = Preprocessor(spec)(frame, encoding)
    want = reference_preprocess(frame, encoding, spec)
    assert got.shape == spec.tensor_shape() and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5)
    # Colour order is honoured: the same scene in bgr8 gives the same tensor as rgb8.
    np.testing.assert_allclose(got, reference_preprocess(rgb, 'rgb8', spec), atol=1e-5)


def test_pad_keeps_aspect_ratio_with_black_bars():
    frame = np.full((20, 80, 3), 255, np.uint8)        # 4:1 into a square
    out = Preprocessor(_spec(height=40, width=40, resize='pad', layout='NHWC'))(frame, 'rgb8')
    rows = out[0, :, 20, 0]
    assert rows[:15].max() == 0 and rows[-15:].max() == 0 and rows[20] == pytest.approx(1.0)


def test_mono_model_from_colour_and_mono_frames():
    spec = _spec(encoding='mono8', mean=(0.0,), std=(1.0,))
    grey = RNG.integers(0, 256, (32, 40, 1), dtype=np.uint8)
    out = Preprocessor(spec)(grey, 'mono8')
    np.testing.assert_allclose(out[0, 0], grey[:, :, 0] / 255.0, atol=1e-6)
    rgb = np.repeat(grey, 3, axis=2)
    np.testing.assert_allclose(Preprocessor(spec)(rgb, 'rgb8'), out, atol=1 / 255 + 1e-6)


def test_colour_model_refuses_mono_frames():
    with pytest.raises(FrameError) as info:
        Preprocessor(_spec())(np.zeros((32, 40, 1), np.uint8), 'mono8')
    assert info.value.reason == 'wrong_encoding'


def test_output_buffer_is_reused():
    pre = Preprocessor(_spec())
    a = pre(_rgb(), 'rgb8')
    b = pre(_rgb(), 'rgb8')
    assert a is b
