"""``python -m wam_runtime.replay``: the same as ``wam-runtime replay``."""

import sys

from wam_runtime.replay.cli import main

if __name__ == '__main__':
    raise SystemExit(main(sys.argv[1:]))
