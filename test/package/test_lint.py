"""ROS core style: flake8 at 99 columns, single quotes, Google import order, pep257."""

import os
import subprocess
import sys

import pytest

from wam_runtime.processes import REPO_ROOT

pytestmark = pytest.mark.linter

TARGETS = ['wam_runtime', 'test', 'bench', 'launch', 'setup.py']


def _flake8(*args):
    paths = [t for t in TARGETS if os.path.exists(os.path.join(REPO_ROOT, t))]
    return subprocess.run([sys.executable, '-m', 'flake8', *args, *paths], cwd=REPO_ROOT,
                          capture_output=True, text=True)


def test_flake8_ros_style():
    res = _flake8()
    assert res.returncode == 0, res.stdout + res.stderr


def test_core_public_functions_have_docstrings():
    """core/ is the API other code builds on: every public class and function is documented."""
    res = subprocess.run(
        [sys.executable, '-m', 'flake8', '--select=D101,D102,D103', 'wam_runtime/core'],
        cwd=REPO_ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_core_never_imports_ros():
    """No module of core/, its subpackages (core/image/, core/contract/) included, imports ROS."""
    bad = []
    core = os.path.join(REPO_ROOT, 'wam_runtime', 'core')
    for folder, dirs, files in os.walk(core):
        dirs[:] = sorted(d for d in dirs if d != '__pycache__')
        for name in sorted(files):
            if not name.endswith('.py'):
                continue
            path = os.path.join(folder, name)
            with open(path, encoding='utf-8') as f:
                for line in f:
                    s = line.strip()
                    if s.startswith(('import ', 'from ')) and (
                            'rclpy' in s or '_msgs' in s or '_srvs' in s):
                        bad.append(f'{os.path.relpath(path, core)}: {s}')
    assert bad == []
