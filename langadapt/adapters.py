"""Loading a base model with a chain of PEFT adapters applied: the one way later stages get a trained model.

The training stages write adapters (``lora``: LoRA + full ``embed_tokens``/``lm_head`` when the vocabulary grew;
``new_rows``: PEFT trainable tokens) next to ``langadapt_model.json`` (:class:`langadapt.modeling.ModelInfo`).
:func:`load_with_adapters` rebuilds the model they describe:

1. load the base model;
2. for each adapter, in order: check that it was trained on a table of this size (the base's, or already the
   adapter's), grow the embedding table to the adapter's ``embedding_rows``, load the adapter and merge it;
3. return a plain ``PreTrainedModel`` (ready for ``generate()`` or ``save_pretrained()``) and the tokenizer.

An adapter trained on top of other adapters records them in ``parent_adapters``; when a single adapter is given its
parents are applied first (pass the whole chain explicitly to override their recorded paths). A chain holding an
adapter together with its own continuation (``outputs/pt,outputs/sft`` when SFT continued ``outputs/pt``) is
refused: see :mod:`langadapt.lineage`.

Growing the table: both adapter kinds store every row that differs from the base, without a separate copy of the
resized base table (:func:`langadapt.modeling.small_adapter_saves` turns peft's ``save_embedding_layers`` off). A
LoRA adapter over a grown vocabulary holds the whole trained ``embed_tokens`` (and untied ``lm_head``) as
``modules_to_save``, which replace the base tables on load; a ``new_rows`` adapter covers every row from the first
new id up, padding included. So the rows the resize creates are overwritten by the adapter; they start at the mean
base row (:func:`langadapt.embeddings.resize_and_init`, ``init="mean"``) so that the result is deterministic anyway.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from typing import Any

import torch

from langadapt.cli import UsageError
from langadapt.embeddings import resize_and_init
from langadapt.errors import InputError
from langadapt.hf_normalizer import warn_if_missing
from langadapt.lineage import check_chain
from langadapt.modeling import MODEL_INFO_FILE, TOKENIZER_INFO_FILE, ModelInfo, is_tied, torch_dtype
from langadapt.normalize import CONFIG_FILE as NORMALIZER_FILE
from langadapt.templates import TEMPLATE_FILE

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"


def is_adapter_dir(path: str) -> bool:
    """Whether ``path`` is a PEFT adapter folder."""
    return os.path.isfile(os.path.join(path, ADAPTER_CONFIG))


def _has_tokenizer(path: str) -> bool:
    return any(os.path.isfile(os.path.join(path, f)) for f in ("tokenizer.json", "tokenizer.model"))


def resolve_adapter_chain(adapters: Sequence[str], flag: str = "--adapters") -> list[str]:
    """The adapters to apply, in order. One adapter expands to its recorded ``parent_adapters`` + itself."""
    adapters = [str(a) for a in adapters]
    for a in adapters:
        if not os.path.isdir(a):
            raise UsageError(f"{flag}: {a} does not exist; pass PEFT adapter folders")
        if not is_adapter_dir(a):
            info = ModelInfo.from_dir(a)
            what = "a full model; pass it as the base model" if info is not None else "not a PEFT adapter folder"
            raise UsageError(f"{flag}: {a} has no {ADAPTER_CONFIG}: it is {what}")
    try:  # an adapter applied together with its own continuation would apply the same training twice
        check_chain(adapters)
    except InputError as e:
        raise UsageError(f"{flag}: {e.message}") from None
    if len(adapters) != 1:
        return adapters
    info = ModelInfo.from_dir(adapters[0])
    parents = list(info.parent_adapters) if info is not None else []
    for p in parents:
        if not is_adapter_dir(p):
            raise UsageError(
                f"{flag}: {adapters[0]} was trained on top of the adapter {p} ({MODEL_INFO_FILE} parent_adapters), "
                f"which is not there any more; pass the whole chain in order: {flag} PARENT... {adapters[0]}"
            )
    if parents:
        logger.info("applying the recorded parent adapters of %s first: %s", adapters[0], parents)
    return parents + adapters


def check_adapter_rows(adapter: str, info: ModelInfo | None, rows: int, flag: str) -> int | None:
    """Embedding rows the adapter needs; refuses an adapter trained on a model with another vocabulary."""
    if info is None:
        return None
    if rows not in (info.base_embedding_rows, info.embedding_rows):
        raise UsageError(
            f"{flag}: the adapter {adapter} was trained on a model with {info.base_embedding_rows} embedding rows "
            f"(grown to {info.embedding_rows}), but the model it is applied to has {rows}; use the base model it "
            f"was trained from ({info.base_model_name_or_path}) and apply its parent adapters first"
        )
    return info.embedding_rows


def _saved_rows(adapter: str) -> int | None:
    """Rows of the embedding table saved in an adapter without ``langadapt_model.json`` (a foreign adapter)."""
    from safetensors import safe_open

    path = os.path.join(adapter, "adapter_model.safetensors")
    if not os.path.isfile(path):
        return None
    with safe_open(path, "pt") as f:
        for key in f.keys():
            if key.endswith(("embed_tokens.weight", "embed_tokens.modules_to_save.weight",
                             "embed_tokens.token_adapter.base_layer.weight")):
                return int(f.get_slice(key).get_shape()[0])
    return None


def grow_embeddings(model, tokenizer, rows: int) -> None:
    """Grow the embedding table (and untied head) to ``rows``; new rows start at the mean base row."""
    current = model.get_input_embeddings().weight.shape[0]
    if rows < current:
        raise UsageError(f"an adapter needs {rows} embedding rows but the model already has {current}")
    if rows == current:
        return

    class _Sized:  # resize_and_init sizes the table from len(tokenizer); ask for exactly ``rows``
        def __len__(self) -> int:
            return rows

    resize_and_init(model, _Sized(), init="mean", pad_to_multiple_of=1, first_new_id=current)


def retie_or_untie(model) -> None:
    """After a merge, keep a tied model tied when input and output rows are equal, else record it untied.

    A LoRA adapter with ``modules_to_save=[embed_tokens]`` on a tied model replaces the input table on merge; if
    the head then differs, saving with ``tie_word_embeddings=True`` would silently drop the head on reload.
    """
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    if not getattr(cfg, "tie_word_embeddings", False) or is_tied(model):
        return
    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    if out is not None and inp.weight.shape == out.weight.shape and torch.equal(inp.weight, out.weight):
        out.weight = inp.weight
    else:
        logger.warning("the merged input and output embeddings differ; saving them untied (tie_word_embeddings=False)")
        cfg.tie_word_embeddings = False
        model.config.tie_word_embeddings = False


def apply_adapter(model, tokenizer, adapter: str, merge: bool = True, flag: str = "--adapters"):
    """Apply one adapter to ``model`` (growing its table first); merged into a plain model, or a ``PeftModel``."""
    from peft import PeftModel

    info = ModelInfo.from_dir(adapter)
    rows = int(model.get_input_embeddings().weight.shape[0])
    target = check_adapter_rows(adapter, info, rows, flag) or _saved_rows(adapter) or rows
    grow_embeddings(model, tokenizer, target)
    try:
        peft_model = PeftModel.from_pretrained(model, adapter)
    except (RuntimeError, ValueError) as e:  # shape mismatches of a foreign adapter
        raise UsageError(f"{flag}: cannot apply the adapter {adapter} to this model: {e}") from None
    if not merge:
        return peft_model
    merged = peft_model.merge_and_unload()
    retie_or_untie(merged)
    logger.info("merged adapter %s (%d embedding rows)", adapter, target)
    return merged


def load_tokenizer_for(base_model: str, adapters: Sequence[str], tokenizer_path: str | None):
    """``tokenizer_path``, else the last adapter's folder when it holds a tokenizer, else the base model's."""
    from transformers import AutoTokenizer

    path = tokenizer_path or next((a for a in reversed(adapters) if _has_tokenizer(a)), base_model)
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise UsageError(f"--tokenizer_name_or_path: cannot load a tokenizer from {path}: {e}") from None
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token  # batched generation pads prompts; EOS is never a prompt token
    if os.path.isdir(path):
        warn_if_missing(path)  # langadapt normalizes itself; say what plain AutoTokenizer users of this folder get
    return tok, path


def load_base(base_model: str, dtype: Any = None, flag: str = "--base_model"):
    """``AutoModelForCausalLM.from_pretrained`` of a local folder (or hub id when online), errors as UsageError."""
    from transformers import AutoModelForCausalLM

    if not os.path.isdir(base_model) and os.environ.get("HF_HUB_OFFLINE", "0") in ("1", "true", "True"):
        raise UsageError(f"{flag}: {base_model} does not exist; pass a model folder")
    dtype = torch_dtype(dtype) if dtype is None or isinstance(dtype, str) else dtype
    try:
        return AutoModelForCausalLM.from_pretrained(base_model, dtype=dtype)
    except (OSError, ValueError) as e:
        raise UsageError(f"{flag}: cannot load a causal LM from {base_model}: {e}") from None


def load_with_adapters(
    base_model: str,
    adapters: Sequence[str],
    tokenizer_path: str | None = None,
    torch_dtype: Any = None,
    merge_last: bool = True,
):
    """Load ``base_model``, apply ``adapters`` in order (each merged before the next) and return (model, tokenizer).

    ``torch_dtype``: a ``torch.dtype``, ``"auto"``/``"float32"``/``"bfloat16"``/``"float16"``, or ``None``
    (float32). ``merge_last=False`` leaves the last adapter unmerged (a ``PeftModel``; the reference the merge
    script checks the merged weights against). The tokenizer comes from ``tokenizer_path``, else the last adapter's
    folder, else the base model; it must fit the final embedding table.
    """
    chain = resolve_adapter_chain(adapters) if adapters else []
    tokenizer, tok_path = load_tokenizer_for(base_model, chain, tokenizer_path)
    model = load_base(base_model, torch_dtype)
    for i, adapter in enumerate(chain):
        model = apply_adapter(model, tokenizer, adapter, merge=merge_last or i < len(chain) - 1)
    rows = int(model.get_input_embeddings().weight.shape[0])
    if len(tokenizer) > rows:
        raise UsageError(
            f"--tokenizer_name_or_path: the tokenizer {tok_path} has {len(tokenizer)} tokens but the model has only "
            f"{rows} embedding rows; pass the tokenizer the adapters were trained with"
        )
    model.eval()
    return model, tokenizer


METADATA_FILES = (NORMALIZER_FILE, TOKENIZER_INFO_FILE, TEMPLATE_FILE)


def copy_metadata(sources: Sequence[str], out_dir: str, names: Sequence[str] = METADATA_FILES) -> list[str]:
    """Copy our records that travel with a tokenizer/model (normalizer, tokenizer info, template) into ``out_dir``.

    ``tokenizer.save_pretrained`` writes only HF files, so without this a saved model would lose the normalizer
    its tokenizer was built with. Each file comes from the first of ``sources`` that has it. Returns the copied names.
    """
    copied = []
    for name in names:
        for src in sources:
            path = os.path.join(src, name)
            if src and os.path.isfile(path):
                if os.path.abspath(path) != os.path.abspath(os.path.join(out_dir, name)):
                    shutil.copyfile(path, os.path.join(out_dir, name))
                copied.append(name)
                break
    return copied
