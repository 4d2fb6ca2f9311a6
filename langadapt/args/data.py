"""Argument dataclasses of the data-preparation scripts: ``data/prepare_parallel.py`` and
``data/prepare_demo_data.py``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from langadapt.parallel.clean import FilterConfig
from langadapt.parallel.documents import LAYOUTS
from langadapt.parallel.files import parse_columns
from langadapt.parallel.instructions import DIRECTIONS
from langadapt.parallel.ratios import parse_ratios
from langadapt.parallel.sources import BUNDLED_SOURCES



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
        self.layout_ratios = parse_ratios(self.layouts, LAYOUTS, arg="layouts")
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


@dataclass
class PrepareArguments:
    """Where the cached base model and data go."""

    output_dir: str = field(
        default=".cache/langadapt",
        metadata={"help": "Cache folder; the model goes to <output_dir>/SmolLM2-135M-Instruct and the data to "
                          "<output_dir>/demo_data unless --model_dir / --data_dir say otherwise."},
    )
    model_dir: str | None = field(default=None, metadata={"help": "Folder of the converted base model."})
    data_dir: str | None = field(default=None, metadata={"help": "Folder of the demo data."})
    skip_model: bool = field(default=False, metadata={"help": "Do not convert the base model."})
    skip_data: bool = field(default=False, metadata={"help": "Do not build the data."})

    def __post_init__(self) -> None:
        if not self.output_dir:
            raise ValueError("--output_dir must name a folder")
        self.model_dir = self.model_dir or os.path.join(self.output_dir, "SmolLM2-135M-Instruct")
        self.data_dir = self.data_dir or os.path.join(self.output_dir, "demo_data")
