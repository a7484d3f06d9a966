"""Start package nodes as OS processes on a loopback-only DDS domain (demo, tests, bench).

Every process started here gets ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, the given
``ROS_DOMAIN_ID`` and the shared-memory-only Fast DDS profile, so no DDS traffic leaves the
machine.
"""

import atexit
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Mapping, Optional, Sequence

import yaml

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def share_dir() -> str:
    """Return the source tree root in a checkout, else the installed share folder."""
    if os.path.isfile(os.path.join(REPO_ROOT, 'package.xml')):
        return REPO_ROOT
    from ament_index_python.packages import get_package_share_directory
    return get_package_share_directory('wam_runtime')


def fastdds_profile() -> str:
    """Return the absolute path of the shipped shared-memory Fast DDS profile."""
    return os.path.join(share_dir(), 'config', 'fastdds_shm.xml')


def _domains_in_use() -> set:
    """Return the ROS_DOMAIN_IDs that running processes on this machine have set."""
    used = set()
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open(f'/proc/{pid}/environ', 'rb') as f:
                for item in f.read().split(b'\0'):
                    if item.startswith(b'ROS_DOMAIN_ID='):
                        used.add(item[len(b'ROS_DOMAIN_ID='):].decode(errors='replace'))
        except OSError:
            continue
    return used


def random_domain_id() -> int:
    """Pick a ROS domain id (1..100) that no running process on this machine uses."""
    rng = random.SystemRandom()
    used = _domains_in_use()
    free = [d for d in range(1, 101) if str(d) not in used]
    return rng.choice(free) if free else rng.randint(1, 100)


def ros_env(domain_id: int, base: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """Return the environment for a loopback-only ROS 2 process on ``domain_id``."""
    env = dict(os.environ if base is None else base)
    env.update({
        'ROS_DOMAIN_ID': str(domain_id),
        'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST',
        'RMW_IMPLEMENTATION': 'rmw_fastrtps_cpp',
        'FASTDDS_DEFAULT_PROFILES_FILE': fastdds_profile(),
        'PYTHONUNBUFFERED': '1',
    })
    # ROS_LOCALHOST_ONLY is deprecated since Jazzy and warns when set with the new variable.
    env.pop('ROS_LOCALHOST_ONLY', None)
    path = env.get('PYTHONPATH', '')
    if REPO_ROOT not in path.split(os.pathsep):
        env['PYTHONPATH'] = REPO_ROOT + (os.pathsep + path if path else '')
    return env


def write_params(path: str, node_name: str, params: Mapping[str, object]) -> str:
    """Write a ROS parameter YAML for one node and return its path."""
    with open(path, 'w', encoding='utf-8') as f:
        yaml.safe_dump({node_name: {'ros__parameters': dict(params)}}, f)
    return path


_LIVE: List['NodeProcess'] = []


def _kill_leftovers() -> None:
    """Kill node processes this interpreter started and did not stop (e.g. a failed test)."""
    for proc in list(_LIVE):
        proc.kill()


atexit.register(_kill_leftovers)


class NodeProcess:
    """One node module run with ``python -m`` and ``--ros-args``; output to a log file.

    A process left running when the interpreter exits is killed, so a stray node never
    lingers on a DDS domain that a later run may pick.
    """

    def __init__(self, module: str, env: Mapping[str, str], name: str,
                 params_file: Optional[str] = None, ros_args: Sequence[str] = (),
                 log_dir: Optional[str] = None, extra_args: Sequence[str] = ()) -> None:
        """Start the process now."""
        self.name = name
        log_dir = log_dir or tempfile.mkdtemp(prefix='wam_logs_')
        self.log_path = os.path.join(log_dir, f'{name}.log')
        cmd: List[str] = [sys.executable, '-m', module, *extra_args, '--ros-args', '-r',
                          f'__node:={name}']
        if params_file:
            cmd += ['--params-file', params_file]
        cmd += list(ros_args)
        self._log = open(self.log_path, 'w', encoding='utf-8')
        self.proc = subprocess.Popen(cmd, env=dict(env), stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        _LIVE.append(self)

    def alive(self) -> bool:
        """Return True while the process runs."""
        return self.proc.poll() is None

    def output(self) -> str:
        """Return everything the process printed so far."""
        with open(self.log_path, encoding='utf-8', errors='replace') as f:
            return f.read()

    def stop(self, timeout_s: float = 5.0) -> int:
        """SIGINT, then SIGKILL after ``timeout_s``; return the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        if self in _LIVE:
            _LIVE.remove(self)
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the process (fault injection) and reap it."""
        if self.alive():
            self.proc.kill()
        self.proc.wait()
        if self in _LIVE:
            _LIVE.remove(self)


def wait_for(predicate, timeout_s: float, period_s: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout_s`` passes."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(period_s)
    return bool(predicate())


def call_service(client, request, timeout_s: float = 5.0, tries: int = 3):
    """Call an rclpy service client from a non-executor thread and return the response.

    A request sent right after discovery can lose its response, so an idempotent request
    is retried ``tries`` times; pass ``tries=1`` for one that is not. Raises
    RuntimeError when no response arrives.
    """
    for _ in range(tries):
        future = client.call_async(request)
        if wait_for(future.done, timeout_s):
            return future.result()
    raise RuntimeError(f'service {client.srv_name} did not answer')
