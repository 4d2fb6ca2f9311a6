"""Merge the add-on vocabulary into the base tokenizer and audit the result (step 2 of vocabulary extension).

    python tokenizer/merge.py --base_tokenizer path/to/base_model --extra_model outputs/extra_vocab/extra.model \
        --output_dir outputs/tokenizer --eval_file heldout_fa.txt --eval_file heldout_en.txt

Writes a folder AutoTokenizer.from_pretrained loads (plus tokenizer.model on the SentencePiece path),
langadapt_tokenizer.json and langadapt_normalizer.json for later stages, and merge_report.json/.md/.png. The Persian
normalizer is also written into tokenizer.json (langadapt/hf_normalizer.py), so a plain AutoTokenizer on raw text
gives the ids langadapt gives.
Base ids never change; new ids follow every base id; text without target-script characters segments as before.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from langadapt.cli import COMMA_SPLIT_LIST, UsageError, parse_args, run_main
from langadapt.hf_normalizer import attach_normalizer
from langadapt.io import atomic_output_dir, check_output_dir, resolve_files
from langadapt.normalize import NormalizerConfig
from langadapt.vocab import byte_level_to_bytes, detect_extra_kind, detect_kind, validate_scripts
from langadapt.vocab_merge import merge_byte_level_bpe, merge_sentencepiece, write_metadata
from langadapt.vocab_report import build_report, write_report

logger = logging.getLogger("langadapt.merge")


@dataclass
class MergeArguments:
    """Which tokenizers to merge, what to keep, and what to measure."""

    base_tokenizer: str = field(metadata={"help": "The base model's tokenizer folder (tokenizer.model or a "
                                          "byte-level BPE tokenizer.json)."})
    extra_model: str = field(metadata={"help": "The add-on from extract_vocab.py: extra.model, "
                                       "extra_tokenizer.json, or its output folder."})
    output_dir: str = field(metadata={"help": "Folder for the merged tokenizer and the report."})
    max_new_pieces: int | None = field(default=None, metadata={
        "help": "Keep at most this many new pieces (the add-on's first ones, i.e. most frequent merges)."})
    scripts: list[str] = field(default_factory=lambda: ["Arabic"], metadata={
        "help": "Keep only new pieces made of these scripts' letters (+ the word-boundary marker; ZWNJ counts as "
                "Arabic). 'any' keeps everything. Default Arabic: no new Latin, digit or punctuation pieces.",
        **COMMA_SPLIT_LIST})
    eval_file: list[str] = field(default_factory=list, metadata={
        "help": "Held-out text for the report (.txt/.jsonl); comma-separated or repeated, e.g. Persian,English.",
        **COMMA_SPLIT_LIST})
    text_field: str = field(default="text", metadata={"help": "Field holding the text in .jsonl eval files."})
    overwrite: bool = field(default=False, metadata={"help": "Replace a non-empty --output_dir.",
                                                     "aliases": ["--overwrite_output_dir"]})

    def __post_init__(self) -> None:
        if self.max_new_pieces is not None and self.max_new_pieces <= 0:
            raise ValueError(f"--max_new_pieces must be positive, got {self.max_new_pieces}")


def main(argv: Sequence[str] | None = None) -> dict:
    (args,) = parse_args((MergeArguments,), argv, description=__doc__)
    logger.info("arguments: %s", args)

    # 1. Check every input before writing anything.
    check_output_dir(args.output_dir, args.overwrite)
    kind = detect_kind(args.base_tokenizer)
    extra_kind, extra_path = detect_extra_kind(args.extra_model)
    if extra_kind != kind:
        raise UsageError(f"--extra_model: {extra_path} is a {extra_kind} add-on but the base is {kind}; re-run "
                         f"extract_vocab.py with --base_tokenizer {args.base_tokenizer}")
    scripts = validate_scripts(args.scripts)
    eval_files = resolve_files(args.eval_file, "--eval_file") if args.eval_file else []
    # The add-on was trained on text normalized this way; later stages must normalize the same way.
    normalizer = NormalizerConfig.from_dir(os.path.dirname(os.path.abspath(extra_path)))

    # 2. Merge, save, audit: all inside a temporary folder renamed to --output_dir on success.
    merge = merge_sentencepiece if kind == "sentencepiece" else merge_byte_level_bpe
    with atomic_output_dir(args.output_dir, args.overwrite) as tmp:
        result = merge(args.base_tokenizer, extra_path, tmp, scripts, args.max_new_pieces)
        write_metadata(tmp, args.base_tokenizer, result)
        normalizer.save(tmp)
        attach_normalizer(tmp, normalizer)  # plain AutoTokenizer users get the ids training sees
        pieces = result.new_pieces if kind == "sentencepiece" else [
            byte_level_to_bytes(t).decode("utf-8", "ignore") for t in result.new_pieces]
        report = build_report(args.base_tokenizer, tmp, result.summary(), eval_files, normalizer, scripts, pieces,
                              args.text_field)
        write_report(tmp, report)
    logger.info("vocabulary %d -> %d (%d new pieces, ids %d..%d); dropped %s; report in %s",
                result.base_vocab_size, result.vocab_size, len(result.new_pieces), result.new_token_ids[0],
                result.new_token_ids[1] - 1, result.dropped, os.path.join(args.output_dir, "merge_report.md"))
    return report


if __name__ == "__main__":
    run_main(main)
