"""``wam-runtime``: one command line for every tool of the package.

    wam-runtime COMMAND [ARGS ...]     run a tool; ``wam-runtime COMMAND --help`` is its help
    wam-runtime --help                 the commands

Each command is a module with a ``main(argv)`` that also runs as ``python -m MODULE``; it is
imported only when its command runs, so a tool's dependencies (rclpy, MuJoCo, torch) load
for that tool alone. ``make setup`` installs the console script into ``.venv/bin``, colcon
into ``lib/wam_runtime`` (``ros2 run wam_runtime wam-runtime ...``); from a source tree
without either, ``python -m wam_runtime.cli``. Exit codes are the tool's; 2 is bad usage
(an unknown command included), 130 interrupted.
"""

import argparse
import importlib
import sys
from typing import Dict, List, NamedTuple, Optional

EXIT_USAGE, EXIT_INTERRUPTED = 2, 130


class Command(NamedTuple):
    """A subcommand: the module whose ``main(argv)`` runs it, and one line of help."""

    module: str
    summary: str


COMMANDS: Dict[str, Command] = {
    'demo': Command('wam_runtime.demo.reach_demo',
                    'closed-loop reaching demo over ROS: simulator, model, gate'),
    'demo-slice': Command('wam_runtime.demo.slice_demo',
                          'synthetic camera -> policy -> gate slice at 640x480'),
    'record': Command('wam_runtime.ros.record',
                      'record episode bags from the running nodes (recorder_node)'),
    'record-sim': Command('wam_runtime.demo.simdata',
                          'record simulator episodes: the demo with the recorder'),
    'replay': Command('wam_runtime.replay.cli',
                      'replay a rosbag2 through the policy and the safety gate'),
    'inspect': Command('wam_runtime.tools.inspect_model',
                       'print and validate the contract of a model'),
    'check-config': Command('wam_runtime.tools.check_config',
                            'check a parameter file against URDF, model, controllers'),
    'check-launch': Command('wam_runtime.tools.check_launch',
                            'statically validate launch files (or: launch-check)'),
    'check-security': Command('wam_runtime.tools.sros2_policy',
                              'check an SROS2 policy, print what each enclave may do'),
    'config-docs': Command('wam_runtime.tools.config_docs',
                           'check (--write: regenerate) config/nodes/*.yaml'),
    'export': Command('wam_runtime.export',
                      'torch policy -> ONNX with its contract, parity checked'),
    'dataset': Command('wam_runtime.sim.dataset',
                       'generate expert demonstrations in the reference world'),
    'train': Command('wam_runtime.sim.train',
                     'train the reference model, export it to ONNX (torch)'),
    'evaluate': Command('wam_runtime.sim.evaluate',
                        'evaluate a model in the reference world, in process'),
}

# Other names accepted for a command.
ALIASES: Dict[str, str] = {'launch-check': 'check-launch'}


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser (its help and usage; commands are dispatched by name)."""
    width = max(len(name) for name in COMMANDS) + 2
    lines = [f'  {name:<{width}} {cmd.summary}' for name, cmd in COMMANDS.items()]
    ap = argparse.ArgumentParser(
        prog='wam-runtime', formatter_class=argparse.RawDescriptionHelpFormatter,
        description='One command line for wam_runtime: demos, recording, replay, checks, '
                    'export and training.',
        epilog='commands (wam-runtime COMMAND --help for its options):\n' + '\n'.join(lines))
    ap.add_argument('command', metavar='COMMAND', help='one of the commands below')
    ap.add_argument('args', metavar='ARGS', nargs=argparse.REMAINDER,
                    help="the command's arguments")
    return ap


def run(name: str, argv: List[str]) -> int:
    """Import the module of command ``name`` and run its ``main(argv)``; return the exit code.

    While it runs, ``sys.argv`` is ``['wam-runtime NAME', *argv]``, so that the tool's
    argparse names itself ``wam-runtime NAME`` in its usage and errors.
    """
    module_name = COMMANDS[name].module
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if f'{module_name}.'.startswith(f'{exc.name}.'):
            print(f'wam-runtime {name}: the {name} tool ({module_name}) is not part of this '
                  'installation', file=sys.stderr)
        else:
            print(f'wam-runtime {name}: cannot start, module {exc.name!r} is missing '
                  f'({exc})', file=sys.stderr)
        return EXIT_USAGE
    saved = sys.argv
    sys.argv = [f'wam-runtime {name}', *argv]
    try:
        return module.main(argv)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        sys.argv = saved


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point (console script ``wam-runtime``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    name = ALIASES.get(argv[0], argv[0]) if argv else None
    if name in COMMANDS:
        return run(name, argv[1:])
    parser = build_parser()
    if argv[:1] in (['-h'], ['--help']):
        parser.print_help()
        return 0
    if not argv:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    parser.print_usage(sys.stderr)
    print(f'wam-runtime: error: unknown command {argv[0]!r} (commands: {", ".join(COMMANDS)})',
          file=sys.stderr)
    return EXIT_USAGE


if __name__ == '__main__':
    sys.exit(main())
