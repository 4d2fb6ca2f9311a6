"""Instruction-tuning data: Alpaca-style records -> token ids with the loss on the response only.

Input: files or folders of ``.json`` (a list of objects) and ``.jsonl`` (one object a line) records with
``instruction``, optional ``input`` and ``output``. Real test sets carry numeric outputs (``"output": 0`` for a
class label), so numbers are turned into text. A malformed file or record stops the run with a
:class:`~langadapt.errors.InputError` naming the file and the record index (0-based position in a ``.json`` list,
1-based line in a ``.jsonl`` file); nothing is skipped silently.

Each example becomes::

    input_ids = prompt_ids + response_ids + [eos]
    labels    = [-100] * len(prompt_ids) + response_ids + [eos]

where ``prompt_ids`` come from :func:`langadapt.templates.encode_prompt`, the same function inference uses, so the
model is trained on exactly the prompt it will see when generating. Text fields are normalized with the
configuration saved beside the tokenizer (``langadapt_normalizer.json``).

Examples longer than ``--max_seq_length`` are cut at the end (the response tail and EOS are lost) or, with
``--drop_long_examples``, dropped. Either way they are counted and logged; an example whose prompt alone fills
the budget has no response tokens left and is always dropped (and counted).

Batching: :class:`PaddingCollator` pads to the longest example of a batch (length-grouped batches via
``--train_sampling_strategy group_by_length`` keep padding low); with ``--packing``, transformers'
``DataCollatorWithFlattening`` concatenates a batch into one row whose position ids restart at every example.
transformers' attention-mask builder reads the restarts as example boundaries and builds a block-diagonal causal
mask (sdpa/eager), or passes sequence boundaries to FlashAttention-2, so packed examples never attend to each
other; the first label of every example is -100, so no example predicts the next one's first token. Caveat found
in transformers 5.24: the restarts are only read when the model runs without a KV cache, so training must set
``model.config.use_cache = False`` (the SFT script does).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from langadapt.errors import InputError
from langadapt.io import iter_json_records, iter_lines, resolve_files
from langadapt.normalize import NormalizerConfig, normalize
from langadapt.templates import build_prompt, encode_prompts, response_suffix

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label value ignored by torch's cross-entropy (and so by every HF causal-LM loss)
SFT_EXTENSIONS = (".json", ".jsonl")
# Tokenize this many examples per call to the Rust tokenizer (amortises the Python->Rust call overhead).
_TOKENIZE_CHUNK = 1000


@dataclass(frozen=True)
class SFTRecord:
    """One instruction example, as read (and normalized); ``where`` is ``file:record N`` for error messages."""

    instruction: str
    input: str
    output: str
    where: str


def _field_text(record: dict, key: str, where: str, required: bool) -> str:
    value = record.get(key)
    if value is None:
        if required:
            raise InputError(f"{where}: missing {key!r}; every record needs 'instruction' and 'output' fields")
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InputError(f"{where}: {key!r} must be text or a number, got {type(value).__name__}")
    text = value if isinstance(value, str) else str(value)  # class labels such as "output": 0 become "0"
    if required and key == "instruction" and not text.strip():
        raise InputError(f"{where}: 'instruction' is empty")
    return text


def read_sft_records(
    paths: str | Sequence[str], arg: str = "dataset_dir", normalizer: NormalizerConfig | None = None
) -> list[SFTRecord]:
    """Read and validate every record of ``paths`` (files or folders of .json/.jsonl), normalizing text fields.

    ``normalizer=None`` means no normalization (pass ``NormalizerConfig.from_dir(tokenizer_dir)``).
    Raises :class:`InputError` naming the file and record on bad input, and when there are no records at all.
    """
    files = resolve_files(paths, arg, SFT_EXTENSIONS)
    norm = normalizer or NormalizerConfig.disabled()
    records: list[SFTRecord] = []
    for path in files:
        for where, obj in iter_json_records(path):
            if not isinstance(obj, dict):
                raise InputError(
                    f"{where}: expected an object with 'instruction' and 'output', got {type(obj).__name__}"
                )
            instruction = _field_text(obj, "instruction", where, required=True)
            output = _field_text(obj, "output", where, required=True)
            inp = _field_text(obj, "input", where, required=False)
            records.append(
                SFTRecord(normalize(instruction, norm), normalize(inp, norm), normalize(output, norm), where)
            )
    if not records:
        raise InputError(f"--{arg}: {', '.join(files)} hold no records; add Alpaca-style examples", arg=arg)
    return records


@dataclass
class TokenizeStats:
    """What happened to the examples during tokenization (logged, and written to all_results.json)."""

    examples: int = 0
    kept: int = 0
    truncated: int = 0
    dropped_long: int = 0
    dropped_prompt_too_long: int = 0
    tokens: int = 0
    label_tokens: int = 0

    def as_dict(self, prefix: str) -> dict[str, int]:
        return {f"{prefix}_{k}": v for k, v in self.__dict__.items()}


def tokenize_example(
    prompt_ids: list[int], response_ids: list[int], max_seq_length: int, drop_long: bool
) -> tuple[dict[str, list[int]] | None, str]:
    """Join prompt and response (which already ends with EOS) into ``input_ids``/``labels``.

    Returns ``(example or None, status)`` with status ``ok``, ``truncated``, ``dropped_long`` or
    ``dropped_prompt_too_long``.
    """
    input_ids = prompt_ids + response_ids
    labels = [IGNORE_INDEX] * len(prompt_ids) + response_ids
    status = "ok"
    if len(input_ids) > max_seq_length:
        if drop_long:
            return None, "dropped_long"
        if len(prompt_ids) >= max_seq_length:
            return None, "dropped_prompt_too_long"
        input_ids, labels, status = input_ids[:max_seq_length], labels[:max_seq_length], "truncated"
    return {"input_ids": input_ids, "labels": labels}, status


def response_token_ids(responses: Sequence[str], tokenizer, template: str) -> list[list[int]]:
    """Token ids of each response followed by the template's end-of-turn text (chat) and EOS."""
    if tokenizer.eos_token_id is None:
        raise InputError("the tokenizer has no eos_token; set one in its tokenizer_config.json")
    suffix = response_suffix(template, tokenizer)
    texts = [r + suffix for r in responses]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    # The chat suffix may already end in EOS (SmolLM2-Instruct: <|im_end|> is EOS); never train two EOS in a row.
    return [list(x) if x and x[-1] == eos else list(x) + [eos] for x in ids]


