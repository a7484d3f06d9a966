"""A launch plan for people and for running its nodes alone.

``format_plan`` prints arguments, nodes with their parameter sources and moved topics,
processes, what the launch expects from and provides to the outside, and the findings;
``ros_arguments`` is a node's ``--ros-args`` as launch_ros would pass them.
"""

import os
from typing import List

import yaml

from wam_runtime.tools.launch_check.plan import (
    DICT_SECTION, LaunchPlan, NodeDecl, resolve_topic)


def ros_arguments(node: NodeDecl, tmp_dir: str) -> List[str]:
    """Return the ``--ros-args`` arguments launch_ros would give ``node`` (to run it alone).

    Namespace, every parameter source in launch order (a dictionary becomes a parameter
    file keyed ``/**``, as launch_ros writes it), every remapping (scope rules first), and
    the node's own ``--ros-args`` arguments. The node name is left to the caller.
    """
    args: List[str] = []
    if node.namespace:
        args += ['-r', f'__ns:={node.namespace}']
    for i, (kind, source) in enumerate(node.params):
        if kind == 'file':
            args += ['--params-file', str(source)]
            continue
        path = os.path.join(tmp_dir, f'{node.name}_params_{i}.yaml')
        with open(path, 'w', encoding='utf-8') as f:
            yaml.safe_dump({DICT_SECTION: {'ros__parameters': dict(source)}}, f)
        args += ['--params-file', path]
    for src, dst in node.remaps:
        args += ['-r', f'{src}:={dst}']
    extra = [str(a) for a in node.arguments]
    if extra[:1] == ['--ros-args']:
        args += extra[1:]
    return args


def launch_files(share_root: str) -> List[str]:
    """Return the package's launch files."""
    folder = os.path.join(share_root, 'launch')
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if f.endswith('.launch.py'))


def format_plan(plan: LaunchPlan, share_root: str) -> str:
    """Human-readable summary of a plan: arguments, nodes, processes, topics, findings."""
    rel = os.path.relpath(plan.file, share_root)
    lines = [f'== {rel}']
    for a in plan.args.values():
        default = a.default if isinstance(a.default, str) else repr(a.default)
        default = default.replace(share_root, '<share>')
        lines.append(f'  arg {a.name} = {default!r}  {a.description}')
    for n in plan.nodes:
        sources = []
        for kind, src in n.params:
            if kind == 'file':
                sources.append(str(src).replace(share_root, '<share>'))
            else:
                sources.append('{' + ', '.join(f'{k}: {str(v).replace(share_root, "<share>")}'
                                               for k, v in src.items()) + '}')
        lines.append(f'  node {n.fqn} ({n.package}/{n.executable}) params {sources}')
        for e in plan.endpoints:      # the topics a remapping moved
            if e.node == n.fqn and e.resolved != resolve_topic(e.original, n.namespace):
                lines.append(f'    {e.direction} {e.original} -> {e.resolved}')
    for p in plan.processes:
        lines.append(f'  process {" ".join(str(c) for c in p.cmd)}'.replace(share_root,
                                                                            '<share>'))
    for inc in plan.external_includes:
        lines.append(f'  include {inc}')
    inputs = sorted({f'{e.resolved} ({e.type})' for e in plan.unconnected_inputs()})
    outputs = sorted({f'{e.resolved} ({e.type})' for e in plan.unconsumed_outputs()})
    if inputs:
        lines.append(f'  expects from outside: {", ".join(inputs)}')
    if outputs:
        lines.append(f'  provides to outside: {", ".join(outputs)}')
    for f in plan.findings:
        lines.append(f'  {f}')
    if not plan.errors:
        lines.append('  OK')
    return '\n'.join(lines)
