"""Argument dataclasses of the SFT stage's data (``sft/run_clm_sft_with_peft.py``); the model, adaptation and
training arguments it shares with pretraining are in :mod:`langadapt.args`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from langadapt.templates import TEMPLATE_NAMES



@dataclass
class SFTDataArguments:
    """Instruction data, prompt template, sequence length and batching for SFT."""

    dataset_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder(s) or files of Alpaca-style .json lists / .jsonl records (instruction, optional input, "
            "output). Comma-separate several. Required."
        },
    )
    validation_file: str | None = field(
        default=None, metadata={"help": "Held-out .json/.jsonl file (or folder) evaluated at every --eval_steps."}
    )
    template: str = field(
        default="alpaca",
        metadata={
            "help": "Prompt template (langadapt/templates.py): alpaca, chat (the tokenizer's own chat template) or "
            "none. Recorded in the output folder so inference uses the same one.",
            "choices": list(TEMPLATE_NAMES),
        },
    )
    max_seq_length: int | None = field(
        default=None,
        metadata={"help": "Tokens per example (prompt + response + EOS). Default: min(1024, the model's context)."},
    )
    drop_long_examples: bool = field(
        default=False,
        metadata={"help": "Drop examples longer than --max_seq_length instead of cutting their response tail."},
    )
    packing: bool = field(
        default=False,
        metadata={
            "help": "Concatenate each batch into one row with per-example position ids (no padding, no attention "
            "across examples). Needs a model whose attention honours packed position ids (Llama-family, Mistral, "
            "Qwen2, ... in transformers 5)."
        },
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N training examples (debugging, smoke runs)."}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N validation examples."})

    def __post_init__(self) -> None:
        if not self.dataset_dir:
            raise ValueError("--dataset_dir is required: a folder of Alpaca-style .json/.jsonl files")
        if self.template not in TEMPLATE_NAMES:
            raise ValueError(f"--template must be one of {', '.join(TEMPLATE_NAMES)}, got {self.template!r}")
        if self.max_seq_length is not None and self.max_seq_length < 2:
            raise ValueError(f"--max_seq_length must be >= 2 tokens, got {self.max_seq_length}")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be >= 1, got {value}")
        if self.validation_file is not None and not os.path.exists(self.validation_file):
            raise ValueError(f"--validation_file: {self.validation_file} does not exist")

    @property
    def dataset_paths(self) -> list[str]:
        return [p.strip() for p in (self.dataset_dir or "").split(",") if p.strip()]
