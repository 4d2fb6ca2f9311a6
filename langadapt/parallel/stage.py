"""The data/prepare_parallel.py stage: its arguments and the function that reads, cleans and writes everything."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from langadapt.errors import InputError
from langadapt.io import resolve_files, write_json, write_jsonl, write_text
from langadapt.normalize import NormalizerConfig
from langadapt.parallel.clean import clean_pairs
from langadapt.parallel.documents import pretraining_documents
from langadapt.parallel.files import read_pairs
from langadapt.parallel.instructions import translation_instructions
from langadapt.parallel.pairs import PAIR_EXTENSIONS
from langadapt.parallel.report import report_markdown

if TYPE_CHECKING:  # the argument dataclass lives with the other scripts' arguments
    from langadapt.args.data import ParallelArguments

logger = logging.getLogger(__name__)


def merge_repeated_flags(argv: Sequence[str], flags: Sequence[str]) -> list[str]:
    """``--source a --source b`` -> ``--source a b``: argparse's ``nargs="+"`` would keep only the last."""
    argv = list(argv)
    for flag in flags:
        values, rest, i = [], [], 0
        while i < len(argv):
            if argv[i] == flag:
                i += 1
                while i < len(argv) and not argv[i].startswith("--"):
                    values.append(argv[i])
                    i += 1
            else:
                rest.append(argv[i])
                i += 1
        argv = rest + ([flag, *values] if values or flag in argv else [])
    return argv


def write_parallel_data(args: ParallelArguments, out: str) -> dict:
    """Read, clean and turn into training data the pairs ``args`` names, written into the folder ``out``:

    ``pretrain/parallel.jsonl`` (documents), ``sft/translation.<sft_format>`` (instructions), ``pairs.jsonl`` (the
    cleaned pairs with their origin), ``report.json`` and ``report.md``. Returns the report. Bad input raises
    :class:`InputError` (naming file:line, or the filter that left nothing) before anything is written.
    """
    norm = None
    if args.normalize:
        norm = NormalizerConfig.from_dir(args.normalizer_dir) if args.normalizer_dir else NormalizerConfig()
    logger.info("sources %s, inputs %s, layouts %s, normalizer %s", args.source, args.input, args.layout_ratios, norm)

    # 1. Read every pair (bad rows and unparsable catalogues stop here, naming file:line).
    files = resolve_files(args.input, "input", PAIR_EXTENSIONS) if args.input else []
    pairs, reading = read_pairs(files, args.source, args.tsv_column_order, args.en_field, args.fa_field)
    logger.info("read %d pairs from %d sources", len(pairs), len(reading))

    # 2. Normalize and filter; nothing left -> error naming the filter that removed the last pairs.
    kept, cleaning = clean_pairs(pairs, args.filter_config, norm)
    logger.info("kept %d of %d pairs; dropped %s", len(kept), len(pairs), cleaning["dropped"])

    # 3. The two training sets.
    docs, layouts = pretraining_documents(kept, args.layout_ratios, args.seed)
    examples, sft_counts = translation_instructions(kept, args.direction_list, args.instruction_fa_ratio, args.seed,
                                                    norm)

    # 4. Write.
    sft_file = f"sft/translation.{args.sft_format}"
    report = {
        "reading": {k: dict(v) for k, v in reading.items()},
        "cleaning": cleaning,
        "pretraining": {"file": "pretrain/parallel.jsonl", "documents": len(docs), "layouts": layouts,
                        "ratios": args.layout_ratios},
        "sft": {"file": sft_file, "examples": len(examples), "counts": sft_counts},
        "normalizer": None if norm is None else dataclasses.asdict(norm),
    }
    write_jsonl(os.path.join(out, "pretrain", "parallel.jsonl"), docs)
    if args.sft_format == "json":
        write_json(os.path.join(out, sft_file), examples)
    else:
        write_jsonl(os.path.join(out, sft_file), examples)
    write_jsonl(os.path.join(out, "pairs.jsonl"), ({"en": p.en, "fa": p.fa, "origin": p.origin} for p in kept))
    write_json(os.path.join(out, "report.json"), report)
    write_text(os.path.join(out, "report.md"), report_markdown(report))
    return report
