"""``wam-runtime inspect``: print and validate the contract of a model.

Prints the file (size, sha256, opset), the graph inputs and outputs with shapes and types,
the contract and whether the two agree. Exit code 0: valid, 2: invalid or bad usage.

    wam-runtime inspect MODEL [--json]
"""

import argparse
import json
import sys
from typing import List, Optional

from wam_runtime.tools.model_info import format_report, inspect_model

EXIT_OK, EXIT_INVALID = 0, 2


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``wam-runtime inspect``."""
    ap = argparse.ArgumentParser(prog='wam-runtime inspect',
                                 description='Print and validate the contract of a model.')
    ap.add_argument('model', help='ONNX file')
    ap.add_argument('--json', action='store_true', help='print the contract as JSON')
    return ap


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``wam-runtime inspect`` (argv without the command word)."""
    args = build_parser().parse_args(argv)
    report = inspect_model(args.model)
    if args.json:
        print(json.dumps(report.contract.to_dict() if report.contract else None, indent=2))
        if report.error:
            print(f'INVALID   {report.error}', file=sys.stderr)
    else:
        print(format_report(report))
    return EXIT_INVALID if report.error else EXIT_OK


if __name__ == '__main__':
    sys.exit(main())
