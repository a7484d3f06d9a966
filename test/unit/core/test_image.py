"""Frame views, decoding and preprocessing against a reference chain, for every encoding."""

import array
import math
import struct
import tracemalloc

import cv2
from hypothesis import given, settings, strategies as st
import numpy as np
import pytest

from wam_runtime.core.contract import CameraSpec
from wam_runtime.core.image import (
    area_weights, AreaShrink, CameraPipeline, CompressedFrame, decode_compressed, frame_view,
    FrameError, jpeg_header, Preprocessor, RawFrame, reference_preprocess, TensorBuilder)

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


# --------------------------------------------------------------------------- every encoding

def _scene(h=60, w=80):
    """Return a smooth picture (JPEG-friendly) with structure in every channel."""
    y, x = np.mgrid[0:h, 0:w]
    r = 128 + 100 * np.sin(x / 9.0)
    g = 128 + 100 * np.cos(y / 7.0)
    b = 255.0 * (x + y) / (w + h)
    return np.clip(np.dstack([r, g, b]), 0, 255).astype(np.uint8)


def _depth_m(h=60, w=80):
    y, x = np.mgrid[0:h, 0:w]
    d = 0.5 + 2.0 * x / w + 0.3 * y / h
    d[5:9, 10:14] = 0.0                      # a hole: invalid depth
    return d


def _frame_bytes(arr, pad_bytes=0, big=False):
    """Serialise (H, W, C) like a driver would: optional row padding and byte order."""
    h = arr.shape[0]
    a = arr.astype(arr.dtype.newbyteorder('>' if big else '<'))
    rows = a.reshape(h, -1).view(np.uint8).reshape(h, -1)
    out = np.full((h, rows.shape[1] + pad_bytes), 0xAB, np.uint8)   # garbage padding
    out[:, :rows.shape[1]] = rows
    return array.array('B', out.tobytes()), rows.shape[1] + pad_bytes


def _encoded(encoding):
    """Return (frame array in `encoding`, the same scene as the reference sees it)."""
    rgb = _scene()
    alpha = np.full(rgb.shape[:2] + (1,), 77, np.uint8)
    depth = _depth_m()
    return {
        'rgb8': rgb, 'bgr8': rgb[:, :, ::-1], 'rgba8': np.dstack([rgb, alpha]),
        'bgra8': np.dstack([rgb[:, :, ::-1], alpha]),
        'mono8': cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[:, :, None],
        'mono16': np.round(depth * 1000).astype(np.uint16)[:, :, None],
        '16UC1': np.round(depth * 1000).astype(np.uint16)[:, :, None],
        '32FC1': np.where(depth > 0, depth, np.nan).astype(np.float32)[:, :, None],
    }[encoding]


MODEL_FOR = {'rgb8': 'rgb8', 'bgr8': 'bgr8', 'rgba8': 'rgb8', 'bgra8': 'bgr8',
             'mono8': 'mono8', 'mono16': '32FC1', '16UC1': '16UC1', '32FC1': '32FC1'}


@pytest.mark.parametrize('encoding', list(MODEL_FOR))
@pytest.mark.parametrize('big', [False, True])
def test_every_encoding_matches_the_reference_conversion(encoding, big):
    frame = np.ascontiguousarray(_encoded(encoding))
    data, step = _frame_bytes(frame, pad_bytes=6, big=big)
    model_enc = MODEL_FOR[encoding]
    channels = 3 if model_enc in ('rgb8', 'bgr8') else 1
    spec = _spec(encoding=model_enc, crop=(3, 2, 70, 52), mean=(0.25,) * channels,
                 std=(0.5,) * channels, scale=1 / 255 if channels == 3 or model_enc == 'mono8'
                 else 1.0)
    got = CameraPipeline(spec)(RawFrame(data, 60, 80, encoding, step, big))
    want = reference_preprocess(frame, encoding, spec)
    assert got.shape == spec.tensor_shape()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_view_reads_16_bit_and_float_frames_in_either_byte_order():
    d16 = _encoded('16UC1')
    for big in (False, True):
        data, step = _frame_bytes(d16, 2, big)
        view = frame_view(data, 60, 80, '16UC1', step, big)
        np.testing.assert_array_equal(view, d16)
    d32 = _encoded('32FC1')
    data, step = _frame_bytes(d32, 4, True)
    np.testing.assert_array_equal(frame_view(data, 60, 80, '32FC1', step, True), d32)
    # A native-order frame is still a view of the message buffer.
    data, step = _frame_bytes(d16)
    assert np.shares_memory(frame_view(data, 60, 80, 'mono16', step),
                            np.frombuffer(data, np.uint8))


