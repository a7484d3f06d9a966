"""The in-process evaluator: the nodes' policy and safety runtimes on the simulator's clock."""

import json
import os

import numpy as np
import pytest
import yaml

os.environ.setdefault('MUJOCO_GL', 'egl')

from wam_runtime.processes import REPO_ROOT  # noqa: E402 - after MUJOCO_GL
from wam_runtime.sim import evaluate  # noqa: E402 - after MUJOCO_GL
from wam_runtime.sim.world import HOME_Q, JOINT_NAMES  # noqa: E402

REPO = REPO_ROOT
MODEL = os.path.join(REPO, 'models', 'reference_reach.onnx')
CONFIG = os.path.join(REPO, 'config', 'reference_arm.yaml')
URDF = os.path.join(REPO, 'config', 'reference_arm.urdf')
SEEDS = [100000, 100001]


def _episodes(evaluator, seeds, timeout_s, stop_on_success=True):
    """Run episodes; return their results and the commands of each (world joint order)."""
    results, commands = [], []
    with evaluator.world() as world:
        for seed in seeds:
            seen = []
            results.append(evaluate.run_episode(
                world, evaluator, seed, timeout_s=timeout_s, stop_on_success=stop_on_success,
                on_command=lambda t_ns, q: seen.append((t_ns, q.copy()))))
            commands.append(seen)
    return results, commands


def _tightened_config(tmp_path, lower, upper):
    with open(CONFIG, encoding='utf-8') as f:
        doc = yaml.safe_load(f)
    safety = doc['/**/safety_controller']['ros__parameters']
    safety.update(urdf_path=URDF, lower_limits_rad=list(lower), upper_limits_rad=list(upper))
    path = tmp_path / 'tight.yaml'
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def _assert_within(commands, evaluator, lower=None, upper=None):
    """Every command inside the position limits, every step inside the velocity limits."""
    limits, period_s = evaluator.safety_setup.config.limits, evaluator.control_period_s
    lower = limits.lower if lower is None else lower
    upper = limits.upper if upper is None else upper
    order = [limits.joint_names.index(n) for n in JOINT_NAMES]
    vmax = np.asarray(limits.max_velocity)[order]
    for seen in commands:
        assert seen, 'the safety runtime issued no command'
        q = np.array([c for _, c in seen])
        assert np.all(q >= np.asarray(lower) - 1e-9), q.min(axis=0)
        assert np.all(q <= np.asarray(upper) + 1e-9), q.max(axis=0)
        stamps = np.array([t for t, _ in seen])
        assert np.all(np.diff(stamps) == round(period_s * 1e9))
        step = np.abs(np.diff(q, axis=0)).max(axis=0)
        assert np.all(step <= vmax * period_s * (1 + 1e-6) + 1e-12), step / period_s


def test_short_evaluation_succeeds_with_the_bundled_model():
    result = evaluate.evaluate(MODEL, SEEDS, timeout_s=4.0)
    assert result['success_rate'] == 1.0, result['per_episode']
    assert result['failed_seeds'] == []
    assert 0.0 < result['mean_time_to_success_s'] < 4.0
    assert result['policy_hz'] == 10.0 and result['control_hz'] == 100.0
    assert result['config'] == CONFIG
    for ep in result['per_episode']:
        assert ep['min_distance_m'] < 0.02
        # about one inference per 100 ms of the episode, every chunk delivered
        expected = ep['time_to_success_s'] * 10.0
        assert abs(ep['inferences'] - expected) <= 2, ep
        assert ep['chunks_delivered'] == ep['inferences']
        assert ep['policy_counters'] == {}
        stops = set(ep['events']) - {'acceleration_limit', 'jerk_limit', 'velocity_limit'}
        assert not stops, ep['events']


def test_commands_stay_inside_the_configured_limits():
    evaluator = evaluate.SimEvaluator(MODEL)
    _, commands = _episodes(evaluator, SEEDS, timeout_s=2.5)
    _assert_within(commands, evaluator)


def test_the_safety_runtime_gates_the_policy_to_tightened_limits(tmp_path):
    # The reach swings joint_2 up from -0.25 rad past 0.5 rad and joint_3 down from 2.0 rad
    # below 1.5 rad: limits at 0.3 and 1.6 rad cut both motions short.
    lower = [-2.75, -1.95, 1.6, -2.15, -2.75, -2.15]
    upper = [2.75, 0.3, 2.55, 2.15, 2.75, 2.15]
    assert np.all(HOME_Q > np.array(lower)) and np.all(HOME_Q < np.array(upper))
    config = _tightened_config(tmp_path, lower, upper)
    evaluator = evaluate.SimEvaluator(MODEL, config_path=config)
    limits = evaluator.safety_setup.config.limits
    assert limits.upper[1] == pytest.approx(0.3) and limits.lower[2] == pytest.approx(1.6)
    results, commands = _episodes(evaluator, SEEDS, timeout_s=2.5, stop_on_success=False)
    _assert_within(commands, evaluator, lower, upper)
    q = np.array([c for seen in commands for _, c in seen])
    assert q[:, 1].max() > 0.25 and q[:, 2].min() < 1.65     # it did press against them
    assert all(r['events'].get('position_limit', 0) > 0 for r in results), results


def test_same_seeds_same_inferences():
    runs = [evaluate.evaluate(MODEL, SEEDS, timeout_s=1.5, stop_on_success=False)
            for _ in range(2)]
    first, second = ([(e['seed'], e['inferences'], e['commands'], e['events'],
                       e['final_distance_m']) for e in r['per_episode']] for r in runs)
    assert first == second
    assert runs[0]['inferences'] == runs[1]['inferences'] == 2 * 15


def test_latency_delays_every_chunk():
    evaluator = evaluate.SimEvaluator(MODEL, latency_s=0.05)
    results, commands = _episodes(evaluator, SEEDS[:1], timeout_s=1.0, stop_on_success=False)
    (ep,) = results
    # inferences at 0, 0.1 .. 0.9 s, each chunk delivered 50 ms later; the gate holds the
    # arm where it is from the first tick until the first chunk comes
    assert ep['inferences'] == 10 and ep['chunks_delivered'] == 10
    (seen,) = commands
    assert seen[0][0] == 0
    for t_ns, q in seen[:5]:
        np.testing.assert_allclose(q, HOME_Q, atol=1e-12)
    assert np.abs(seen[-1][1] - HOME_Q).max() > 0.05
    _assert_within(commands, evaluator)


def test_command_line(tmp_path, capsys):
    out = tmp_path / 'result.json'
    assert evaluate.main(['--model', MODEL, '--episodes', '1', '--timeout', '0.3',
                          '--full', '--json', str(out)]) == 0
    assert 'success 0.0% over 1 episodes' in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert saved['episodes'] == 1 and saved['per_episode'][0]['inferences'] == 3
    assert evaluate.main(['--model', MODEL, '--config', str(tmp_path / 'none.yaml'),
                          '--episodes', '1']) == evaluate.EXIT_CONFIG
    assert 'cannot read' in capsys.readouterr().err
