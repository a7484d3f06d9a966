"""Packaging: package.xml and setup.py agree, and everything they install exists."""

import importlib
import os
import re
import subprocess
import sys
from xml.etree import ElementTree

import pytest

from wam_runtime.processes import REPO_ROOT

PKG_XML = ElementTree.parse(os.path.join(REPO_ROOT, 'package.xml')).getroot()
with open(os.path.join(REPO_ROOT, 'setup.py'), encoding='utf-8') as _f:
    SETUP_SRC = _f.read()


def test_package_xml_is_format_3_ament_python_with_valid_maintainer():
    assert PKG_XML.get('format') == '3'
    assert PKG_XML.findtext('name') == 'wam_runtime'
    assert PKG_XML.find('export/build_type').text == 'ament_python'
    email = PKG_XML.find('maintainer').get('email')
    assert re.fullmatch(r'[^@\s]+@[^@\s]+\.[a-z]{2,}', email)


def test_version_is_identical_in_package_xml_and_setup_py():
    out = subprocess.run([sys.executable, 'setup.py', '--version'], cwd=REPO_ROOT,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[-1] == PKG_XML.findtext('version')


@pytest.mark.parametrize('dep', ['rclpy', 'sensor_msgs', 'trajectory_msgs', 'std_msgs',
                                 'std_srvs', 'diagnostic_msgs', 'launch_ros'])
def test_exec_depends(dep):
    assert dep in [e.text for e in PKG_XML.findall('exec_depend')]


def test_console_scripts_resolve_to_main_functions():
    scripts = re.findall(r"'([\w-]+) = ([\w.]+):(\w+)'", SETUP_SRC)
    assert {s[0] for s in scripts} >= {'policy_node', 'safety_controller', 'sim_node'}
    for _, module, func in scripts:
        assert callable(getattr(importlib.import_module(module), func))


def test_installed_data_files_exist():
    assert os.path.isfile(os.path.join(REPO_ROOT, 'resource', 'wam_runtime'))
    for sub, pattern in (('config', '.yaml'), ('config', '.xml'), ('models', '.onnx')):
        assert any(f.endswith(pattern) for f in os.listdir(os.path.join(REPO_ROOT, sub)))
    with open(os.path.join(REPO_ROOT, 'setup.cfg'), encoding='utf-8') as f:
        assert 'script_dir=$base/lib/wam_runtime' in f.read()


def test_requirements_are_pinned():
    for name in ('requirements.txt', 'requirements-dev.txt'):
        with open(os.path.join(REPO_ROOT, name), encoding='utf-8') as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith(('#', '-r')):
                    assert re.fullmatch(r'[\w.-]+==[\w.]+', line), line