def test_depth_is_metres_times_scale_and_holes_read_zero():
    spec = _spec(encoding='32FC1', height=60, width=80, mean=(0.0,), std=(1.0,), scale=1.0)
    pre = Preprocessor(spec)
    d16 = _encoded('16UC1')
    out16 = pre(d16, '16UC1').copy()
    metres = out16.copy()
    np.testing.assert_allclose(out16[0, 0], d16[:, :, 0] * 0.001, atol=1e-6)
    assert out16[0, 0, 6, 11] == 0.0
    d32 = _encoded('32FC1').copy()
    d32[0, 0] = np.inf
    d32[0, 1] = -1.0
    out32 = pre(d32, '32FC1')
    assert np.isfinite(out32).all() and out32[0, 0, 0, 0] == 0 and out32[0, 0, 0, 1] == 0
    out16[0, 0, 0, :2] = 0.0
    np.testing.assert_allclose(out32, out16, atol=1e-3)   # mm rounding of the same scene
    # depth_scale describes the 16-bit unit: 0.1 mm units give 10x less metres.
    tenth = Preprocessor(_spec(encoding='16UC1', height=60, width=80, mean=(0.0,),
                               std=(1.0,), scale=1.0, depth_scale=0.0001))(d16, '16UC1')
    np.testing.assert_allclose(tenth, metres / 10, atol=1e-6)


@pytest.mark.parametrize('model,frame', [('rgb8', 'mono8'), ('rgb8', '16UC1'),
                                         ('16UC1', 'rgb8'), ('mono8', '32FC1')])
def test_wrong_kind_of_frame_is_refused(model, frame):
    channels = 3 if model == 'rgb8' else 1
    spec = _spec(encoding=model, mean=(0.0,) * channels, std=(1.0,) * channels)
    with pytest.raises(FrameError) as info:
        Preprocessor(spec)(np.ascontiguousarray(_encoded(frame)), frame)
    assert info.value.reason == 'wrong_encoding'


def test_crop_is_applied_before_resize_and_checked_against_the_frame():
    frame = _scene()
    spec = _spec(height=20, width=30, crop=(40, 30, 30, 20), layout='NHWC')
    out = Preprocessor(spec)(frame, 'rgb8')
    np.testing.assert_allclose(out[0], frame[30:50, 40:70] / 255.0, atol=1e-6)
    with pytest.raises(FrameError) as info:
        Preprocessor(_spec(crop=(60, 0, 40, 40)))(frame, 'rgb8')
    assert info.value.reason == 'crop_outside_frame'


def test_model_colour_order_is_honoured():
    frame = _scene()
    rgb = Preprocessor(_spec(encoding='rgb8'))(frame, 'rgb8').copy()
    bgr = Preprocessor(_spec(encoding='bgr8'))(frame, 'rgb8')
    np.testing.assert_array_equal(bgr[0], rgb[0, ::-1])


