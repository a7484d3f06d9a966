"""Packaging: package.xml and setup.py agree, everything they install exists, the docs link."""

import glob
import importlib
import importlib.metadata
import json
import os
import re
import shutil
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


def _console_scripts():
    return {name: f'{module}:{func}' for name, module, func in
            re.findall(r"'([\w-]+) = ([\w.]+):(\w+)'", SETUP_SRC)}


def test_make_setup_installs_this_tree_editable_with_every_console_script():
    try:
        dist = importlib.metadata.distribution('wam_runtime')
    except importlib.metadata.PackageNotFoundError:
        pytest.skip('wam_runtime is not installed (make setup installs it in editable mode)')
    direct = json.loads(dist.read_text('direct_url.json') or '{}')
    if not direct.get('dir_info', {}).get('editable'):
        pytest.skip(f'wam_runtime is installed, but not in editable mode ({dist.locate_file("")})')
    if direct['url'] != f'file://{REPO_ROOT}':
        pytest.skip(f'the editable install is of another tree ({direct["url"]})')
    assert dist.version == PKG_XML.findtext('version')
    entry_points = {ep.name: ep.value for ep in dist.entry_points
                    if ep.group == 'console_scripts'}
    assert entry_points == _console_scripts()
    bin_dir = os.path.dirname(sys.executable)
    for name in entry_points:
        assert os.access(os.path.join(bin_dir, name), os.X_OK), name


def test_build_artefacts_are_ignored_by_git():
    if shutil.which('git') is None or not os.path.isdir(os.path.join(REPO_ROOT, '.git')):
        pytest.skip('not a git checkout')
    paths = ['wam_runtime.egg-info/', 'build/', 'install/', 'log/',
             'wam_runtime/__pycache__/cli.cpython-311.pyc']
    res = subprocess.run(['git', 'check-ignore', *paths], cwd=REPO_ROOT,
                         capture_output=True, text=True)
    assert res.stdout.split() == paths, res.stdout + res.stderr


def _anchor(heading: str) -> str:
    """Return GitHub's anchor of a Markdown heading."""
    text = re.sub(r'[^\w\- ]', '', heading.strip().lower())
    return text.replace(' ', '-')


def _headings(path: str):
    anchors, fence = set(), False
    with open(path, encoding='utf-8') as f:
        for line in f:
            if line.startswith('```'):
                fence = not fence
            elif not fence and line.startswith('#'):
                anchors.add(_anchor(line.lstrip('#')))
    return anchors


def test_readme_and_doc_links_resolve():
    docs = [os.path.join(REPO_ROOT, 'README.md')] + sorted(
        glob.glob(os.path.join(REPO_ROOT, 'doc', '*.md')))
    assert len(docs) > 5
    bad = []
    for path in docs:
        with open(path, encoding='utf-8') as f:
            text = f.read()
        for target in re.findall(r'\]\(([^)\s]+)\)', text):
            if re.match(r'[a-z]+://', target):
                continue
            file_part, _, anchor = target.partition('#')
            dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) \
                if file_part else path
            if not os.path.exists(dest):
                bad.append(f'{os.path.relpath(path, REPO_ROOT)}: {target} (no such file)')
            elif anchor and anchor not in _headings(dest):
                bad.append(f'{os.path.relpath(path, REPO_ROOT)}: {target} (no such heading)')
    assert bad == []


def test_files_the_docs_name_exist():
    """A path in backquotes (``wam_runtime/core/gate.py``) must follow a moved file."""
    bad = []
    for path in [os.path.join(REPO_ROOT, 'README.md')] + sorted(
            glob.glob(os.path.join(REPO_ROOT, 'doc', '*.md'))):
        with open(path, encoding='utf-8') as f:
            text = f.read()
        for name in re.findall(r'`((?:wam_runtime|config|launch|models|test|bench)/[\w./-]+)`',
                               text):
            if not os.path.exists(os.path.join(REPO_ROOT, name)):
                bad.append(f'{os.path.relpath(path, REPO_ROOT)}: {name}')
    assert bad == []
