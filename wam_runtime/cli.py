"""``wam-runtime``: operator tools that need no running ROS graph.

    wam-runtime inspect MODEL                      contract, inputs and outputs, validated
    wam-runtime check-config CONFIG [--urdf URDF] [--model MODEL] [--controllers YAML]
                                                   parameters, URDF, joint names, limits table,
                                                   model inference time against the timeouts
    wam-runtime export --policy MOD:ATTR --contract JSON --out ONNX [--samples NPZ] ...
                                                   torch policy -> ONNX + contract + parity
    wam-runtime check-launch [FILE ...] [--arg NAME:=VALUE ...]
                                                   static validation of launch files
    wam-runtime replay BAG ...                     rosbag2 replay (wam_runtime.replay.cli)

Installed by colcon into ``lib/wam_runtime``: run it as ``ros2 run wam_runtime wam-runtime``
(or ``python -m wam_runtime.cli`` from a source tree). Exit codes: 0 valid, 2 invalid or
bad usage.
"""

import argparse
import os
import sys
from typing import Any, Dict, List, Optional

EXIT_OK, EXIT_INVALID = 0, 2


def _inspect(args: argparse.Namespace) -> int:
    from wam_runtime.tools.model_info import format_report, inspect_model
    report = inspect_model(args.model)
    if args.json:
        import json
        print(json.dumps(report.contract.to_dict() if report.contract else None, indent=2))
        if report.error:
            print(f'INVALID   {report.error}', file=sys.stderr)
    else:
        print(format_report(report))
    return EXIT_INVALID if report.error else EXIT_OK


def _section(sections: Dict[str, Dict[str, Any]], node: str, namespace: str
             ) -> Dict[str, Any]:
    from wam_runtime.tools.params_check import fqn, parameters_for
    values, _ = parameters_for(sections, fqn(namespace, node))
    return values


def _limits_rows(setup) -> List[Any]:
    from wam_runtime.core.limits import LimitRow
    lim = setup.config.limits
    p = setup.params
    rows = []
    for i, name in enumerate(lim.joint_names):
        for key, values in (('lower_limits_rad', lim.lower), ('upper_limits_rad', lim.upper),
                            ('max_velocity_rad_s', lim.max_velocity),
                            ('max_acceleration_rad_s2', lim.max_acceleration),
                            ('max_jerk_rad_s3', lim.max_jerk)):
            source = 'config' if p.get(key) else 'none'
            rows.append(LimitRow(name, key, float(values[i]), source))
    return rows


def _check_config(args: argparse.Namespace) -> int:
    from wam_runtime.core.contract import ContractError
    from wam_runtime.core.gate import LimitsError
    from wam_runtime.core.limits import format_limits_table
    from wam_runtime.core.params import ConfigError, POLICY_PARAMS, resolve
    from wam_runtime.core.safety_config import build_safety
    from wam_runtime.tools.model_info import inspect_model
    from wam_runtime.tools.params_check import (
        check_controllers, check_param_file, load_param_file, resolve_path)

    errors: List[str] = []
    findings = check_param_file(args.config)
    for f in findings:
        print(f)
    errors += [str(f) for f in findings if f.level == 'error']
    try:
        sections = load_param_file(args.config)
    except ConfigError as exc:
        print(f'INVALID   {exc}')
        return EXIT_INVALID
    base = os.path.dirname(os.path.abspath(args.config))
    safety = _section(sections, 'safety_controller', args.namespace)
    policy = _section(sections, 'policy_node', args.namespace)
    if not safety:
        errors.append(f'{args.config}: no safety_controller section applies to '
                      f'{args.namespace or "/"}safety_controller')
    urdf = args.urdf or safety.get('urdf_path') or ''
    if urdf:
        safety['urdf_path'] = args.urdf or resolve_path(urdf, base)
    print(f'config    {args.config}')
    print(f'urdf      {safety.get("urdf_path") or "(none: limits from the config only)"}')
    setup = None
    if safety:
        try:
            setup = build_safety(safety)
        except (ConfigError, LimitsError, ContractError) as exc:
            errors.append(f'safety_controller: {exc}')
    joints = list(setup.config.limits.joint_names) if setup else list(
        safety.get('joint_names') or [])
    if setup:
        print(f'joints    {joints} (command order)')
        p = setup.params
        print(f'gate      {p["control_rate_hz"]:g} Hz, output {p["output_mode"]}, margins '
              f'per joint (table), scaling {p["scaling"]}, blend {p["blend"]}, '
              f'workspace {"on" if setup.config.workspace_ok else "off"}, surprise '
              f'{"on" if setup.governor else "off"}')
        print('effective limits (value and where it came from):')
        print(setup.limits_table or format_limits_table(_limits_rows(setup)))
    if policy:
        try:
            resolve(POLICY_PARAMS, dict(policy, model_path=policy.get('model_path') or '-'),
                    'policy_node')
        except ConfigError as exc:
            errors.append(f'policy_node: {exc}')
        names = policy.get('joint_names')
        if names and joints and set(names) != set(joints):
            errors.append(f'policy_node.joint_names {names} differ from '
                          f'safety_controller.joint_names {joints}')
    model = args.model or (resolve_path(policy['model_path'], base)
                           if policy.get('model_path') else None)
    warnings: List[str] = []
    if model:
        report = inspect_model(model)
        if report.error:
            errors.append(f'model: {report.error}')
        else:
            acts = list(report.contract.action.joint_names)
            print(f'model     {model}: acts on {acts}, cameras '
                  f'{[c.name for c in report.contract.cameras]}')
            if joints and set(acts) != set(joints):
                errors.append(f'model action joints {acts} differ from '
                              f'safety_controller.joint_names {joints} (every chunk would be '
                              'rejected)')
            if args.timing_runs > 0:
                warnings += _model_timing(model, report.contract, policy, safety, args,
                                          errors)
    if args.controllers:
        if joints:
            errors += [str(f) for f in check_controllers(args.controllers, joints)
                       if f.level == 'error']
            print(f'controllers {args.controllers}: checked against the joint order')
        else:
            errors.append('--controllers: no joint_names to compare with')
    for w in warnings:
        print(f'WARNING   {w}')
    for e in errors:
        print(f'INVALID   {e}')
    if not errors:
        print('valid     parameters, URDF and joint names agree'
              + (f' ({len(warnings)} warning{"s" if len(warnings) > 1 else ""} above)'
                 if warnings else ''))
    return EXIT_INVALID if errors else EXIT_OK


