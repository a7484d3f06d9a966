"""``wam-runtime check-launch``: static validation of the package's launch files.

Evaluates each launch file from its source as ``ros2 launch`` would (see
``wam_runtime.tools.launch_check``) and prints, per file, the nodes with their parameter
sources and remapped topics, what the launch expects from and provides to the outside, and
every problem. Exit code 0: valid, 2: invalid or bad usage.

    wam-runtime check-launch [FILE ...] [--arg NAME:=VALUE ...] [--share DIR]
"""

import argparse
import os
import sys
from typing import List, Optional

from wam_runtime.processes import share_dir
from wam_runtime.tools.launch_check import format_plan, launch_files, validate_launch

EXIT_OK, EXIT_INVALID = 0, 2


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``wam-runtime check-launch``."""
    ap = argparse.ArgumentParser(prog='wam-runtime check-launch',
                                 description='Statically validate launch files.')
    ap.add_argument('files', nargs='*', help='launch files (default: all of the package)')
    ap.add_argument('--arg', action='append', default=[], metavar='NAME:=VALUE',
                    help='launch argument, as on the ros2 launch command line')
    ap.add_argument('--share', help='package share folder (default: the installed one, or '
                                    'the source tree)')
    return ap


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``wam-runtime check-launch`` (argv without the command word)."""
    args = build_parser().parse_args(argv)
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


if __name__ == '__main__':
    sys.exit(main())
