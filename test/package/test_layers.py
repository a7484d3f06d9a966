"""Import layering: the import-linter contracts of .importlinter, and no import cycles."""

import os
import subprocess
import sys

import grimp
import pytest

from wam_runtime.processes import REPO_ROOT

pytestmark = pytest.mark.linter

CONFIG = os.path.join(REPO_ROOT, '.importlinter')

# Module-level import cycles that exist today (lazy imports count). Each is a task, not a
# permission: the test fails when one is gone, so that its entry is removed too.
KNOWN_CYCLES = set()


def _lint_imports(config=CONFIG, root=REPO_ROOT):
    """Run import-linter from this interpreter's environment on the package under ``root``."""
    exe = os.path.join(os.path.dirname(sys.executable), 'lint-imports')
    env = dict(os.environ, PYTHONPATH=root, COLUMNS='120')
    return subprocess.run([exe, config, '--no-cache'], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def import_cycles(graph):
    """Return the sets of modules that import each other (strongly connected components)."""
    seen = set()
    cycles = []
    for module in sorted(graph.modules):
        if module in seen:
            continue
        both_ways = graph.find_upstream_modules(module) & graph.find_downstream_modules(module)
        if both_ways:
            group = frozenset(both_ways | {module})
            seen |= group
            cycles.append(group)
    return cycles


def _describe(graph, cycle):
    lines = []
    for importer in sorted(cycle):
        for imported in sorted(graph.find_modules_directly_imported_by(importer) & cycle):
            where = [d['line_number'] for d in graph.get_import_details(
                importer=importer, imported=imported)]
            lines.append(f'  {importer} -> {imported} (line {", ".join(map(str, where))})')
    return '\n'.join(lines)


def _report(res):
    """Return import-linter's report without its banner."""
    text = res.stdout
    return text[text.find('Contracts\n'):] + res.stderr if 'Contracts\n' in text else \
        text + res.stderr


def test_import_contracts_are_kept():
    res = _lint_imports()
    assert res.returncode == 0, _report(res)


def test_a_lazy_import_across_layers_is_caught(tmp_path):
    """A function-level import from a lower layer into a higher one breaks the contract."""
    pkg = tmp_path / 'layered'
    for sub in ('', 'core', 'bag'):
        (pkg / sub).mkdir(exist_ok=True)
        (pkg / sub / '__init__.py').write_text('')
    (pkg / 'bag' / 'writer.py').write_text('X = 1\n')
    (pkg / 'core' / 'pure.py').write_text(
        'def f():\n    from layered.bag import writer\n    return writer.X\n')
    config = tmp_path / '.importlinter'
    config.write_text('[importlinter]\nroot_package = layered\n\n'
                      '[importlinter:contract:layers]\nname = layers\ntype = layers\n'
                      'containers = layered\nlayers =\n    bag\n    core\n')
    res = _lint_imports(str(config), str(tmp_path))
    assert res.returncode != 0, _report(res)
    assert 'layered.core.pure -> layered.bag.writer (l.2)' in res.stdout, _report(res)


def test_no_import_cycles_between_modules():
    graph = grimp.build_graph('wam_runtime', cache_dir=None)
    cycles = import_cycles(graph)
    new = [c for c in cycles if c not in KNOWN_CYCLES]
    gone = [sorted(c) for c in KNOWN_CYCLES if c not in cycles]
    assert not new, 'import cycles:\n' + '\n'.join(_describe(graph, c) for c in new)
    assert not gone, f'no longer a cycle, remove it from KNOWN_CYCLES: {gone}'


def test_cycle_finder_sees_lazy_imports():
    graph = grimp.ImportGraph()
    for name in ('p', 'p.a', 'p.b', 'p.c'):
        graph.add_module(name)
    graph.add_import(importer='p.a', imported='p.b', line_number=3, line_contents='')
    graph.add_import(importer='p.b', imported='p.a', line_number=9, line_contents='')
    graph.add_import(importer='p.c', imported='p.a', line_number=1, line_contents='')
    assert import_cycles(graph) == [frozenset({'p.a', 'p.b'})]
