"""Closed loop through the full ROS stack: sim_node + policy_node + safety_controller.

Three seeded episodes the model never saw in training, the bundled model, real DDS between
three OS processes, real MuJoCo physics and rendering.
"""

import json
import os

import numpy as np
import pytest

from wam_runtime.demo import reach_demo
from wam_runtime.processes import REPO_ROOT

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_three_unseen_episodes_succeed_within_limits(tmp_path):
    summary = reach_demo.run([20000, 20001, 20002], str(tmp_path),
                             os.path.join(REPO_ROOT, 'config', 'reference_arm.yaml'),
                             os.path.join(REPO_ROOT, 'models', 'reference_reach.onnx'),
                             verbose=False)
    assert summary['episodes'] == 3
    assert summary['successes'] >= 2, json.dumps(summary['per_episode'], indent=1)
    assert summary['commands_published'] > 300
    assert summary['commands_outside_limits'] == 0
    assert all(summary['processes_alive_at_end'].values())
    assert all(code == 0 for code in summary['exit_codes'].values()), summary['exit_codes']
    lat = summary['latency_camera_stamp_to_gated_command_ms']
    assert lat['n'] > 20 and np.isfinite(lat['p50'])
    assert os.path.getsize(tmp_path / 'demo.png') > 10_000
    with open(tmp_path / 'summary.json', encoding='utf-8') as f:
        assert json.load(f)['successes'] == summary['successes']