def test_float16_and_uint8_tensors():
    frame = _scene()
    spec16 = _spec(dtype='float16', mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    out16 = Preprocessor(spec16)(frame, 'rgb8')
    assert out16.dtype == np.float16
    np.testing.assert_allclose(out16.astype(np.float32),
                               reference_preprocess(frame, 'rgb8', spec16), atol=5e-3)
    spec8 = _spec(dtype='uint8', layout='NHWC')
    out8 = Preprocessor(spec8)(frame, 'bgr8')
    assert out8.dtype == np.uint8
    np.testing.assert_array_equal(out8, reference_preprocess(frame, 'bgr8', spec8))


# --------------------------------------------------------------------------- copies

def test_at_most_one_frame_copy_between_message_and_tensor():
    """A 640x480 frame becomes a 224x224 tensor without any full-size intermediate."""
    frame = RNG.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    data = array.array('B', frame.tobytes())
    spec = _spec(height=224, width=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    pipe = CameraPipeline(spec)
    item = RawFrame(data, 480, 640, 'rgb8', 1920)
    pipe(item)                                   # first call allocates the output tensor
    tracemalloc.start()
    try:
        pipe(item)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < frame.nbytes / 20, peak        # scratch buffers are reused between calls
    np.testing.assert_allclose(pipe(item), reference_preprocess(frame, 'rgb8', spec),
                               atol=1e-5)
    # A byte-swapped depth frame costs exactly one (cropped) copy.
    d = RNG.integers(0, 5000, (480, 640, 1)).astype(np.uint16)
    ddata, step = _frame_bytes(d, big=True)
    dpipe = CameraPipeline(_spec(encoding='16UC1', height=224, width=224, mean=(0.0,),
                                 std=(1.0,)))
    ditem = RawFrame(ddata, 480, 640, '16UC1', step, True)
    dpipe(ditem)
    tracemalloc.start()
    try:
        dpipe(ditem)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < d.nbytes * 1.5, peak


# --------------------------------------------------------------------------- compressed

def _compressed(frame, ext, params=()):
    ok, data = cv2.imencode(ext, frame, list(params))
    assert ok
    return data.tobytes()


def test_jpeg_matches_raw_within_jpeg_tolerance():
    rgb = cv2.resize(_scene(), (640, 480), interpolation=cv2.INTER_LINEAR)
    jpeg = _compressed(rgb[:, :, ::-1], '.jpg', (cv2.IMWRITE_JPEG_QUALITY, 90))
    spec = _spec(height=96, width=128)
    raw = CameraPipeline(spec)(RawFrame(array.array('B', rgb.tobytes()), 480, 640, 'rgb8',
                                        1920)).copy()
    full = CameraPipeline(spec)(CompressedFrame(jpeg, 'rgb8; jpeg compressed bgr8')).copy()
    fast_pipe = CameraPipeline(spec, fast_jpeg=True)
    assert fast_pipe.preprocess.max_reduction(640, 480) == 4
    fast = fast_pipe(CompressedFrame(jpeg, 'jpeg'))
    for got in (full, fast):
        err = np.abs(got - raw) * 255
        assert err.mean() < 1.5 and err.max() < 12, (err.mean(), err.max())


def test_png_is_lossless_including_16_bit_depth_and_alpha():
    rgb = _scene()
    spec = _spec()
    raw = Preprocessor(spec)(rgb, 'rgb8').copy()
    png = _compressed(np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 9, np.uint8)]),
                      '.png')
    np.testing.assert_array_equal(CameraPipeline(spec)(CompressedFrame(png, 'png')), raw)
    d16 = _encoded('16UC1')
    dspec = _spec(encoding='16UC1', mean=(0.0,), std=(1.0,), scale=1.0)
    want = Preprocessor(dspec)(d16, '16UC1').copy()
    got = CameraPipeline(dspec)(CompressedFrame(_compressed(d16[:, :, 0], '.png'),
                                                '16UC1; png compressed mono16'))
    np.testing.assert_array_equal(got, want)
    # compressed_depth_image_transport: a 12-byte header, then the PNG.
    header = struct.pack('<iff', 0, 0.0, 0.0)
    got = CameraPipeline(dspec)(CompressedFrame(header + _compressed(d16[:, :, 0], '.png'),
                                                '16UC1; compressedDepth png'))
    np.testing.assert_array_equal(got, want)