def tokenize_records(
    records: Sequence[SFTRecord],
    tokenizer,
    template: str,
    max_seq_length: int,
    drop_long: bool = False,
    name: str = "train",
) -> tuple[list[dict[str, list[int]]], TokenizeStats]:
    """Tokenize records into masked examples; log how many were truncated or dropped."""
    stats = TokenizeStats(examples=len(records))
    examples: list[dict[str, list[int]]] = []
    for start in range(0, len(records), _TOKENIZE_CHUNK):
        chunk = records[start : start + _TOKENIZE_CHUNK]
        prompts = encode_prompts(
            [r.instruction for r in chunk], [r.input for r in chunk], template=template, tokenizer=tokenizer
        )
        responses = response_token_ids([r.output for r in chunk], tokenizer, template)
        for prompt_ids, response_ids in zip(prompts, responses):
            example, status = tokenize_example(prompt_ids, response_ids, max_seq_length, drop_long)
            if status != "ok" and status != "truncated":
                setattr(stats, status, getattr(stats, status) + 1)
                continue
            stats.truncated += status == "truncated"
            stats.kept += 1
            stats.tokens += len(example["input_ids"])
            stats.label_tokens += sum(t != IGNORE_INDEX for t in example["labels"])
            examples.append(example)
    if stats.truncated or stats.dropped_long or stats.dropped_prompt_too_long:
        logger.warning(
            "%s: of %d examples longer than --max_seq_length %d tokens: %d cut at the end, %d dropped "
            "(--drop_long_examples), %d dropped because the prompt alone fills the length",
            name, stats.examples, max_seq_length, stats.truncated, stats.dropped_long, stats.dropped_prompt_too_long,
        )
    logger.info(
        "%s: %d examples, %d tokens, %d of them trained on (response + EOS)", name, stats.kept, stats.tokens,
        stats.label_tokens,
    )
    if not examples:
        raise InputError(
            f"{name}: every example is longer than --max_seq_length {max_seq_length}; raise it or shorten the data"
        )
    return examples, stats


@dataclass
class PaddingCollator:
    """Right-pad a batch to its longest example: ``pad_token_id`` in inputs, -100 in labels, 0 in the mask."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        longest = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            longest = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(features), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), longest), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(features), longest), dtype=torch.long)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            input_ids[i, :n] = torch.as_tensor(f["input_ids"])
            labels[i, :n] = torch.as_tensor(f["labels"])
            attention_mask[i, :n] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def make_collator(tokenizer, packing: bool, attn_implementation: str | None = None):
    """The batch collator: padding, or padding-free packing (see the module docstring)."""
    if packing:
        from transformers import DataCollatorWithFlattening

        return DataCollatorWithFlattening(
            return_position_ids=True,
            separator_id=IGNORE_INDEX,
            return_flash_attn_kwargs=bool(attn_implementation and attn_implementation.startswith("flash")),
        )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    # Multiples of 8 keep tensor-core matmul shapes aligned on GPUs; the padding is masked out of loss and attention.
    return PaddingCollator(pad_token_id=pad, pad_to_multiple_of=8)


def resolve_max_seq_length(requested: int | None, model_config) -> int:
    """``--max_seq_length`` capped by the model's context (1024 when not given)."""
    context = getattr(model_config, "max_position_embeddings", None) or 1024
    length = min(1024, context) if requested is None else requested
    if length > context:
        logger.warning("--max_seq_length %d exceeds the model's context of %d tokens; using %d", length, context,
                       context)
        length = context
    return length


# Instructions the sample-generation callback answers at every evaluation (Persian and English).
SAMPLE_INSTRUCTIONS: tuple[str, ...] = (
    "یک جمله درباره حافظ شیرازی بنویس.",
    "پایتخت ایران کجاست؟",
    "Translate to Persian: The weather is nice today.",
)


def sample_prompts(instructions: Sequence[str] | None, template: str, tokenizer,
                   normalizer: NormalizerConfig | None = None) -> list[str]:
    """Templated prompts for the sample-generation callback (default :data:`SAMPLE_INSTRUCTIONS`)."""
    norm = normalizer or NormalizerConfig.disabled()
    return [build_prompt(normalize(i, norm), None, template, tokenizer) for i in (instructions or SAMPLE_INSTRUCTIONS)]
