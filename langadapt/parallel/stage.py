"""The data/prepare_parallel.py stage: its arguments and the function that reads, cleans and writes everything."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from langadapt.errors import InputError
from langadapt.io import resolve_files, write_json, write_jsonl, write_text
from langadapt.normalize import NormalizerConfig
from langadapt.parallel.clean import FilterConfig, clean_pairs
from langadapt.parallel.documents import LAYOUTS, pretraining_documents
from langadapt.parallel.files import parse_columns, read_pairs
from langadapt.parallel.instructions import DIRECTIONS, translation_instructions
from langadapt.parallel.pairs import PAIR_EXTENSIONS
from langadapt.parallel.ratios import parse_ratios
from langadapt.parallel.report import report_markdown
from langadapt.parallel.sources import BUNDLED_SOURCES

logger = logging.getLogger(__name__)


@dataclass
class ParallelArguments:
    """Inputs, filters and output layouts of ``data/prepare_parallel.py``."""

    output_dir: str = field(metadata={"help": "Folder to create: pretrain/, sft/, pairs.jsonl, report.json/.md."})
    input: list[str] = field(default_factory=list, metadata={
        "help": "Parallel files or folders: .tsv (2 columns), .jsonl (en/fa fields), .po (msgid en, msgstr fa)."})
    source: list[str] = field(default_factory=list, metadata={
        "help": f"Bundled sources read from installed packages: {', '.join(BUNDLED_SOURCES)}. "
                "With neither --input nor --source, all bundled sources are read."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing, non-empty --output_dir."})
    tsv_columns: str = field(default="en,fa", metadata={"help": "Language of the TSV columns, in order."})
    en_field: str = field(default="en", metadata={"help": "JSONL field holding English."})
    fa_field: str = field(default="fa", metadata={"help": "JSONL field holding Persian."})
    layouts: str = field(default="en_fa=0.4,fa_en=0.4,interleaved=0.2", metadata={
        "help": "Share of pretraining documents per layout: en_fa (English line, then Persian), fa_en, "
                "interleaved (sentence by sentence). Weights are normalized."})
    directions: str = field(default="en_fa,fa_en", metadata={"help": "Translation directions of the SFT data."})
    instruction_fa_ratio: float = field(default=0.5, metadata={
        "help": "Share of translation instructions worded in Persian (the rest in English)."})
    sft_format: str = field(default="json", metadata={"help": "json (one list, the seed's format) or jsonl."})
    max_chars: int = field(default=FilterConfig.max_chars, metadata={"help": "Drop pairs with a longer side."})
    max_length_ratio: float = field(default=FilterConfig.max_length_ratio, metadata={
        "help": "Drop pairs whose longer side is more than this many times the shorter (in characters)."})
    ratio_min_chars: int = field(default=FilterConfig.ratio_min_chars, metadata={
        "help": "Apply --max_length_ratio only when the longer side has at least this many characters."})
    require_persian_script: bool = field(default=True, metadata={
        "help": "Drop pairs whose Persian side has no Arabic-script letter (untranslated copies)."})
    normalizer_dir: str | None = field(default=None, metadata={
        "help": "Tokenizer folder whose langadapt_normalizer.json normalizes the Persian side (default: the "
                "Persian defaults of langadapt.normalize)."})
    normalize: bool = field(default=True, metadata={"help": "Normalize the Persian side at all."})
    seed: int = field(default=42, metadata={"help": "Seed of layout/wording assignment and shuffling."})

    def __post_init__(self) -> None:
        self.layout_ratios = parse_ratios(self.layouts, LAYOUTS, "--layouts")
        self.tsv_column_order = parse_columns(self.tsv_columns)
        self.direction_list = [d.strip() for d in self.directions.split(",") if d.strip()]
        bad = [d for d in self.direction_list if d not in DIRECTIONS]
        if bad or not self.direction_list:
            raise ValueError(f"--directions: expected a comma list of {', '.join(DIRECTIONS)}, got {self.directions!r}")
        if not 0.0 <= self.instruction_fa_ratio <= 1.0:
            raise ValueError(f"--instruction_fa_ratio must be in [0, 1], got {self.instruction_fa_ratio}")
        if self.sft_format not in ("json", "jsonl"):
            raise ValueError(f"--sft_format must be json or jsonl, got {self.sft_format!r}")
        if self.max_chars < 1:
            raise ValueError(f"--max_chars must be >= 1, got {self.max_chars}")
        if self.max_length_ratio < 1.0:
            raise ValueError(f"--max_length_ratio must be >= 1, got {self.max_length_ratio}")
        unknown = [s for s in self.source if s not in BUNDLED_SOURCES]
        if unknown:
            raise ValueError(f"--source: unknown source(s) {unknown}; choose from {', '.join(BUNDLED_SOURCES)}")
        if not self.input and not self.source:
            self.source = list(BUNDLED_SOURCES)

    @property
    def filter_config(self) -> FilterConfig:
        return FilterConfig(max_chars=self.max_chars, max_length_ratio=self.max_length_ratio,
                            ratio_min_chars=self.ratio_min_chars, require_persian_script=self.require_persian_script)


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
    files = resolve_files(args.input, "--input", PAIR_EXTENSIONS) if args.input else []
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
