"""World-model monitor: prediction error, the speed governor, and surprise on unseen images."""

import math

import numpy as np
import onnx
import pytest

from wam_runtime.core.contract import CameraSpec
from wam_runtime.core.image import Preprocessor
from wam_runtime.core.inference import OnnxPolicy
from wam_runtime.core.surprise import (
    INVALID, MISSING, NOMINAL, prediction_error, SLOW, SpeedDecision, STOP, SurpriseGovernor,
    SurpriseMonitor, TIMEOUT)
from wam_runtime.testing.model_gen import build_model


def test_prediction_error_metrics():
    p, o = np.array([1.0, 2.0, 2.0]), np.array([1.0, 2.0, 4.0])
    assert prediction_error(p, o, 'mse') == pytest.approx(4 / 3)
    assert prediction_error(p, o, 'relative') == pytest.approx(2 / math.sqrt(21))
    assert prediction_error(o, o * 3, 'cosine') == pytest.approx(0.0, abs=1e-12)
    assert prediction_error(np.array([1.0, 0]), np.array([0, 1.0]), 'cosine') == 1.0
    with pytest.raises(ValueError, match='sizes differ'):
        prediction_error(p, o[:2])
    with pytest.raises(ValueError, match='metric'):
        prediction_error(p, o, 'l7')


def test_monitor_compares_the_previous_prediction_with_the_current_embedding():
    mon = SurpriseMonitor('mse', max_gap_s=0.5)
    assert mon.update(0.0, np.zeros(3), np.ones(3)) is None        # nothing to compare yet
    assert mon.update(0.1, np.ones(3), np.full(3, 2.0)) == 0.0      # predicted ones, saw ones
    assert mon.update(0.2, np.zeros(3), np.zeros(3)) == 4.0         # predicted 2, saw 0
    assert mon.last == 4.0 and mon.last_gap_s == pytest.approx(0.1)
    assert mon.stats.total == 2
    assert mon.update(1.0, np.ones(3), np.ones(3)) is None          # too long a gap
    assert mon.update(0.9, np.ones(3), np.ones(3)) is None          # time went back
    assert mon.update(1.0, None, None) is None                      # no world model output
    with pytest.raises(ValueError, match='metric'):
        SurpriseMonitor('l7')


def test_governor_maps_surprise_to_a_speed_scale():
    gov = SurpriseGovernor(slow_threshold=0.1, stop_threshold=0.3, min_scale=0.2,
                           recovery_s=0.0)
    assert gov.raw_scale(0.0).scale == 1.0
    assert gov.raw_scale(0.05).reason == NOMINAL
    assert gov.raw_scale(0.1).scale == pytest.approx(1.0)
    mid = gov.raw_scale(0.2)
    assert mid.reason == SLOW and mid.scale == pytest.approx(0.6)
    assert gov.raw_scale(0.2999).scale == pytest.approx(0.2, abs=1e-3)
    assert gov.raw_scale(0.3).scale == 0.0 and gov.raw_scale(0.3).reason == STOP
    assert gov.raw_scale(7.0).reason == STOP
    for bad in (math.nan, math.inf, -0.1):
        assert gov.raw_scale(bad) == SpeedDecision(0.0, INVALID)
    # Monotone: more surprise never means more speed.
    values = np.linspace(0, 0.5, 501)
    scales = [gov.raw_scale(float(v)).scale for v in values]
    assert all(b <= a for a, b in zip(scales, scales[1:]))
    assert all(0.0 <= s <= 1.0 for s in scales)


def test_governor_drops_at_once_and_recovers_after_recovery_s():
    gov = SurpriseGovernor(0.1, 0.3, recovery_s=0.5)
    assert gov.scale(0.0).scale == 1.0                      # no timeout: nominal before data
    assert gov.update(0.0, 1.0).scale == 1.0
    assert gov.update(0.5, 1.1).reason == STOP              # drops immediately
    assert gov.update(0.0, 1.2).reason == STOP              # still within recovery_s
    assert gov.update(0.0, 1.55).reason == STOP
    assert gov.update(0.0, 1.61).scale == 1.0               # low for > 0.5 s: recovered
    gov.update(0.2, 2.0)
    assert gov.scale(2.4).reason == SLOW
    assert gov.scale(10.0).reason == SLOW                   # the latest value still counts


def test_governor_fails_closed_on_timeout_and_before_the_first_value():
    gov = SurpriseGovernor(0.1, 0.3, timeout_s=0.5)
    assert gov.scale(0.0) == SpeedDecision(0.0, MISSING)
    assert gov.update(0.0, 1.0).scale == 1.0
    assert gov.scale(1.4).scale == 1.0
    d = gov.scale(1.6)
    assert d.scale == 0.0 and d.reason == TIMEOUT