def test_compressed_depth_32fc1_inverse_depth_quantisation():
    depth = _depth_m().astype(np.float32)
    a, b = 100.0, 10.0      # image_transport: v = a / d + b
    v = np.where(depth > 0, a / np.where(depth > 0, depth, 1) + b, 0)
    png = _compressed(np.round(v).astype(np.uint16), '.png')
    img, enc = decode_compressed(struct.pack('<iff', 0, a, b) + png,
                                 '32FC1; compressedDepth png')
    assert enc == '32FC1' and img.dtype == np.float32
    ok = depth > 0
    np.testing.assert_allclose(img[:, :, 0][ok], depth[ok], rtol=0.02)
    assert np.isnan(img[:, :, 0][~ok]).all()


def test_undecodable_payload_is_a_frame_error():
    with pytest.raises(FrameError) as info:
        CameraPipeline(_spec())(CompressedFrame(b'\xff\xd8garbage' * 10, 'jpeg'))
    assert info.value.reason == 'decode_failed'


def test_jpeg_header_reads_size_without_decoding():
    jpeg = _compressed(_scene(), '.jpg')
    assert jpeg_header(jpeg) == (80, 60, 3)
    assert jpeg_header(array.array('B', jpeg)) == (80, 60, 3)
    grey = _compressed(_scene()[:, :, 0], '.jpg')
    assert jpeg_header(grey) == (80, 60, 1)
    assert jpeg_header(_compressed(_scene(), '.png')) is None


# --------------------------------------------------------------------------- several cameras

def test_tensor_builder_parallel_equals_serial_and_names_the_bad_camera():
    rgb = cv2.resize(_scene(), (320, 240))
    specs = [_spec(name='front', input='image_front'),
             _spec(name='wrist', input='image_wrist', encoding='bgr8', crop=(0, 0, 200, 200)),
             _spec(name='depth', input='image_depth', encoding='32FC1', mean=(0.0,),
                   std=(1.0,), scale=1.0)]
    d16 = cv2.resize(_encoded('16UC1'), (320, 240), interpolation=cv2.INTER_NEAREST)
    frames = {
        'front': CompressedFrame(_compressed(rgb[:, :, ::-1], '.jpg'), 'jpeg'),
        'wrist': RawFrame(array.array('B', rgb.tobytes()), 240, 320, 'rgb8', 960),
        'depth': RawFrame(array.array('B', d16.tobytes()), 240, 320, '16UC1', 640),
    }
    serial, parallel = TensorBuilder(specs, 1), TensorBuilder(specs, 3)
    try:
        a = {k: v.copy() for k, v in serial(frames).items()}
        b = parallel(frames)
        assert set(a) == {'front', 'wrist', 'depth'}
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
        bad = dict(frames, wrist=RawFrame(b'\0' * 10, 240, 320, 'rgb8', 960))
        with pytest.raises(FrameError) as info:
            parallel(bad)
        assert info.value.reason == 'bad_size' and "'wrist'" in str(info.value)
    finally:
        serial.close()
        parallel.close()


