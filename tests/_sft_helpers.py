"""Fixtures and builders shared by the SFT and merge tests: instruction data, an extended tokenizer, adapters."""

from __future__ import annotations

import json
import os

import pytest
import torch

from langadapt.args import AdaptationArguments, ModelArguments
from langadapt.modeling import prepare_model, save_model
from langadapt.normalize import NormalizerConfig
import _scripts  # noqa: E402

# Real Persian words (from Hafez's ghazals) added to the English base tokenizer, so the vocabulary grows.
PERSIAN_TOKENS = ["دل", "عشق", "یار", "می", "جان", "ساقی", "شب", "گل", "چشم", "دوست", "باده", "زلف"]


def make_extended_tokenizer(base_dir: str, out_dir: str, new_tokens=PERSIAN_TOKENS) -> str:
    """The base tokenizer with Persian words appended (ids after every base id) and langadapt_tokenizer.json."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_dir)
    base_size = len(tok)
    tok.add_tokens(list(new_tokens))
    tok.save_pretrained(out_dir)
    NormalizerConfig().save(out_dir)
    with open(os.path.join(out_dir, "langadapt_tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump({"base_tokenizer": base_dir, "base_vocab_size": base_size, "vocab_size": len(tok),
                   "new_token_ids": [base_size, len(tok)], "kind": "byte_level_bpe"}, f)
    return out_dir


def instruction_records(persian_lines, n: int = 24) -> list[dict]:
    """Alpaca-style records built from real Persian verses: continue a verse, with and without input, int outputs."""
    records = []
    for i in range(n):
        a, b = persian_lines[2 * i], persian_lines[2 * i + 1]
        if i % 3 == 0:
            records.append({"instruction": "مصراع بعدی را بنویس.", "input": a, "output": b})
        elif i % 3 == 1:
            records.append({"instruction": f"این بیت را تکرار کن: {a}", "output": a})
        else:
            records.append({"instruction": f"How many words are in: {a}", "input": "", "output": len(a.split())})
    return records


def write_dataset(directory: str, records: list[dict], split_jsonl: bool = True) -> str:
    """Half the records as a .json list, half as .jsonl."""
    os.makedirs(directory, exist_ok=True)
    half = len(records) // 2 if split_jsonl else len(records)
    with open(os.path.join(directory, "part1.json"), "w", encoding="utf-8") as f:
        json.dump(records[:half], f, ensure_ascii=False)
    if split_jsonl and records[half:]:
        with open(os.path.join(directory, "part2.jsonl"), "w", encoding="utf-8") as f:
            for r in records[half:]:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return directory


def perturb_trainable(model, seed: int = 0, scale: float = 0.05) -> None:
    """Stand-in for training: move every trainable parameter (LoRA B starts at zero, so an adapter does nothing)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * scale)


def make_adapter(model_dir: str, tokenizer_dir: str, out_dir: str, mode: str = "lora", seed: int = 0,
                 peft_path: str | None = None) -> str:
    """A trained-looking adapter folder written by the shared training code (prepare_model + save_model)."""
    model_args = ModelArguments(model_name_or_path=model_dir, tokenizer_name_or_path=tokenizer_dir)
    adapt_args = AdaptationArguments(training_mode=mode, embedding_init="mean", lora_rank=4, lora_alpha=8,
                                     lora_dropout=0.0, pad_vocab_to_multiple_of=8, peft_path=peft_path)
    prepared = prepare_model(model_args, adapt_args)
    perturb_trainable(prepared.model, seed)
    os.makedirs(out_dir, exist_ok=True)
    save_model(prepared.model, prepared.tokenizer, out_dir, prepared.info)
    return out_dir


def sft_argv(model_dir: str, tokenizer_dir: str, data_dir: str, out_dir: str, *extra: str) -> list[str]:
    """Flags for a seconds-long CPU run of the SFT script (batch 4, 2 steps, no evaluation, no TensorBoard)."""
    return [
        "--model_name_or_path", model_dir, "--tokenizer_name_or_path", tokenizer_dir, "--dataset_dir", data_dir,
        "--output_dir", out_dir, "--per_device_train_batch_size", "4", "--max_steps", "2", "--learning_rate", "1e-3",
        "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none", "--dataloader_num_workers", "0",
        "--use_cpu", "--seed", "0", "--max_seq_length", "256", "--pad_vocab_to_multiple_of", "8",
        "--embedding_init", "mean", "--lora_rank", "4", "--lora_alpha", "8", "--lora_dropout", "0",
        "--gradient_accumulation_steps", "1", "--activation_checkpointing", "False",  # the defaults are a 7B run's
        *extra,
    ]


def pretrain_argv(model_dir: str, tokenizer_dir: str, data_dir: str, out_dir: str, *extra: str) -> list[str]:
    """Flags for a seconds-long run of pretrain/run_clm_pt_with_peft.py (LoRA, 2 steps)."""
    return [
        "--model_name_or_path", model_dir, "--tokenizer_name_or_path", tokenizer_dir, "--dataset_dir", data_dir,
        "--output_dir", out_dir, "--block_size", "32", "--per_device_train_batch_size", "2", "--max_steps", "2",
        "--learning_rate", "1e-2", "--save_strategy", "no", "--report_to", "none", "--sample_max_new_tokens", "0",
        "--dataloader_num_workers", "0", "--use_cpu", "--seed", "0", "--validation_split_percentage", "5",
        "--training_mode", "lora", "--lora_rank", "4", "--lora_alpha", "8", "--lora_dropout", "0",
        "--pad_vocab_to_multiple_of", "8", "--embedding_init", "mean",
        "--gradient_accumulation_steps", "1", "--activation_checkpointing", "False", *extra,
    ]


def adapter_tensors(adapter_dir: str) -> dict[str, torch.Tensor]:
    """Every tensor of an adapter's safetensors file."""
    from safetensors.torch import load_file

    return load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script(relative_path: str):
    """Import a stage script (``sft/run_clm_sft_with_peft.py``) as a module, so tests call its ``main([...])``."""
    return _scripts.load_script(relative_path)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models on a shared 2-core box: one intra-op thread is 3-5x faster than contending for both."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
