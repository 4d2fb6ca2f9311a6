"""Helpers for the pretraining tests: a merged (extended) tokenizer without depending on tokenizer/merge.py, small
corpora on disk, and a runner for the stage script."""

from __future__ import annotations

import json
import os
import shutil

from langadapt.normalize import NormalizerConfig


def extend_tokenizer(base_dir: str, lines, out_dir: str, n_new: int = 150) -> str:
    """A merged tokenizer folder: the base's vocabulary and merges unchanged, then up to ``n_new`` Persian
    vocabulary entries (with their merges) appended after every base id, as tokenizer/merge.py does.

    Works for byte-level BPE and for SentencePiece-style BPE (Metaspace) bases: a helper BPE is trained on
    ``lines`` with the base's own pre-tokenizer, so its merges are in the base's alphabet. Writes
    ``langadapt_tokenizer.json`` and ``langadapt_normalizer.json`` like the tokenizer stage.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer

    base = AutoTokenizer.from_pretrained(base_dir)
    with open(os.path.join(base_dir, "tokenizer.json"), encoding="utf-8") as f:
        spec = json.load(f)
    kind = "byte_level_bpe" if "ByteLevel" in json.dumps(spec["pre_tokenizer"]) else "sentencepiece"
    helper = Tokenizer(models.BPE())
    if kind == "byte_level_bpe":
        helper.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        helper.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        alphabet = []
    helper.train_from_iterator(list(lines), trainers.BpeTrainer(vocab_size=600, initial_alphabet=alphabet,
                                                                 show_progress=False))
    vocab = spec["model"]["vocab"]
    merges = spec["model"]["merges"]
    next_id = len(base)
    assert next_id == max(vocab.values()) + 1, "base added tokens must sit inside the vocabulary"
    added = 0
    for merge in json.loads(helper.to_str())["model"]["merges"]:
        a, b = merge if isinstance(merge, list) else merge.split(" ")
        if a + b in vocab:
            continue
        for part in (a, b):  # single characters the base never saw (SentencePiece falls back to bytes)
            if part not in vocab and added < n_new:
                vocab[part], next_id, added = next_id, next_id + 1, added + 1
        if added >= n_new or a not in vocab or b not in vocab:
            break
        vocab[a + b], next_id, added = next_id, next_id + 1, added + 1
        merges.append([a, b] if isinstance(merges[0], list) else f"{a} {b}")
    os.makedirs(out_dir, exist_ok=True)
    for name in os.listdir(base_dir):
        if name not in ("tokenizer.json", "tokenizer.model") and os.path.isfile(os.path.join(base_dir, name)):
            shutil.copy(os.path.join(base_dir, name), out_dir)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(spec, f, ensure_ascii=False)
    merged = AutoTokenizer.from_pretrained(out_dir)
    with open(os.path.join(out_dir, "langadapt_tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump({"base_tokenizer": os.path.abspath(base_dir), "base_vocab_size": len(base),
                   "vocab_size": len(merged), "new_token_ids": [len(base), len(merged)], "kind": kind}, f)
    NormalizerConfig().save(out_dir)
    return out_dir


def write_corpus(directory: str, lines, name: str = "part.txt", n: int | None = None) -> str:
    """A folder with one ``.txt`` file of ``lines`` (the first ``n``)."""
    os.makedirs(directory, exist_ok=True)
    lines = list(lines)[:n] if n else list(lines)
    with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return directory


def base_argv(model_dir: str, tokenizer_dir: str, data_dir: str, out_dir: str, *extra: str) -> list[str]:
    """Flags for a seconds-long CPU run of the stage script (block 32, batch 2, 2 steps, no sample generation)."""
    return [
        "--model_name_or_path", model_dir, "--tokenizer_name_or_path", tokenizer_dir, "--dataset_dir", data_dir,
        "--output_dir", out_dir, "--block_size", "32", "--per_device_train_batch_size", "2", "--max_steps", "2",
        "--learning_rate", "1e-3", "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none",
        "--sample_max_new_tokens", "0", "--dataloader_num_workers", "0", "--use_cpu", "--seed", "0",
        "--validation_split_percentage", "5", "--max_eval_blocks", "8",
        # Tiny steps: the script's defaults (8 x accumulation, activation checkpointing) are a 7B run's.
        "--gradient_accumulation_steps", "1", "--activation_checkpointing", "False",
        *extra,
    ]