def test_frames_prepared_on_arrival_give_the_same_tensors():
    rgb = cv2.resize(_scene(), (320, 240))
    specs = [_spec(name='front', input='image_front'),
             _spec(name='wrist', input='image_wrist', encoding='bgr8', resize='pad')]
    frames = {
        'front': CompressedFrame(_compressed(rgb[:, :, ::-1], '.png'), 'png'),
        'wrist': RawFrame(array.array('B', rgb.tobytes()), 240, 320, 'rgb8', 960),
    }
    builder = TensorBuilder(specs, 2)
    try:
        want = {k: v.copy() for k, v in builder(frames).items()}
        arrival = {s.name: CameraPipeline(s) for s in specs}
        prepared = {k: arrival[k].prepare(item) for k, item in frames.items()}
        again = arrival['wrist'].prepare(frames['wrist'])
        # Each prepared frame owns its tensor: preparing the next one leaves it alone.
        assert again.tensor is not prepared['wrist'].tensor
        for mixed in (prepared, dict(frames, wrist=prepared['wrist'])):
            got = builder(mixed)
            for k in want:
                np.testing.assert_array_equal(got[k], want[k])
        assert builder(prepared)['front'] is prepared['front'].tensor     # used as it is
        # A frame that failed on arrival fails the observation it is used in, by name.
        broken = arrival['wrist'].prepare(RawFrame(b'\0' * 10, 240, 320, 'rgb8', 960))
        assert broken.tensor is None and broken.error.reason == 'bad_size'
        with pytest.raises(FrameError) as info:
            builder(dict(prepared, wrist=broken))
        assert info.value.reason == 'bad_size' and "'wrist'" in str(info.value)
    finally:
        builder.close()


