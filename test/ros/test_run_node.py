"""run_node: a failure inside rclpy at shutdown is a clean exit, while rclpy stays up it is not."""

import subprocess
import sys

import pytest

from wam_runtime.processes import REPO_ROOT

SCRIPT = """
import sys
import threading
import rclpy
from rclpy.node import Node
from wam_runtime.ros.common import run_node


class Failing(Node):
    def __init__(self):
        super().__init__('failing')
        self.create_timer(0.05, self.fail)

    def fail(self):
        if {when!r} == 'before':
            rclpy.shutdown()     # as rclpy's SIGINT handler does, then a take fails
        elif {when!r} == 'after':
            # The take fails first and the signal handler shuts rclpy down a moment later.
            threading.Timer(0.2, rclpy.shutdown).start()
        raise RuntimeError('Unable to convert call argument 0 to Python object')


sys.exit(run_node(lambda a: Failing()))
"""


@pytest.mark.ros
@pytest.mark.parametrize('when,code', [('before', 0), ('after', 0), ('never', 1)])
def test_runtime_error_after_shutdown_exits_cleanly(proc_env, when, code):
    res = subprocess.run([sys.executable, '-c', SCRIPT.format(when=when)],
                         env=proc_env, cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == code, res.stdout + res.stderr
    if code:
        assert 'Unable to convert call argument' in res.stderr
