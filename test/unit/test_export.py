"""Export your own model: an ACT-like torch policy to ONNX with contract and parity.

Then the export runs closed loop through the safety controller over DDS.
"""

import json
import os
import threading
import time

import numpy as np
import onnx
import pytest
import yaml

torch = pytest.importorskip(
    'torch', reason='torch (CPU) is needed to export a policy (requirements-dev.txt has it)')
nn = torch.nn

from wam_runtime import cli  # noqa: E402
from wam_runtime.core.contract import (  # noqa: E402
    ContractError, METADATA_KEY, parse_contract)
from wam_runtime.core.inference import OnnxPolicy  # noqa: E402
from wam_runtime.export import (  # noqa: E402
    EXIT_INVALID, EXIT_OK, EXIT_PARITY, export_policy, ExportError)
from wam_runtime.parity import random_inputs  # noqa: E402

LEFT = [f'left_joint_{i}' for i in range(1, 8)]
RIGHT = [f'right_joint_{i}' for i in range(1, 8)]
JOINTS = LEFT + RIGHT
H, W = 64, 80            # model input; the cameras publish more, preprocessing resizes
HORIZON, DT_S = 100, 0.02
D = 64
ACTION_STD = 0.3


class Backbone(nn.Module):
    """A small conv encoder: one (1, 3, H, W) image -> (1, H/8 * W/8, D) tokens."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, D, 3, stride=2, padding=1))

    def forward(self, x):
        return self.net(x).flatten(2).transpose(1, 2)


class ActLike(nn.Module):
    """ACT-shaped encoder-decoder -> a [1, 100, 14] chunk.

    A backbone per camera, a transformer encoder over image tokens + the state token, a
    decoder with one learned query per chunk step.
    """

    def __init__(self, n_joints=len(JOINTS), horizon=HORIZON):
        super().__init__()
        self.cams = nn.ModuleList([Backbone(), Backbone()])
        tokens = 2 * (H // 8) * (W // 8) + 1
        self.pos = nn.Parameter(torch.randn(1, tokens, D) * 0.02)
        self.state_in = nn.Linear(n_joints, D)
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(D, 4, 128, dropout=0.0, batch_first=True), 2,
            enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(D, 4, 128, dropout=0.0, batch_first=True), 2)
        self.queries = nn.Parameter(torch.randn(1, horizon, D) * 0.02)
        self.head = nn.Linear(D, n_joints)

    def forward(self, image_front, image_wrist, joint_positions):
        tokens = torch.cat([self.cams[0](image_front), self.cams[1](image_wrist),
                            self.state_in(joint_positions).unsqueeze(1)], dim=1) + self.pos
        out = self.decoder(self.queries, self.encoder(tokens))
        return torch.tanh(self.head(out))           # normalised: * 0.3 rad in the contract


class TracedBranch(nn.Module):
    """Data-dependent control flow: tracing bakes in the branch of the example input."""

    def __init__(self):
        super().__init__()
        self.inner = ActLike()

    def forward(self, image_front, image_wrist, joint_positions):
        out = self.inner(image_front, image_wrist, joint_positions)
        if float(joint_positions.sum()) > 0:
            return out
        return -out


def act_contract(horizon=HORIZON):
    def cam(name):
        return {'name': name, 'input': f'image_{name}', 'height': H, 'width': W,
                'encoding': 'rgb8', 'layout': 'NCHW', 'dtype': 'float32',
                'scale': 1.0 / 255.0, 'mean': [0.485, 0.456, 0.406],
                'std': [0.229, 0.224, 0.225]}
    return {'format_version': 1, 'name': 'act_like_dual_arm',
            'cameras': [cam('front'), cam('wrist')],
            'state': {'input': 'joint_positions', 'joint_names': JOINTS,
                      'mean': [0.0] * 14, 'std': [0.5] * 14},
            'action': {'output': 'actions', 'horizon': horizon, 'dt_s': DT_S,
                       'joint_names': JOINTS, 'mode': 'absolute', 'mean': [0.0] * 14,
                       'std': [ACTION_STD] * 14}}


def _policy(seed=0):
    torch.manual_seed(seed)
    return ActLike().eval()


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """Export the ACT-like policy once for the module: (policy, onnx path, report)."""
    out = tmp_path_factory.mktemp('export')
    policy = _policy()
    rng = np.random.default_rng(7)
    samples = [random_inputs(parse_contract(act_contract()), rng) for _ in range(2)]
    report = export_policy(policy, act_contract(), str(out / 'act.onnx'), samples=samples,
                           report_path=str(out / 'parity.json'))
    return policy, str(out / 'act.onnx'), report


# ------------------------------------------------------------------ the API
def test_act_like_policy_exports_with_its_contract_and_parity(exported):
    policy, path, report = exported
    assert report.passed and report.max_abs_diff < 1e-4
    assert report.samples == {'random': 4, 'user': 2}
    assert report.output_shapes == {'actions': [1, HORIZON, 14]}
    assert report.parameters == sum(p.numel() for p in policy.parameters())
    assert report.warnings == []
    saved = json.loads(open(os.path.join(os.path.dirname(path), 'parity.json')).read())
    assert saved['max_abs_diff'] == report.max_abs_diff and saved['passed'] is True
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert json.loads(meta[METADATA_KEY]) == act_contract()


def test_the_runtime_loads_the_export_and_matches_torch(exported):
    policy, path, _ = exported
    runtime = OnnxPolicy(path, intra_op_num_threads=1)
    assert runtime.contract.action.horizon == HORIZON
    assert [c.name for c in runtime.contract.cameras] == ['front', 'wrist']
    rng = np.random.default_rng(3)
    feeds = random_inputs(runtime.contract, rng)
    q = rng.uniform(-0.5, 0.5, 14)
    out = runtime.run({'front': feeds['image_front'], 'wrist': feeds['image_wrist']}, q)
    assert out.actions.shape == (HORIZON, 14)
    with torch.no_grad():
        ref = policy(torch.from_numpy(feeds['image_front']),
                     torch.from_numpy(feeds['image_wrist']),
                     torch.from_numpy((q / 0.5).astype(np.float32))[None])[0].numpy()
    np.testing.assert_allclose(out.actions, ref * ACTION_STD, atol=1e-5)


def test_a_contract_that_disagrees_with_the_policy_is_refused(tmp_path):
    with pytest.raises(ExportError, match=r'contract\.action\.horizon.*\[1, 100, 14\].*'
                                          r'\[1, 50, 14\]'):
        export_policy(_policy(), act_contract(horizon=50), str(tmp_path / 'm.onnx'),
                      random_samples=1)
    bad = act_contract()
    bad['cameras'][1]['input'] = 'image_front'
    with pytest.raises(ContractError, match='two fields name the same graph input'):
        export_policy(_policy(), bad, str(tmp_path / 'm.onnx'))
    with pytest.raises(ExportError, match=r"samples\[0\]: .*missing \['joint_positions'\]"):
        export_policy(_policy(), act_contract(), str(tmp_path / 'm.onnx'),
                      samples=[{'image_front': 0, 'image_wrist': 0}])


def _data_dependent_horizon(path, steps, contract_horizon):
    """Write a model whose horizon only a run knows, under a contract for another one.

    NonZero of an input-dependent mask picks ``steps`` rows; the contract promises
    ``contract_horizon``.
    """
    from onnx import helper, numpy_helper, TensorProto
    from wam_runtime.testing.model_gen import build_model, make_contract_dict
    model = build_model(horizon=8)
    graph = model.graph
    final = next(n for n in graph.node if list(n.output) == ['actions'])
    final.output[0] = 'actions_full'
    graph.initializer.extend([
        numpy_helper.from_array(np.array([1.0] * steps + [-1.0] * (8 - steps), np.float32),
                                'step_mask'),
        numpy_helper.from_array(np.array([0.0], np.float32), 'zero_f')])
    graph.node.extend([
        helper.make_node('ReduceSum', ['joint_positions_f'], ['q_sum'], keepdims=0),
        helper.make_node('Mul', ['q_sum', 'zero_f'], ['q_zero']),
        helper.make_node('Add', ['step_mask', 'q_zero'], ['mask_f']),
        helper.make_node('Greater', ['mask_f', 'zero_f'], ['mask']),
        helper.make_node('NonZero', ['mask'], ['nz']),
        helper.make_node('Squeeze', ['nz'], ['rows']),
        helper.make_node('Gather', ['actions_full', 'rows'], ['actions'], axis=1)])
    del graph.output[0]
    graph.output.insert(0, helper.make_tensor_value_info('actions', TensorProto.FLOAT,
                                                         [1, 'horizon', 6]))
    del model.metadata_props[:]
    helper.set_model_props(model, {METADATA_KEY: json.dumps(
        make_contract_dict(horizon=contract_horizon))})
    onnx.save(model, path)
    return path


def test_a_symbolic_horizon_is_checked_at_the_first_inference(tmp_path):
    good = _data_dependent_horizon(str(tmp_path / 'good.onnx'), 8, 8)
    assert OnnxPolicy(good).run(OnnxPolicy(good).zero_inputs(), np.zeros(6)).actions.shape \
        == (8, 6)
    bad = _data_dependent_horizon(str(tmp_path / 'bad.onnx'), 5, 8)
    # Warm-up is the first inference: refused at load, naming the field.
    with pytest.raises(ContractError, match=r"contract\.action\.horizon: output 'actions' "
                                            r'returned shape \[1, 5, 6\] at inference, the '
                                            r'contract implies \[1, 8, 6\]'):
        OnnxPolicy(bad)
    # Without warm-up the first real inference refuses: no chunk comes out.
    runtime = OnnxPolicy(bad, warmup_runs=0, io_binding=False)
    with pytest.raises(ContractError, match=r'contract\.action\.horizon'):
        runtime.run(runtime.zero_inputs(), np.zeros(6))


def test_a_horizon_left_symbolic_by_the_exporter_is_still_checked(tmp_path):
    path = str(tmp_path / 'dyn.onnx')
    export_policy(_policy(), act_contract(), path, random_samples=1,
                  dynamic_axes={'actions': {1: 'horizon'}})
    dims = onnx.load(path).graph.output[0].type.tensor_type.shape.dim
    assert dims[1].dim_param == 'horizon'
    model = onnx.load(path)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(act_contract(horizon=50))})
    onnx.save(model, path)
    # ONNX Runtime infers the 100 steps itself: refused at load time.
    with pytest.raises(ContractError, match=r'contract\.action\.horizon.*\[1, 100, 14\]'):
        OnnxPolicy(path)


# ------------------------------------------------------------------ the command line
POLICY_FILE = """
import torch
from test_export import ActLike, TracedBranch