def test_preprocessor_writes_into_a_given_tensor():
    spec = _spec(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    pre = Preprocessor(spec)
    frame = _scene()
    want = pre(frame, 'rgb8').copy()
    out = np.full(spec.tensor_shape(), np.nan, np.float32)
    assert pre(frame, 'rgb8', out=out) is out
    np.testing.assert_array_equal(out, want)
    with pytest.raises(ValueError, match='out: camera'):
        pre(frame, 'rgb8', out=np.zeros((1, 3, 8, 8), np.float32))


# --------------------------------------------------------------------------- area shrink

@settings(max_examples=60, deadline=None)
@given(in_w=st.integers(1, 160), in_h=st.integers(1, 120), fw=st.floats(0.05, 1.0),
       fh=st.floats(0.05, 1.0), channels=st.sampled_from([1, 3, 4]))
def test_area_shrink_equals_opencv_area_resize(in_w, in_h, fw, fh, channels):
    out_w, out_h = max(1, int(in_w * fw)), max(1, int(in_h * fh))
    shrink = AreaShrink.plan(in_w, in_h, out_w, out_h, channels)
    if (out_w, out_h) == (in_w, in_h):
        assert shrink is None
        return
    if shrink is None:          # blocks too large for the matrix products
        assert max(in_w // math.gcd(in_w, out_w), in_h // math.gcd(in_h, out_h)) > 64
        return
    img = RNG.integers(0, 256, (in_h, in_w, channels)).astype(np.float32)
    want = cv2.resize(img.astype(np.float64), (out_w, out_h), interpolation=cv2.INTER_AREA)
    got = shrink(img)
    assert got.shape == (out_h, out_w, channels)
    np.testing.assert_allclose(got, want.reshape(got.shape), atol=2e-3)
    # 8-bit frames are converted tile by tile: the same result.
    np.testing.assert_array_equal(shrink(img.astype(np.uint8)), got)


def test_area_shrink_640x480_to_224x224_is_planned_and_exact(monkeypatch):
    shrink = AreaShrink.plan(640, 480, 224, 224, 3)
    assert shrink is not None and (shrink.p, shrink.q, shrink.r, shrink.t) == (15, 7, 20, 7)
    img = RNG.integers(0, 256, (480, 640, 3)).astype(np.float32)
    want = cv2.resize(img.astype(np.float64), (224, 224), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(shrink(img), want, atol=2e-4)
    # Tiles of 3 row blocks (32 blocks: a remainder of 2) over a strided crop view.
    monkeypatch.setattr(AreaShrink, 'TILE_BYTES', 3 * 15 * 640 * 3 * 4)
    big = RNG.integers(0, 256, (500, 700, 3), dtype=np.uint8)
    view = big[7:487, 30:670]
    tiled = AreaShrink.plan(640, 480, 224, 224, 3)
    assert tiled._tile.shape[0] == 3
    want8 = cv2.resize(view.astype(np.float64), (224, 224), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(tiled(view), want8, atol=2e-4)
    # Weights of every output sample sum to one; upscales and same size are not planned.
    np.testing.assert_allclose(area_weights(640, 224).sum(axis=1), 1.0)
    assert AreaShrink.plan(224, 224, 640, 480, 3) is None
    assert AreaShrink.plan(640, 480, 640, 480, 3) is None
    assert AreaShrink.plan(641, 480, 224, 224, 3) is None        # 641/224: a 641-pixel block
    with pytest.raises(ValueError):
        area_weights(10, 20)


@pytest.mark.parametrize('encoding', ['16UC1', '32FC1'])
@pytest.mark.parametrize('size', [(24, 30), (90, 120)])          # shrink and enlarge
def test_depth_auto_resize_is_nearest_and_never_invents_a_depth(encoding, size):
    # A step edge (0.5 m | 3 m) and a hole: every output pixel is one of the input depths.
    d = np.full((60, 80), 3.0)
    d[:, :37] = 0.5
    d[20:30, 50:60] = 0.0
    frame = (np.round(d * 1000).astype(np.uint16) if encoding == '16UC1'
             else np.where(d > 0, d, np.nan).astype(np.float32))[:, :, None]
    h, w = size
    spec = _spec(encoding=encoding, height=h, width=w, mean=(0.0,), std=(1.0,), scale=1.0)
    out = Preprocessor(spec)(frame, encoding)[0, 0]
    assert set(np.unique(np.round(out, 4))) <= {0.0, 0.5, 3.0}
    want = cv2.resize(np.where(d > 0, d, 0.0), (w, h), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_allclose(out, want, atol=1e-6)
    np.testing.assert_allclose(out[None, None], reference_preprocess(frame, encoding, spec),
                               atol=1e-6)


@pytest.mark.parametrize('interpolation', ['linear', 'area'])
def test_explicit_blending_depth_resize_treats_nan_and_inf_as_zero(interpolation):
    d = _depth_m().astype(np.float32)
    d[d == 0] = np.nan
    d[30, 40], d[31, 41], d[32, 42] = np.inf, -np.inf, -0.5     # REP 118: far, near; bad
    frame = d[:, :, None]
    spec = _spec(encoding='32FC1', height=24, width=30, mean=(0.0,), std=(1.0,), scale=1.0,
                 interpolation=interpolation)
    for data in (frame, frame.astype('>f4')):                    # either byte order
        out = Preprocessor(spec)(data, '32FC1')
        assert np.isfinite(out).all()
        np.testing.assert_allclose(out, reference_preprocess(frame, '32FC1', spec),
                                   atol=1e-5)


def test_pad_places_the_frame_in_the_middle_on_zero_pixels():
    # 30x10 into 16x16: 16x5 inside, 11 rows of bars: 5 above, 6 below (odd row at the bottom).
    frame = np.full((10, 30, 3), 200, np.uint8)
    spec = _spec(height=16, width=16, resize='pad', mean=(0.5, 0.5, 0.5),
                 std=(0.25, 0.25, 0.25))
    out = Preprocessor(spec)(frame, 'rgb8')[0, 0]
    inside = np.isclose(out, (200 / 255 - 0.5) / 0.25)
    assert inside.all(axis=1).tolist() == [False] * 5 + [True] * 5 + [False] * 6
    np.testing.assert_allclose(out[~inside], (0 - 0.5) / 0.25)     # the bars: pixel value 0
    depth = np.full((10, 30, 1), 1500, np.uint16)
    dspec = _spec(encoding='16UC1', height=16, width=16, resize='pad', mean=(0.0,),
                  std=(1.0,), scale=1.0)
    dout = Preprocessor(dspec)(depth, '16UC1')[0, 0]
    assert (dout[:5] == 0).all() and (dout[10:] == 0).all() and np.allclose(dout[5:10], 1.5)
