"""colcon builds and tests the package the way a ROS 2 workspace does.

colcon comes from the package index (requirements-dev.txt). The package is built into a
temporary workspace; the installed layout is checked (console scripts in lib/wam_runtime,
where ``ros2 run`` and launch look for them; launch, config and model files in share); the
installed ``wam-runtime`` validates the installed launch files against the installed share
folder (so every path a launch file names exists after installation, not only in the
source tree); and ``colcon test`` runs a fast subset, with ``colcon test-result`` showing
that tests ran (a package that does not declare pytest silently runs 0 tests).
"""

import os
import re
import subprocess
import sys
import time

import pytest

from wam_runtime.processes import REPO_ROOT
from wam_runtime.tools.launch_check import console_scripts, launch_files

pytestmark = pytest.mark.slow

BIN = os.path.dirname(sys.executable)
COLCON = os.path.join(BIN, 'colcon')
PKG = 'wam_runtime'


def _env(extra_prefix=None):
    env = dict(os.environ)
    env['PATH'] = BIN + os.pathsep + env.get('PATH', '')
    prefixes = [p for p in [extra_prefix, sys.prefix] if p]
    env['AMENT_PREFIX_PATH'] = os.pathsep.join(prefixes)
    env.pop('PYTHONPATH', None)
    return env


def _run(cmd, cwd, env, timeout=120):
    t0 = time.monotonic()
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=timeout)
    res.seconds = time.monotonic() - t0
    return res


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    """Return a workspace with the package (a link to this tree) built by colcon."""
    if not os.path.exists(COLCON):
        pytest.skip('colcon is not installed (make setup installs requirements-dev.txt)')
    ws = tmp_path_factory.mktemp('colcon_ws')
    os.makedirs(ws / 'src')
    os.symlink(REPO_ROOT, ws / 'src' / PKG)
    res = _run([COLCON, 'build', '--packages-select', PKG], str(ws), _env())
    assert res.returncode == 0, res.stdout + res.stderr
    print(f'colcon build: {res.seconds:.1f} s')
    return ws


def test_build_installs_scripts_launch_config_and_models(workspace):
    prefix = workspace / 'install' / PKG
    scripts = set(os.listdir(prefix / 'lib' / PKG))
    assert scripts == console_scripts(REPO_ROOT)
    assert scripts >= {'policy_node', 'safety_controller', 'sim_node', 'synthetic_camera',
                       'wam-runtime'}
    share = prefix / 'share' / PKG
    assert sorted(os.listdir(share / 'launch')) == sorted(
        os.path.basename(p) for p in launch_files(REPO_ROOT))
    for rel in ('package.xml', 'config/reference_arm.yaml', 'config/reference_arm.urdf',
                'config/generic_7dof.yaml', 'config/gz_bridge.yaml', 'config/fastdds_shm.xml',
                'config/controllers/reference_arm_controllers.yaml',
                'config/nodes/safety_controller.yaml', 'models/reference_reach.onnx'):
        assert os.path.isfile(share / rel), rel
    assert os.path.isfile(prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / PKG)


def test_installed_tool_validates_the_installed_launch_files(workspace, tmp_path):
    prefix = str(workspace / 'install' / PKG)
    site = os.path.join(prefix, 'lib', f'python{sys.version_info[0]}.{sys.version_info[1]}',
                        'site-packages')
    env = _env(prefix)
    env['PYTHONPATH'] = site
    tool = os.path.join(prefix, 'lib', PKG, 'wam-runtime')
    # Run outside the source tree so that the installed package (and share) is used.
    res = _run([tool, 'check-launch'], str(tmp_path), env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count('  OK') == 4
    assert f'share folder: {os.path.join(prefix, "share", PKG)}\n' in res.stdout
    res = _run([tool, 'inspect', os.path.join(prefix, 'share', PKG, 'models',
                                              'reference_reach.onnx')], str(tmp_path), env)
    assert res.returncode == 0, res.stdout + res.stderr


def test_colcon_test_runs_the_package_tests(workspace):
    res = _run([COLCON, 'test', '--packages-select', PKG, '--pytest-args',
                'test/unit/tools/test_launch_static.py', '-q'], str(workspace), _env())
    assert res.returncode == 0, res.stdout + res.stderr
    print(f'colcon test: {res.seconds:.1f} s')
    res = _run([COLCON, 'test-result', '--test-result-base', f'build/{PKG}'],
               str(workspace), _env())
    assert res.returncode == 0, res.stdout + res.stderr
    match = re.search(r'Summary: (\d+) tests, (\d+) errors, (\d+) failures', res.stdout)
    assert match, res.stdout
    tests, errors, failures = (int(g) for g in match.groups())
    assert tests > 0 and errors == 0 and failures == 0, res.stdout
