"""The run report: goals PASS/FAIL with their numbers, tokens per word, loss curves, held-out perplexity per stage,
task scores per stage, wall time per stage and sample generations, from one run directory.

    python inference/report.py --run_dir outputs/demo --output_dir outputs/demo

writes ``report.md`` (also printed), ``report.json`` and PNG charts into ``--output_dir``. What it reads from the
run directory, and what each goal means: langadapt/report/__init__.py.
"""

from __future__ import annotations

import logging
import os

from langadapt.args.inference import ReportArguments
from langadapt.cli import parse_args, run_main
from langadapt.report import REPORT_MD, Goals, write_report

logger = logging.getLogger("langadapt.report")


def main(argv=None) -> dict:
    args, goals = parse_args((ReportArguments, Goals), argv, description=__doc__)
    text, data = write_report(args.run_dir, args.output_dir, goals)
    if not args.quiet:
        print(text)
    logger.info("wrote %s", os.path.join(args.output_dir, REPORT_MD))
    return data


if __name__ == "__main__":
    run_main(main)
