"""Test fixtures: loopback-only DDS on a random domain, generated models, ROS processes."""

import glob
import os
import threading

import pytest

from wam_runtime.processes import fastdds_profile, random_domain_id, ros_env

# Before anything imports rclpy: DDS never leaves this machine.
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.pop('ROS_LOCALHOST_ONLY', None)
os.environ['RMW_IMPLEMENTATION'] = 'rmw_fastrtps_cpp'
os.environ['FASTDDS_DEFAULT_PROFILES_FILE'] = fastdds_profile()
os.environ.setdefault('MUJOCO_GL', 'egl')
os.environ.setdefault('ROS_DOMAIN_ID', str(random_domain_id()))

_SHM_BEFORE = set(glob.glob('/dev/shm/fastdds_*') + glob.glob('/dev/shm/sem.fastdds_*'))


def _shm_in_use():
    """Return the /dev/shm paths some live process has mapped or open."""
    used = set()
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open(f'/proc/{pid}/maps', encoding='utf-8', errors='replace') as f:
                used.update(line.split(None, 5)[-1].strip() for line in f if '/dev/shm/' in line)
            for fd in os.listdir(f'/proc/{pid}/fd'):
                target = os.readlink(f'/proc/{pid}/fd/{fd}')
                if target.startswith('/dev/shm/'):
                    used.add(target)
        except OSError:
            continue
    return used


def pytest_sessionfinish(session, exitstatus):
    """Remove the Fast DDS shared-memory files this session left behind.

    Only files created during the session that no live process maps or holds open are
    removed, so a concurrent ROS process (another test run, a user's nodes) is never hurt.
    """
    created = set(glob.glob('/dev/shm/fastdds_*') + glob.glob('/dev/shm/sem.fastdds_*')) \
        - _SHM_BEFORE
    in_use = _shm_in_use()
    for path in created:
        # A semaphore file is in use when its port segment is.
        port = path.replace('/sem.', '/').replace('_mutex', '')
        if path in in_use or port in in_use:
            continue
        try:
            os.remove(path)
        except OSError:
            pass


@pytest.fixture
def domain_id():
    """Return a fresh random ROS domain for one test."""
    return random_domain_id()


@pytest.fixture
def proc_env(domain_id):
    """Return the environment for node processes on this test's domain (loopback, SHM profile)."""
    return ros_env(domain_id)


@pytest.fixture
def generated_model(tmp_path):
    """Write a generated single-camera model; return its path with the default 6 joints."""
    from wam_runtime.testing.model_gen import write_model
    return write_model(str(tmp_path / 'generated.onnx'))


@pytest.fixture
def ros_context(domain_id):
    """Yield an rclpy context on this test's domain with a spinning executor.

    Yields a function that adds a node to the executor.
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    executor = SingleThreadedExecutor(context=context)
    thread = threading.Thread(target=executor.spin, daemon=True)
    nodes = []

    def add(node):
        nodes.append(node)
        executor.add_node(node)
        return node

    add.context = context
    thread.start()
    yield add
    executor.shutdown()
    for node in nodes:
        node.destroy_node()
    rclpy.try_shutdown(context=context)
    thread.join(timeout=2.0)