def _model_timing(model: str, contract: Any, policy: Dict[str, Any], safety: Dict[str, Any],
                  args: argparse.Namespace, errors: List[str]) -> List[str]:
    """Measure the model's inference time; return the timing warnings (figures included)."""
    from wam_runtime.core.contract import ContractError
    from wam_runtime.core.inference import ModelLoadError
    from wam_runtime.core.params import ConfigError
    from wam_runtime.tools.params_check import measure_inference, timing_findings
    try:
        timing = measure_inference(model, policy, args.timing_runs)
    except (ModelLoadError, ContractError, ConfigError) as exc:
        errors.append(f'model: {exc}')
        return []
    print(f'timing    {timing}')
    try:
        found = timing_findings(timing, contract.action.horizon, contract.action.dt_s,
                                policy, safety)
    except ConfigError as exc:
        errors.append(f'policy_node: {exc}')
        return []
    return [f.message for f in found]


def _export(args: argparse.Namespace) -> int:
    from wam_runtime.export import run
    return run(args)


def _check_launch(args: argparse.Namespace) -> int:
    from wam_runtime.processes import share_dir
    from wam_runtime.tools.launch_check import format_plan, launch_files, validate_launch
    root = os.path.abspath(args.share or share_dir())
    arguments = {}
    for item in args.arg:
        name, sep, value = item.partition(':=')
        if not sep:
            print(f'--arg {item!r}: expected NAME:=VALUE', file=sys.stderr)
            return EXIT_INVALID
        arguments[name] = value
    files = args.files or launch_files(root)
    print(f'share folder: {root}')
    bad = 0
    for path in files:
        plan = validate_launch(path, root, arguments)
        print(format_plan(plan, root))
        bad += len(plan.errors)
    return EXIT_INVALID if bad else EXIT_OK


def _replay(argv: List[str]) -> int:
    try:
        from wam_runtime.replay.cli import main as replay_main
    except ModuleNotFoundError as exc:
        if exc.name in ('wam_runtime.replay', 'wam_runtime.replay.cli'):
            print('wam-runtime replay: the replay tool (wam_runtime.replay.cli) is not part '
                  'of this installation', file=sys.stderr)
        else:
            print(f'wam-runtime replay: cannot start, module {exc.name!r} is missing '
                  f'({exc})', file=sys.stderr)
        return EXIT_INVALID
    return replay_main(argv)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``wam-runtime`` (``replay`` has its own)."""
    ap = argparse.ArgumentParser(prog='wam-runtime', description=__doc__.split('\n')[0])
    sub = ap.add_subparsers(dest='command', required=True, metavar='COMMAND')
    p = sub.add_parser('inspect', help='print and validate the contract of a model')
    p.add_argument('model', help='ONNX file')
    p.add_argument('--json', action='store_true', help='print the contract as JSON')
    p.set_defaults(func=_inspect)
    p = sub.add_parser('check-config', help='validate a parameter file against the URDF '
                                            'and print the effective limits')
    p.add_argument('config', help='ROS parameter YAML (policy_node, safety_controller)')
    p.add_argument('--urdf', help='robot URDF (default: safety_controller.urdf_path)')
    p.add_argument('--model', help='ONNX model (default: policy_node.model_path, if set)')
    p.add_argument('--controllers', help='ros2_control controller YAML to check the joint '
                                         'order against')
    p.add_argument('--namespace', default='', help='node namespace the sections must match')
    p.add_argument('--timing-runs', type=int, default=5,
                   help='inferences timed (after warm-up) to check the model against '
                        'max_chunk_age_s, the chunk coverage and command_timeout_s '
                        '(0 = skip; default 5)')
    p.set_defaults(func=_check_config)
    p = sub.add_parser('export', help='export a torch policy to ONNX with its contract and '
                                      'a parity report (wam_runtime.export)')
    from wam_runtime.export import add_arguments
    add_arguments(p)
    p.set_defaults(func=_export)
    p = sub.add_parser('check-launch', help='statically validate launch files')
    p.add_argument('files', nargs='*', help='launch files (default: all of the package)')
    p.add_argument('--arg', action='append', default=[], metavar='NAME:=VALUE',
                   help='launch argument, as on the ros2 launch command line')
    p.add_argument('--share', help='package share folder (default: the installed one, or '
                                   'the source tree)')
    p.set_defaults(func=_check_launch)
    sub.add_parser('replay', help='replay a rosbag2 through the policy and the gate '
                                  '(wam-runtime replay -h)', add_help=False)
    return ap


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point (console script ``wam-runtime``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == 'replay':
        return _replay(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == '__main__':
    raise SystemExit(main())
