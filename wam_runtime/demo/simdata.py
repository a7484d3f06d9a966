"""Recorded runs from the simulator: the closed-loop demo with ``recorder_node`` listening.

Used by the tests and the benchmark to make real bags (MuJoCo frames, joint states, policy
chunks, gated commands, safety events, outcomes) in either storage format, and usable by
hand: ``python -m wam_runtime.demo.simdata --out DIR --seeds 10000 10001``.
"""

import argparse
import glob
import json
import os
from typing import Any, Callable, Dict, List, Optional, Sequence

from wam_runtime.core.interfaces import ESTOP, JOINT_TRAJECTORY
from wam_runtime.processes import NodeProcess, random_domain_id, ros_env, share_dir


def record_episodes(out_dir: str, seeds: Sequence[int], storages: Sequence[str] = ('mcap',),
                    config: Optional[str] = None, model: Optional[str] = None) -> Dict:
    """Run one demo episode per seed and record it; return {storage: [episode folders]}.

    One ``recorder_node`` per storage format listens on the demo's DDS domain and writes
    ``<out_dir>/<storage>/episode_NNNN``; episode ``i`` ends with the outcome of seed ``i``
    (the last folder holds the time after the last outcome). ``'demo'`` maps to the
    demo's summary.
    """
    from wam_runtime.demo import reach_demo
    share = share_dir()
    config = config or os.path.join(share, 'config', 'reference_arm.yaml')
    model = model or os.path.join(share, 'models', 'reference_reach.onnx')
    domain = random_domain_id()
    env = ros_env(domain)
    os.makedirs(out_dir, exist_ok=True)
    recorders = [NodeProcess('wam_runtime.ros.recorder_node', env, f'recorder_{s}', None,
                             ['-p', f'output_dir:={os.path.join(out_dir, s)}',
                              '-p', f'storage_id:={s}'], log_dir=out_dir)
                 for s in storages]
    try:
        summary = reach_demo.run(list(seeds), os.path.join(out_dir, 'demo'), config, model,
                                 verbose=False, domain_id=domain,
                                 ready=_recorders_matched([r.name for r in recorders]))
    finally:
        codes = [r.stop(timeout_s=15.0) for r in recorders]
    result: Dict = {'demo': summary, 'recorder_exit_codes': codes}
    for s in storages:
        result[s] = sorted(p for p in glob.glob(os.path.join(out_dir, s, 'episode_*'))
                           if os.path.isdir(p))
    return result


def _recorders_matched(names: Sequence[str]) -> Callable[[Any], bool]:
    """Return a predicate: every recorder has matched a publisher of what the demo sends.

    Without it the first episode's bag can start without a topic whose publisher the
    recorder had not yet discovered (seen: the first 3 s of ``commands`` and
    ``safety/events`` missing under load).
    """
    unused = {'/' + JOINT_TRAJECTORY, '/' + ESTOP}     # not published by the demo

    def matched(monitor) -> bool:
        for name in names:
            diag = monitor.diag(f'{name}: recorder')
            if diag is None or set(diag['topics_without_publishers'].split()) - unused:
                return False
        return True
    matched.__doc__ = f'recorders {list(names)} have not matched every demo publisher'
    return matched


_ONCE: Dict[str, Dict] = {}


def recorded_once(out_dir: str, seeds: Sequence[int] = (20000,),
                  storages: Sequence[str] = ('mcap', 'sqlite3')) -> Dict:
    """Return :func:`record_episodes` for ``out_dir``, recording only on the first call.

    Test modules share one recording per session this way (one process, one cache).
    """
    if out_dir not in _ONCE:
        _ONCE[out_dir] = record_episodes(out_dir, seeds, storages)
    return _ONCE[out_dir]


def main(argv: Optional[List[str]] = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', required=True)
    ap.add_argument('--seeds', type=int, nargs='+', default=[10000])
    ap.add_argument('--storage', nargs='+', default=['mcap'], choices=['mcap', 'sqlite3'])
    args = ap.parse_args(argv)
    res = record_episodes(args.out, args.seeds, args.storage)
    print(json.dumps({k: v for k, v in res.items() if k != 'demo'}, indent=1))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
