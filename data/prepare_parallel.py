"""Turn English-Persian parallel pairs into bilingual pretraining text and translation instructions.

    python data/prepare_parallel.py --output_dir data_out/parallel                  # bundled: Django + PLR manifest
    python data/prepare_parallel.py --input pairs.tsv more.jsonl app.po --output_dir data_out/parallel \
        --layouts en_fa=0.5,fa_en=0.3,interleaved=0.2 --instruction_fa_ratio 0.5

Writes into --output_dir (built under a temporary name, renamed into place when complete):

    pretrain/parallel.jsonl   {"text", "layout"}: one document per pair (read by the pretraining stage's --dataset_dir)
    sft/translation.json(l)   {"instruction", "input", "output"}: both directions, Persian and English wording
    pairs.jsonl               {"en", "fa", "origin"}: the cleaned pairs
    report.json, report.md    what was read, skipped, dropped by which filter, and written
    run_args.json             the arguments, git commit, SLURM_JOB_ID

Logic lives in langadapt/parallel/; see data/README-parallel.md for the bundled sources and their licenses.
"""

from __future__ import annotations

import logging
import sys

from langadapt.cli import parse_args, run_main
from langadapt.io import atomic_output_dir
from langadapt.args.data import ParallelArguments
from langadapt.parallel import merge_repeated_flags, write_parallel_data
from langadapt.runinfo import write_run_args

logger = logging.getLogger("prepare_parallel")


def main(argv=None):
    # Repeated --input/--source flags accumulate.
    argv = merge_repeated_flags(sys.argv[1:] if argv is None else argv, ("--input", "--source"))
    (args,) = parse_args((ParallelArguments,), argv, description=__doc__)
    # Built under a temporary name (bad rows, unparsable catalogues and an empty result stop it there, naming
    # file:line or the filter); --output_dir appears only when complete.
    with atomic_output_dir(args.output_dir, overwrite=args.overwrite) as tmp:
        report = write_parallel_data(args, tmp)
        write_run_args(tmp, {"parallel": args})
    logger.info("wrote %d documents, %d instructions to %s", report["pretraining"]["documents"],
                report["sft"]["examples"], args.output_dir)
    return report


if __name__ == "__main__":
    run_main(main)
