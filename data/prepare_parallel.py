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

Logic lives in langadapt/parallel.py; see data/README-parallel.md for the bundled sources and their licenses.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys

from langadapt.cli import parse_args, run_main
from langadapt.io import atomic_output_dir, resolve_files, write_json, write_text
from langadapt.normalize import NormalizerConfig
from langadapt.parallel import (
    PAIR_EXTENSIONS,
    ParallelArguments,
    clean_pairs,
    merge_repeated_flags,
    pretraining_documents,
    read_pairs,
    report_markdown,
    translation_instructions,
)
from langadapt.runinfo import write_run_args

logger = logging.getLogger("prepare_parallel")


def _write_jsonl(path: str, records) -> None:
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def main(argv=None):
    # 1. Arguments. Repeated --input/--source flags accumulate.
    argv = merge_repeated_flags(sys.argv[1:] if argv is None else argv, ("--input", "--source"))
    (args,) = parse_args((ParallelArguments,), argv, description=__doc__)
    norm = None
    if args.normalize:
        norm = NormalizerConfig.from_dir(args.normalizer_dir) if args.normalizer_dir else NormalizerConfig()
    logger.info("sources %s, inputs %s, layouts %s, normalizer %s", args.source, args.input, args.layout_ratios, norm)

    # 2. Read every pair (bad rows and unparsable catalogues stop here, naming file:line).
    files = resolve_files(args.input, "--input", PAIR_EXTENSIONS) if args.input else []
    pairs, reading = read_pairs(files, args.source, args.tsv_column_order, args.en_field, args.fa_field)
    logger.info("read %d pairs from %d sources", len(pairs), len(reading))

    # 3. Normalize and filter; nothing left -> error naming the filter that removed the last pairs.
    kept, cleaning = clean_pairs(pairs, args.filter_config, norm)
    logger.info("kept %d of %d pairs; dropped %s", len(kept), len(pairs), cleaning["dropped"])

    # 4. Build the two training sets.
    docs, layouts = pretraining_documents(kept, args.layout_ratios, args.seed)
    examples, sft_counts = translation_instructions(kept, args.direction_list, args.instruction_fa_ratio, args.seed,
                                                    norm)

    # 5. Write everything into a temporary folder that becomes --output_dir only when complete.
    sft_file = f"sft/translation.{args.sft_format}"
    report = {
        "reading": {k: dict(v) for k, v in reading.items()},
        "cleaning": cleaning,
        "pretraining": {"file": "pretrain/parallel.jsonl", "documents": len(docs), "layouts": layouts,
                        "ratios": args.layout_ratios},
        "sft": {"file": sft_file, "examples": len(examples), "counts": sft_counts},
        "normalizer": None if norm is None else dataclasses.asdict(norm),
    }
    with atomic_output_dir(args.output_dir, overwrite=args.overwrite) as tmp:
        _write_jsonl(os.path.join(tmp, "pretrain", "parallel.jsonl"), docs)
        if args.sft_format == "json":
            write_json(os.path.join(tmp, sft_file), examples)
        else:
            _write_jsonl(os.path.join(tmp, sft_file), examples)
        _write_jsonl(os.path.join(tmp, "pairs.jsonl"),
                     ({"en": p.en, "fa": p.fa, "origin": p.origin} for p in kept))
        write_json(os.path.join(tmp, "report.json"), report)
        write_text(os.path.join(tmp, "report.md"), report_markdown(report))
        write_run_args(tmp, {"parallel": args})
    logger.info("wrote %d documents, %d instructions to %s", len(docs), len(examples), args.output_dir)
    return report


if __name__ == "__main__":
    run_main(main)
