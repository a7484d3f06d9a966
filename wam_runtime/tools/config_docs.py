"""The documented per-node parameter files in ``config/nodes/``, generated from the schemas.

Every parameter a node declares appears with its description, unit, type and default; ones
with a default are set to it, required and optional ones without a default are shown
commented out. The files are generated, so they cannot drift from the code: a test compares
them with :func:`render`, and

    wam-runtime config-docs --write     (or: python -m wam_runtime.tools.config_docs --write)

rewrites them after a schema change.
"""

import argparse
import os
import sys
from typing import List, Optional

import yaml

from wam_runtime.core.params import Kind, Param
from wam_runtime.tools.params_check import node_schema, NODE_SCHEMAS, type_name, unit_of

_EXAMPLES = {
    'joint_names': ['joint_1', 'joint_2', 'joint_3'],
    'model_path': '/path/to/policy.onnx',
    'urdf_path': '/path/to/robot.urdf',
    'compressed_cameras': ['wrist'],
    'workspace_frames': ['ee_link'],
    'workspace_box_m': [-0.8, -0.8, 0.0, 0.8, 0.8, 1.2],
    'keep_out_boxes_m': [-0.6, -0.3, 0.0, -0.25, 0.3, 0.5],
    'keep_out_spheres_m': [0.5, 0.0, 0.4, 0.1],
}


def _yaml_value(value) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return text[:-4] if text.endswith('\n...') else text.replace('\n...', '')


def _describe(p: Param) -> List[str]:
    words = p.description.split()
    lines, line = [], '#'
    for w in words:
        if len(line) + 1 + len(w) > 88:
            lines.append(line)
            line = '#'
        line += ' ' + w
    lines.append(line)
    kind = type_name(p.default).replace('_', ' ')
    if p.required:
        status = 'required, no default'
    elif isinstance(p.default, Kind):
        status = 'optional, default: not set'
    else:
        status = f'default: {_yaml_value(p.default)}'
    lines.append(f'# unit: {unit_of(p)}; type: {kind}; {status}.')
    return ['    ' + text for text in lines]


def render(node: str) -> str:
    """Return the documented parameter file of ``node``."""
    module, attr = NODE_SCHEMAS[node]
    out = [
        f'# {node}: every parameter it declares, with unit, type and default.',
        f'# Generated from {module}.{attr}: do not edit by hand, regenerate with',
        '#   python -m wam_runtime.tools.config_docs --write',
        '# (test/unit/tools/test_launch_static.py compares). Copy the lines you need into',
        '# your robot file; the /**/ key makes a section apply in any namespace.',
        f'/**/{node}:',
        '  ros__parameters:',
    ]
    for p in node_schema(node):
        out.append('')
        out += _describe(p)
        if isinstance(p.default, Kind):
            example = _EXAMPLES.get(p.name, [] if str(p.default).endswith('array') else '')
            out.append(f'    # {p.name}: {_yaml_value(example)}')
        else:
            out.append(f'    {p.name}: {_yaml_value(p.default)}')
    return '\n'.join(out) + '\n'


def path_for(root: str, node: str) -> str:
    """Where the documented file of ``node`` lives under a source tree or share folder."""
    return os.path.join(root, 'config', 'nodes', f'{node}.yaml')


def main(argv: Optional[List[str]] = None) -> int:
    """Check (default) or rewrite (--write) config/nodes/*.yaml; exit 1 when out of date."""
    from wam_runtime.processes import REPO_ROOT
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--write', action='store_true', help='rewrite the files')
    ap.add_argument('--root', default=REPO_ROOT, help='source tree')
    args = ap.parse_args(argv)
    stale = []
    for node in NODE_SCHEMAS:
        path = path_for(args.root, node)
        text = render(node)
        current = open(path, encoding='utf-8').read() if os.path.isfile(path) else None
        if current == text:
            continue
        if args.write:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'w', encoding='utf-8') as f:
                f.write(text)
            print(f'wrote {path}')
        else:
            stale.append(path)
    for path in stale:
        print(f'out of date: {path}', file=sys.stderr)
    return 1 if stale else 0


if __name__ == '__main__':
    raise SystemExit(main())
