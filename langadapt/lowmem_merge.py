"""Shard-by-shard merge for big models on CPU nodes: never more than one base shard in memory.

:func:`merge_shardwise` reads the base checkpoint one safetensors shard at a time, applies every adapter of the
chain to the tensors of that shard, and writes the shard out, keeping the base's shard layout. Per tensor, in chain
order (the same result as PEFT's ``merge_and_unload``, which the tests check):

* saved embedding tables (``...embed_tokens.weight``, ``...base_layer.weight``: the resized table PEFT stores with
  an adapter whose vocabulary grew) replace the base table; a table that must grow with no saved copy gets new
  rows equal to the mean base row, as :func:`langadapt.loading.grow_embeddings` does;
* LoRA: ``W += (B @ A) * lora_alpha / r`` (``/ sqrt(r)`` with rsLoRA), computed in float32;
* ``modules_to_save`` copies replace the tensor; trainable tokens overwrite their rows.

Supported: LoRA (no DoRA, no rank/alpha patterns, no bias, no fan_in_fan_out) and trainable tokens. Anything else is
refused with a message pointing to the in-memory merge. Peak memory: one base shard plus the adapters' tensors
(a 7B LoRA adapter with full embedding tables is ~1.5 GB in float32).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence

import torch

from langadapt.errors import InputError
from langadapt.metadata import ADAPTER_CONFIG, ModelInfo

logger = logging.getLogger(__name__)

PREFIX = "base_model.model."
INDEX_FILE = "model.safetensors.index.json"


class _Adapter:
    """One adapter's tensors, keyed by the base module path (``model.layers.0.self_attn.q_proj``)."""

    def __init__(self, path: str):
        from safetensors.torch import load_file

        self.path = path
        with open(os.path.join(path, ADAPTER_CONFIG), encoding="utf-8") as f:
            self.config = json.load(f)
        self.peft_type = self.config.get("peft_type")
        self._check_supported()
        weights = os.path.join(path, "adapter_model.safetensors")
        if not os.path.isfile(weights):
            raise InputError(f"--peft_path: {path} has no adapter_model.safetensors (--low_memory reads only that)",
                             arg="peft_path", value=path)
        raw = load_file(weights)
        self.tensors = {k[len(PREFIX):] if k.startswith(PREFIX) else k: v for k, v in raw.items()}
        self.info = ModelInfo.from_dir(path)
        if self.peft_type == "LORA":
            r = self.config["r"]
            self.scale = self.config["lora_alpha"] / (math.sqrt(r) if self.config.get("use_rslora") else r)
        self.token_indices = self.config.get("token_indices") or []

    def _check_supported(self) -> None:
        c = self.config
        problems = []
        if self.peft_type not in ("LORA", "TRAINABLE_TOKENS"):
            problems.append(f"peft_type {self.peft_type}")
        if self.peft_type == "LORA":
            for key in ("use_dora", "fan_in_fan_out", "lora_bias"):
                if c.get(key):
                    problems.append(key)
            for key in ("rank_pattern", "alpha_pattern", "trainable_token_indices"):
                if c.get(key):
                    problems.append(key)
            if c.get("bias", "none") != "none":
                problems.append(f"bias={c['bias']}")
        if problems:
            raise InputError(
                f"--low_memory: the adapter {self.path} uses {', '.join(problems)}, which the shard-by-shard merge "
                "does not implement; merge without --low_memory", arg="low_memory", value=self.path,
            )

    def full_table(self, module: str) -> torch.Tensor | None:
        """A whole saved table for ``module`` (resized base copy), if the adapter carries one."""
        for key in (f"{module}.weight", f"{module}.base_layer.weight", f"{module}.original_module.weight"):
            if key in self.tensors:
                return self.tensors[key]
        return None

    def apply(self, module: str, w: torch.Tensor) -> torch.Tensor:
        """``w`` (float32) with this adapter merged into ``module``."""
        table = self.full_table(module)
        if table is not None:
            w = table.float().clone()
        replaced = self.tensors.get(f"{module}.modules_to_save.weight")
        if replaced is not None:
            w = replaced.float().clone()
        a, b = self.tensors.get(f"{module}.lora_A.weight"), self.tensors.get(f"{module}.lora_B.weight")
        if a is not None and b is not None:
            w = w + (b.float() @ a.float()) * self.scale
        delta = self.tensors.get(f"{module}.trainable_tokens_delta")
        if delta is not None:
            idx = torch.tensor(self.token_indices, dtype=torch.long)
            w = w.index_copy(0, idx, delta.float())
        return w

    def touches(self, module: str) -> bool:
        return any(k.startswith(module + ".") for k in self.tensors)