def make_policy():
    return ActLike()


def make_branchy():
    torch.manual_seed(1)
    return TracedBranch()
"""


def _cli_files(tmp_path):
    (tmp_path / 'my_policy.py').write_text(POLICY_FILE)
    torch.save(_policy(5).state_dict(), str(tmp_path / 'ckpt.pt'))
    (tmp_path / 'contract.json').write_text(json.dumps(act_contract()))
    rng = np.random.default_rng(1)
    feeds = [random_inputs(parse_contract(act_contract()), rng) for _ in range(3)]
    np.savez(str(tmp_path / 'samples.npz'),
             **{k: np.stack([f[k] for f in feeds]) for k in feeds[0]})


def test_cli_exports_with_checkpoint_samples_and_report(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(os.path.dirname(__file__))
    _cli_files(tmp_path)
    code = cli.main(['export', '--policy', f'{tmp_path}/my_policy.py:make_policy',
                     '--checkpoint', str(tmp_path / 'ckpt.pt'),
                     '--contract', str(tmp_path / 'contract.json'),
                     '--out', str(tmp_path / 'out.onnx'),
                     '--samples', str(tmp_path / 'samples.npz'),
                     '--report', str(tmp_path / 'parity.json')])
    out = capsys.readouterr().out
    assert code == EXIT_OK, out
    assert 'parity    PASS: max abs diff' in out and "{'random': 4, 'user': 3}" in out
    report = json.loads((tmp_path / 'parity.json').read_text())
    assert report['samples'] == {'random': 4, 'user': 3} and report['passed']
    # The checkpoint's weights were exported, not the factory's fresh ones.
    runtime = OnnxPolicy(str(tmp_path / 'out.onnx'))
    reference = _policy(5)
    feeds = random_inputs(runtime.contract, np.random.default_rng(0))
    got = runtime.run({'front': feeds['image_front'], 'wrist': feeds['image_wrist']},
                      np.zeros(14)).actions
    with torch.no_grad():
        want = reference(torch.from_numpy(feeds['image_front']),
                         torch.from_numpy(feeds['image_wrist']),
                         torch.zeros(1, 14))[0].numpy() * ACTION_STD
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_cli_parity_failure_exits_1_and_bad_input_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(os.path.dirname(__file__))
    _cli_files(tmp_path)
    # A traced data-dependent branch: ONNX keeps the example's branch, torch does not.
    code = cli.main(['export', '--policy', f'{tmp_path}/my_policy.py:make_branchy',
                     '--contract', str(tmp_path / 'contract.json'),
                     '--out', str(tmp_path / 'branchy.onnx'), '--random-samples', '8',
                     '--report', str(tmp_path / 'parity.json')])
    out = capsys.readouterr().out
    assert code == EXIT_PARITY, out
    assert 'parity    FAIL' in out
    report = json.loads((tmp_path / 'parity.json').read_text())
    assert not report['passed'] and report['max_abs_diff'] > 0.1
    assert os.path.isfile(tmp_path / 'branchy.onnx')         # kept, for inspection
    for argv, message in (
            (['--policy', 'no_such_module_xyz:make'], "cannot import 'no_such_module_xyz'"),
            (['--policy', f'{tmp_path}/my_policy.py:nothing'], "no attribute 'nothing'"),
            (['--policy', f'{tmp_path}/my_policy.py:make_policy', '--checkpoint',
              str(tmp_path / 'contract.json')], '--checkpoint: cannot load')):
        code = cli.main(['export', *argv, '--contract', str(tmp_path / 'contract.json'),
                         '--out', str(tmp_path / 'x.onnx')])
        err = capsys.readouterr().err
        assert code == EXIT_INVALID and message in err, err
        assert err.count('\n') == 1 and 'Traceback' not in err


# ------------------------------------------------------------------ closed loop over DDS
LOWER, UPPER, VMAX, MARGIN = -1.5, 1.5, 1.0, 0.02


@pytest.mark.ros
@pytest.mark.slow
def test_exported_policy_runs_closed_loop_on_a_dual_arm(exported, proc_env, ros_context,
                                                        tmp_path):
    """The export drives a 14-joint dual arm through the safety controller.

    policy_node (the export) + safety_controller + two cameras + a robot whose arms publish
    joint_states from two separate nodes: chunks flow, both sources are merged, every
    command is inside the limits.
    """
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Float64MultiArray
    from wam_runtime.processes import NodeProcess, wait_for
    from wam_runtime.ros.conversions import image_msg
    from wam_runtime.ros.monitor import Monitor

    _, model, _ = exported
    params = {
        '/**/policy_node': {'ros__parameters': {
            'model_path': model, 'joint_names': list(JOINTS), 'intra_op_num_threads': 1,
            'inference_rate_hz': 5.0, 'max_observation_age_s': 1.0,
            'max_observation_skew_s': 0.2, 'diagnostics_period_s': 0.5}},
        '/**/safety_controller': {'ros__parameters': {
            'joint_names': list(JOINTS), 'lower_limits_rad': [LOWER] * 14,
            'upper_limits_rad': [UPPER] * 14, 'max_velocity_rad_s': [VMAX] * 14,
            'position_margin_rad': MARGIN, 'control_rate_hz': 100.0, 'autostart': True,
            'max_chunk_age_s': 1.0, 'command_timeout_s': 1.0, 'state_timeout_s': 0.5,
            'blend': 'temporal_ensemble', 'diagnostics_period_s': 0.5}},
    }
    pf = tmp_path / 'dual_arm.yaml'
    pf.write_text(yaml.safe_dump(params))
    procs = [NodeProcess('wam_runtime.ros.policy_node', proc_env, 'policy_node', str(pf),
                         log_dir=str(tmp_path)),
             NodeProcess('wam_runtime.ros.safety_controller', proc_env, 'safety_controller',
                         str(pf), log_dir=str(tmp_path))]
    try:
        ctx = ros_context.context
        mon = ros_context(Monitor('test_monitor', context=ctx))
        arms = {side: ros_context(rclpy.create_node(f'{side}_arm_driver', context=ctx))
                for side in ('left', 'right')}
        cams = ros_context(rclpy.create_node('camera_driver', context=ctx))
        lock = threading.Lock()
        q = np.zeros(14)

        def on_command(msg):
            cmd = np.asarray(msg.data, dtype=np.float64)
            if cmd.shape == q.shape:
                with lock:
                    q[:] = cmd           # an ideal position-controlled robot

        arms['left'].create_subscription(Float64MultiArray, 'commands', on_command, 10)
        for side, names, sl in (('left', LEFT, slice(0, 7)), ('right', RIGHT, slice(7, 14))):
            node = arms[side]
            pub = node.create_publisher(JointState, 'joint_states', qos_profile_sensor_data)

            def publish(node=node, pub=pub, names=names, sl=sl):
                with lock:
                    values = q[sl].tolist()
                msg = JointState(name=names, position=values)
                msg.header.stamp = node.get_clock().now().to_msg()
                pub.publish(msg)
            node.create_timer(0.02, publish)
        cam_pubs = {n: cams.create_publisher(Image, f'camera/{n}/image_raw',
                                             qos_profile_sensor_data)
                    for n in ('front', 'wrist')}
        rng = np.random.default_rng(0)

        def publish_frames():
            stamp = cams.get_clock().now().to_msg()
            for name, pub in cam_pubs.items():
                frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
                pub.publish(image_msg(frame, 'rgb8', stamp, name))
        cams.create_timer(0.1, publish_frames)

        def tracking():
            d = mon.diag(': safety') or {}
            return d.get('mode') == 'tracking' and int(d.get('chunks_used', 0)) >= 3
        assert wait_for(tracking, 60.0), \
            procs[0].output()[-3000:] + procs[1].output()[-3000:]
        t0 = time.monotonic()
        time.sleep(3.0)
        _, cmds = mon.command_array(since=t0)
        assert cmds.shape[0] > 150 and cmds.shape[1] == 14
        assert np.isfinite(cmds).all()
        assert np.all(cmds >= LOWER + MARGIN - 1e-9) and np.all(cmds <= UPPER - MARGIN + 1e-9)
        assert np.all(np.abs(np.diff(cmds, axis=0)) <= VMAX * 0.01 + 1e-9)
        assert np.ptp(cmds, axis=0).max() > 1e-3           # the policy moves the arms
        assert len(mon.chunks) >= 5
        for suffix in (': policy', ': safety'):
            d = mon.diag(suffix)
            assert d['joint_states_sources'] == '2', (suffix, d)
            assert d['joint_states_missing'] == 'none' and d['joint_states_stale'] == 'none'
        policy_diag = mon.diag(': policy')
        assert int(policy_diag['chunks_published']) >= 5
        assert 'rejected_inference_error' not in policy_diag
        assert all(p.alive() for p in procs)
    finally:
        for p in procs:
            p.stop()
