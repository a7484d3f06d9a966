"""``wam-runtime record``: record episode bags with ``recorder_node``, its parameters as flags.

Runs ``recorder_node`` in this process until Ctrl-C, which closes the open episode: one
rosbag2 per episode in ``OUT/episode_NNNN/`` and a line per episode in
``OUT/episodes.jsonl``, exactly as ``ros2 run wam_runtime recorder_node --ros-args -p
output_dir:=OUT ...`` does. A flag sets the node parameter it names; a parameter without its
flag keeps the node's default. Everything from ``--ros-args`` on goes to the node unchanged
(remaps, ``--params-file``, ``--enclave``, ``-p`` for any other parameter).

    wam-runtime record --out /data/episodes --cameras front wrist --compressed wrist
"""

import argparse
import json
import sys
from typing import Any, Dict, List, Optional, Tuple

from wam_runtime.core.params import Kind
from wam_runtime.ros.recorder_node import main as recorder_main, PARAMS

PROG = 'wam-runtime record'

# flag, parameter of recorder_node, argparse options
FLAGS: Tuple[Tuple[str, str, Dict[str, Any]], ...] = (
    ('--out', 'output_dir', {'required': True, 'metavar': 'DIR'}),
    ('--cameras', 'camera_names', {'nargs': '+', 'metavar': 'NAME'}),
    ('--compressed', 'compressed_cameras', {'nargs': '+', 'metavar': 'NAME'}),
    ('--storage', 'storage_id', {'metavar': 'ID'}),
    ('--max-episode-s', 'max_episode_s', {'type': float, 'metavar': 'S'}),
    ('--outcome-topic', 'outcome_topic', {'metavar': 'TOPIC'}),
    ('--no-split-on-outcome', 'split_on_outcome', {'action': 'store_false', 'default': None}),
    ('--prefix', 'episode_prefix', {'metavar': 'NAME'}),
    ('--diagnostics', 'record_diagnostics', {'action': 'store_true', 'default': None}),
)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``wam-runtime record`` (help from the node's schema)."""
    described = {p.name: p for p in PARAMS}
    ap = argparse.ArgumentParser(
        prog=PROG, usage=f'{PROG} --out DIR [options] [--ros-args ...]',
        description='Record episodes (cameras, joint states, chunks, commands, safety events, '
                    'outcomes) to one rosbag2 per episode with recorder_node.',
        epilog='Arguments from --ros-args on are passed to recorder_node unchanged.')
    for flag, name, options in FLAGS:
        p = described[name]
        default = '' if isinstance(p.default, Kind) else f' (default {json.dumps(p.default)})'
        text = f'{name}: {p.description}{default}'.replace('%', '%%')
        ap.add_argument(flag, dest=name, help=text, **options)
    ap.add_argument('--namespace', metavar='NS', help='namespace of the node and its topics')
    return ap


def ros_arguments(argv: List[str]) -> List[str]:
    """Return the node's command line (program name first) for ``wam-runtime record`` argv."""
    cut = argv.index('--ros-args') if '--ros-args' in argv else len(argv)
    args = build_parser().parse_args(argv[:cut])
    out = [PROG, '--ros-args']
    for _, name, _ in FLAGS:
        value = getattr(args, name)
        if value is not None:
            out += ['-p', f'{name}:={json.dumps(value)}']
    if args.namespace:
        out += ['-r', f'__ns:=/{args.namespace.lstrip("/")}']
    return out + argv[cut:]


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``wam-runtime record`` (argv without the command word)."""
    return recorder_main(ros_arguments(list(sys.argv[1:] if argv is None else argv)))


if __name__ == '__main__':
    sys.exit(main())
