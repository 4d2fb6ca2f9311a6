"""Argument dataclasses of the tokenizer stage: ``tokenizer/extract_vocab.py`` and ``tokenizer/merge.py``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from langadapt.cli import COMMA_SPLIT_LIST



@dataclass
class ExtractArguments:
    """What to train the add-on vocabulary on, and how."""

    train_file: list[str] = field(metadata={"help": "Training text: files or folders of .txt (a line is a document) "
                                            "or .jsonl (a 'text' field per line); comma-separated or repeated.", **COMMA_SPLIT_LIST})
    vocab_size: int = field(metadata={"help": "Size of the add-on vocabulary (SentencePiece: all its pieces incl. "
                                      "bytes/specials; byte-level BPE: incl. the 256 byte symbols)."})
    output_dir: str = field(metadata={"help": "Folder to write the add-on model and extract_report.json into."})
    base_tokenizer: str | None = field(default=None, metadata={
        "help": "The base model's tokenizer folder (recommended): its trainer/normalizer settings are copied. "
                "Without it the add-on uses Llama-2's SentencePiece settings."})
    model_type: str | None = field(default=None, metadata={
        "help": "bpe or unigram (SentencePiece only); default: the base's type (bpe without a base)."})
    input_sentence_size: int = field(default=0, metadata={
        "help": "Train on at most this many lines (0 = all); sampled with --seed when --shuffle_input_sentence."})
    shuffle_input_sentence: bool = field(default=True, metadata={"help": "Sample lines at random, not the first N."})
    num_threads: int = field(default=0, metadata={"help": "SentencePiece trainer threads; 0 = all CPU cores."})
    language: str = field(default="fa", metadata={"help": "Language code; picks the default normalizer."})
    normalize: bool = field(default=True, metadata={
        "help": "Normalize the text first (the Persian normalizer for --language fa); saved for later stages."})
    text_field: str = field(default="text", metadata={"help": "Field holding the text in .jsonl files."})
    min_frequency: int = field(default=2, metadata={"help": "Byte-level BPE: a merge's pair must occur this often."})
    seed: int = field(default=42, metadata={"help": "Seed for sampling lines and for the trainer."})
    overwrite: bool = field(default=False, metadata={"help": "Replace a non-empty --output_dir.",
                                                     "aliases": ["--overwrite_output_dir"]})

    def __post_init__(self) -> None:
        if self.vocab_size <= 0:
            raise ValueError(f"--vocab_size must be positive, got {self.vocab_size}")
        if self.model_type not in (None, "bpe", "unigram"):
            raise ValueError(f"--model_type must be bpe or unigram, got {self.model_type!r}")
        if self.input_sentence_size < 0 or self.num_threads < 0 or self.min_frequency < 0:
            raise ValueError("--input_sentence_size, --num_threads and --min_frequency must be >= 0")
        self.num_threads = self.num_threads or os.cpu_count() or 1


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
