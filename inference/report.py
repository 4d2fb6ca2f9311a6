"""The run report: goals PASS/FAIL with their numbers, tokens per word, loss curves, held-out perplexity per stage,
task scores per stage, wall time per stage and sample generations, from one run directory.

    python inference/report.py --run_dir outputs/demo --output_dir outputs/demo

writes ``report.md`` (also printed), ``report.json`` and PNG charts into ``--output_dir``. What it reads from the
run directory, and what each goal means: langadapt/report/__init__.py.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from langadapt.cli import parse_args, run_main
from langadapt.report import REPORT_MD, Goals, write_report

logger = logging.getLogger("langadapt.report")


@dataclass
class ReportArguments:
    """Where the run is and where the report goes."""

    run_dir: str | None = field(default=None, metadata={"help": "Run directory (stage outputs). Required."})
    output_dir: str | None = field(
        default=None, metadata={"help": "Folder for report.md, report.json and the charts. Default: --run_dir."}
    )
    quiet: bool = field(default=False, metadata={"help": "Do not print the report."})

    def __post_init__(self) -> None:
        if not self.run_dir:
            raise ValueError("--run_dir is required: the folder the pipeline wrote its stage outputs into")
        if not os.path.isdir(self.run_dir):
            raise ValueError(f"--run_dir: {self.run_dir} is not a folder; run the pipeline first")
        self.output_dir = self.output_dir or self.run_dir


def main(argv=None) -> dict:
    args, goals = parse_args((ReportArguments, Goals), argv, description=__doc__)
    text, data = write_report(args.run_dir, args.output_dir, goals)
    if not args.quiet:
        print(text)
    logger.info("wrote %s", os.path.join(args.output_dir, REPORT_MD))
    return data


if __name__ == "__main__":
    run_main(main)