@pytest.mark.parametrize('kwargs,field', [
    ({'slow_threshold': -1, 'stop_threshold': 1}, 'slow_threshold'),
    ({'slow_threshold': 0.5, 'stop_threshold': 0.2}, 'stop_threshold'),
    ({'slow_threshold': 0.1, 'stop_threshold': math.nan}, 'stop_threshold'),
    ({'slow_threshold': 0.1, 'stop_threshold': 0.2, 'min_scale': 1.5}, 'min_scale'),
    ({'slow_threshold': 0.1, 'stop_threshold': 0.2, 'recovery_s': -1}, 'recovery_s'),
    ({'slow_threshold': 0.1, 'stop_threshold': 0.2, 'timeout_s': 0}, 'timeout_s'),
    ({'slow_threshold': 0.0, 'stop_threshold': None}, 'slow_threshold'),
    ({'slow_threshold': math.inf, 'stop_threshold': None}, 'slow_threshold'),
])
def test_governor_refuses_bad_settings_naming_them(kwargs, field):
    with pytest.raises(ValueError) as info:
        SurpriseGovernor(**kwargs)
    assert str(info.value).startswith(field + ':')


def test_governor_without_a_stop_threshold_slows_down_and_never_stops():
    gov = SurpriseGovernor(slow_threshold=0.1, stop_threshold=None, min_scale=0.4,
                           recovery_s=0.0)
    assert gov.raw_scale(0.05) == SpeedDecision(1.0, NOMINAL)
    for s in (0.1, 0.3, 7.0, 1e12):
        assert gov.raw_scale(s) == SpeedDecision(0.4, SLOW), s
    assert gov.raw_scale(math.nan).reason == INVALID           # still fails closed
    t = 0.0
    for s in np.linspace(0.0, 1e6, 200):
        t += 0.01
        decision = gov.update(float(s), t)
        assert decision.reason != STOP and decision.scale >= 0.4
    assert gov.scale(t).reason == SLOW
    assert gov.update(0.0, t + 0.01).reason == NOMINAL          # recovers (recovery_s 0)


def test_build_safety_configures_a_slow_down_threshold_alone():
    from wam_runtime.core.safety_config import build_safety
    setup = build_safety({'joint_names': ['a'], 'lower_limits_rad': [-1.0],
                          'upper_limits_rad': [1.0], 'max_velocity_rad_s': [1.0],
                          'surprise_slow_threshold': 0.5, 'surprise_min_scale': 0.3})
    gov = setup.governor
    assert gov is not None and gov.stop_threshold is None
    assert gov.update(100.0, 1.0) == SpeedDecision(0.3, SLOW)


# --------------------------------------------------------------------------- end to end

def _scene(h=120, w=160, shift=0):
    y, x = np.mgrid[0:h, 0:w]
    img = np.dstack([110 + 60 * np.sin((x + shift) / 13.0), 120 + 50 * np.cos(y / 11.0),
                     np.full((h, w), 128.0)])
    return np.clip(img, 0, 255).astype(np.uint8)


def _shifted(img, dx):
    """Translate the picture right by ``dx`` pixels; what moves in is black (unseen)."""
    out = np.zeros_like(img)
    out[:, dx:] = img[:, :-dx]
    return out


def test_surprise_rises_when_the_camera_shows_something_unseen(tmp_path):
    path = str(tmp_path / 'wm.onnx')
    onnx.save(build_model(world_model=True, world_model_range=(0.3, 0.7)), path)
    policy = OnnxPolicy(path)
    pre = Preprocessor(CameraSpec('scene', 'image_scene', 64, 64))
    mon = SurpriseMonitor('mse', max_gap_s=1.0)
    q = np.zeros(6)

    def step(t, img):
        out = policy.run({'scene': pre(img, 'rgb8')}, q)
        return mon.update(t, out.embedding, out.predicted_embedding)

    nominal = [step(0.1 * i, _scene(shift=i)) for i in range(10)]   # a slowly moving scene
    nominal = [s for s in nominal if s is not None]
    assert len(nominal) == 9 and max(nominal) < 1e-4
    blank = [step(1.0 + 0.1 * i, np.zeros((120, 160, 3), np.uint8)) for i in range(5)]
    shifted = [step(2.0 + 0.1 * i, _shifted(_scene(), 100)) for i in range(5)]
    back = [step(3.0 + 0.1 * i, _scene()) for i in range(5)]
    assert blank[0] > 100 * max(nominal)             # the change itself
    assert min(blank[1:]) > 0.01                     # and it stays up while out of range
    assert min(shifted[1:]) > 0.001 > 10 * max(nominal)
    assert back[-1] < 1e-4                           # back to normal once the scene is
    gov = SurpriseGovernor(slow_threshold=0.001, stop_threshold=0.05)
    assert gov.raw_scale(max(nominal)).scale == 1.0
    assert gov.raw_scale(blank[2]).reason == STOP
    assert gov.raw_scale(shifted[2]).reason == SLOW