def _shards(base_model: str) -> list[str]:
    index = os.path.join(base_model, INDEX_FILE)
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as f:
            return sorted(set(json.load(f)["weight_map"].values()))
    if os.path.isfile(os.path.join(base_model, "model.safetensors")):
        return ["model.safetensors"]
    raise InputError(f"--model_name_or_path: {base_model} has no safetensors weights; --low_memory needs a local "
                     "safetensors checkpoint (merge without --low_memory)", arg="model_name_or_path", value=base_model)


def _grow(w: torch.Tensor, rows: int) -> torch.Tensor:
    """Grow a table to ``rows`` with the mean row, as the in-memory path does."""
    if w.shape[0] >= rows:
        return w
    mean = w.mean(dim=0, keepdim=True)
    return torch.cat([w, mean.expand(rows - w.shape[0], -1)], dim=0)


def merge_shardwise(base_model: str, chain: Sequence[str], out_dir: str, out_dtype: torch.dtype,
                    embed_name: str, head_name: str | None, tied: bool, final_rows: int) -> dict:
    """Write the merged checkpoint shards of ``base_model`` + ``chain`` into ``out_dir``; returns config updates.

    ``embed_name``/``head_name``: module paths of the input embeddings and output head; ``tied``: whether the base
    ties them (its checkpoint then stores only the input table); ``final_rows``: embedding rows after the chain.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    adapters = [_Adapter(p) for p in chain]
    tables = {embed_name} | ({head_name} if head_name else set())
    shards = _shards(base_model)
    weight_map: dict[str, str] = {}
    untie = False
    for n, shard in enumerate(shards, start=1):
        name = "model.safetensors" if len(shards) == 1 else f"model-{n:05d}-of-{len(shards):05d}.safetensors"
        out: dict[str, torch.Tensor] = {}
        with safe_open(os.path.join(base_model, shard), "pt") as f:
            for key in f.keys():
                module = key[: -len(".weight")] if key.endswith(".weight") else None
                w = f.get_tensor(key)
                if module is None or not any(a.touches(module) for a in adapters) and module not in tables:
                    out[key] = w.to(out_dtype) if w.is_floating_point() else w
                    continue
                merged = w.float()
                if module in tables:
                    merged = _grow(merged, final_rows)
                for a in adapters:
                    merged = a.apply(module, merged)
                out[key] = merged.to(out_dtype).contiguous()
                if tied and module == embed_name and head_name:
                    head = merged
                    for a in adapters:  # a tied model whose adapter trained a separate head copy
                        if f"{head_name}.modules_to_save.weight" in a.tensors or \
                                f"{head_name}.trainable_tokens_delta" in a.tensors:
                            head = a.apply(head_name, head)
                    if not torch.equal(head, merged):
                        untie = True
                        out[f"{head_name}.weight"] = head.to(out_dtype).contiguous()
        save_file(out, os.path.join(out_dir, name), metadata={"format": "pt"})
        weight_map.update({k: name for k in out})
        del out
        logger.info("merged shard %d/%d -> %s", n, len(shards), name)
    if len(shards) > 1:
        size = sum(os.path.getsize(os.path.join(out_dir, s)) for s in set(weight_map.values()))
        with open(os.path.join(out_dir, INDEX_FILE), "w", encoding="utf-8") as f:
            json.dump({"metadata": {"total_size": size}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
    return {"vocab_size": final_rows, "tie_word_embeddings": tied and not untie}
