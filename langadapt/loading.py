"""The one loader: tokenizer, base model, dtype, embedding-table size and adapter chain, for every stage and bench.

* :func:`load_tokenizer`: ``AutoTokenizer`` with the one pad rule: a tokenizer without a pad token pads with EOS
  (padding is only used for batched generation, scoring and eval batches, where EOS never is a real input); one
  with neither is refused.
* :func:`torch_dtype` / :func:`load_base_model`: the one dtype rule: ``None`` (the default) is float32, so a bf16
  checkpoint is trained with fp32 master weights; ``"auto"`` is transformers' ``auto``, the checkpoint's own dtype
  (``config.dtype``), on any device; the other names are the torch dtypes.
* :func:`check_vocab_fit`, :func:`grow_to_tokenizer`: grow the table to a larger tokenizer and initialise the new
  rows, the same way for the training stages and for perplexity before training.
* :func:`load_with_adapters`: a base model with a chain of PEFT adapters applied (training's ``lora``/``new_rows``
  outputs, described by ``langadapt_model.json``):

  1. load the base model;
  2. for each adapter, in order: check that it was trained on a table of this size (the base's, or already the
     adapter's), grow the embedding table to the adapter's ``embedding_rows``, load the adapter and merge it;
  3. return a plain ``PreTrainedModel`` (ready for ``generate()`` or ``save_pretrained()``) and the tokenizer.

  An adapter trained on top of other adapters records them in ``parent_adapters``; when a single adapter is given
  its parents are applied first (pass the whole chain explicitly to override their recorded paths).

Growing the table for an adapter: both adapter kinds store every row that differs from the base, without a separate
copy of the resized base table (:func:`langadapt.modeling.small_adapter_saves`). A LoRA adapter over a grown
vocabulary holds the whole trained ``embed_tokens`` (and untied ``lm_head``) as ``modules_to_save``, which replace
the base tables on load; a ``new_rows`` adapter covers every row from the first new id up, padding included. So the
rows the resize creates are overwritten by the adapter; they start at the mean base row so that the result is
deterministic anyway.

Errors are :class:`langadapt.errors.InputError` carrying the argument (``arg``, a field name such as
``"adapters"``) and the bad value; the script layer renders the flag.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import torch

from langadapt.embeddings import SUBTOKEN_DECAY, ResizeReport, is_tied, padded_size, resize_and_init
from langadapt.errors import InputError
from langadapt.hf_normalizer import warn_if_missing
from langadapt.lineage import check_chain
from langadapt.metadata import (
    ADAPTER_CONFIG, MODEL_INFO_FILE, ModelInfo, has_tokenizer, is_adapter_dir, tokenizer_info,
)

logger = logging.getLogger(__name__)

# Safetensors keys of a whole embedding table saved in an adapter: peft's ``save_embedding_layers`` copy
# (``...embed_tokens.weight``), a LoRA ``modules_to_save`` copy of the input table or head, and a trainable-tokens
# adapter's base layer.
_TABLE_KEY_ENDINGS = (
    "embed_tokens.weight", "embed_tokens.modules_to_save.weight", "lm_head.modules_to_save.weight",
    "embed_tokens.token_adapter.base_layer.weight",
)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") in ("1", "true", "True")


def torch_dtype(name: str | torch.dtype | None):
    """A ``--torch_dtype`` value as ``from_pretrained(dtype=...)`` takes it (see the module docstring).

    ``None``/``"float32"`` -> ``torch.float32`` (transformers 5's own default is ``auto``, which would load a bf16
    checkpoint in bf16 and train it without fp32 master weights); ``"auto"`` -> ``"auto"`` (the checkpoint's dtype);
    ``"bfloat16"``/``"float16"`` -> the torch dtype; a ``torch.dtype`` is returned as it is.
    """
    if isinstance(name, torch.dtype):
        return name
    if name in (None, "float32"):
        return torch.float32
    if name == "auto":
        return "auto"
    if name in ("bfloat16", "float16"):
        return getattr(torch, name)
    raise InputError(f"--torch_dtype: unknown dtype {name!r}; use auto, float32, bfloat16 or float16",
                     arg="torch_dtype", value=name)


def load_tokenizer(path: str, *, trust_remote_code: bool = False, cache_dir: str | None = None,
                   arg: str = "tokenizer_name_or_path"):
    """``AutoTokenizer.from_pretrained(path)`` with ``pad_token`` set (to EOS when it has none)."""
    from transformers import AutoTokenizer

    if not os.path.isdir(path) and _offline():
        raise InputError(f"--{arg}: {path} does not exist; pass a tokenizer folder (e.g. the output of "
                         "tokenizer/merge.py)", arg=arg, value=path)
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, cache_dir=cache_dir)
    except (OSError, ValueError) as e:
        raise InputError(f"--{arg}: cannot load a tokenizer from {path}: {e}", arg=arg, value=path) from None
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise InputError(f"--{arg}: the tokenizer in {path} has neither a pad nor an EOS token",
                             arg=arg, value=path)
        tok.pad_token = tok.eos_token
    return tok


def load_base_model(path: str, *, dtype: Any = None, trust_remote_code: bool = False, cache_dir: str | None = None,
                    attn_implementation: str | None = None, arg: str = "model_name_or_path"):
    """``AutoModelForCausalLM.from_pretrained`` with :func:`torch_dtype`'s rule; bad paths raise InputError."""
    from transformers import AutoModelForCausalLM

    if not os.path.isdir(path) and _offline():
        raise InputError(f"--{arg}: {path} does not exist; pass a model folder", arg=arg, value=path)
    kwargs: dict[str, Any] = {"dtype": torch_dtype(dtype), "trust_remote_code": trust_remote_code,
                              "cache_dir": cache_dir}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        return AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        raise InputError(f"--{arg}: cannot load a causal LM from {path}: {e}", arg=arg, value=path) from None


def embedding_rows(model) -> int:
    """Rows of the model's input embedding table (the whole table under DeepSpeed ZeRO-3, not this rank's part)."""
    weight = model.get_input_embeddings().weight
    return int(weight.ds_shape[0]) if hasattr(weight, "ds_shape") else int(weight.shape[0])


def saved_embedding_rows(adapter: str) -> int | None:
    """Rows of the embedding table saved in an adapter's weights (for adapters without ``langadapt_model.json``);
    ``None`` when the adapter holds no whole table (a plain LoRA, or a new_rows adapter's deltas only)."""
    from safetensors import safe_open

    path = os.path.join(adapter, "adapter_model.safetensors")
    if not os.path.isfile(path):
        return None
    with safe_open(path, "pt") as f:
        for key in f.keys():
            if key.endswith(_TABLE_KEY_ENDINGS):
                return int(f.get_slice(key).get_shape()[0])
    return None


def adapter_rows(adapter: str, info: ModelInfo | None = None) -> int | None:
    """Embedding rows an adapter was trained with: its ``langadapt_model.json``, else its saved table."""
    info = info if info is not None else ModelInfo.from_dir(adapter)
    return info.embedding_rows if info is not None else saved_embedding_rows(adapter)


def check_vocab_fit(
    rows: int, tokenizer_size: int, *, model_info: ModelInfo | None, tok_info: dict | None, same_folder: bool,
    pad_to_multiple_of: int,
) -> int:
    """Decide which ids are new for this model and refuse tokenizers that cannot belong to it. Returns first_new_id.

    A tokenizer smaller than the table is accepted only when the extra rows are padding on purpose: the model is
    our own output for this very tokenizer size, or the model's own tokenizer (same folder), or a merged
    tokenizer whose base was smaller than the table (a base shipped with spare rows, e.g. Qwen), or the table is
    exactly the tokenizer padded to ``pad_to_multiple_of``. Anything else (typically the base tokenizer passed to
    an already extended model) would leave rows unused without notice.
    """
    hint = "pass the tokenizer the model was trained with (--tokenizer_name_or_path)"
    arg = "tokenizer_name_or_path"
    if model_info is not None:
        if tokenizer_size < model_info.tokenizer_size:
            raise InputError(
                f"--tokenizer_name_or_path: the tokenizer has {tokenizer_size} tokens but the model was trained "
                f"with {model_info.tokenizer_size} ({MODEL_INFO_FILE}); {hint}", arg=arg, value=tokenizer_size,
            )
        return model_info.tokenizer_size
    if tok_info is not None:
        base = int(tok_info.get("base_vocab_size", tokenizer_size))
        if base > rows:
            raise InputError(
                f"--tokenizer_name_or_path: the tokenizer was merged onto a base of {base} tokens but the model "
                f"has only {rows} embedding rows; merge onto this model's own tokenizer", arg=arg, value=base,
            )
        return base
    if tokenizer_size < rows and not same_folder and rows != padded_size(tokenizer_size, pad_to_multiple_of):
        raise InputError(
            f"--tokenizer_name_or_path: the tokenizer has {tokenizer_size} tokens but the model has {rows} "
            f"embedding rows; the table is never shrunk. {hint}, or the model's own tokenizer",
            arg=arg, value=tokenizer_size,
        )
    return min(rows, tokenizer_size)


def resolve_base_tokenizer(explicit: str | None, tok_info: dict | None, model_path: str) -> str:
    """Base tokenizer for sub-token init: ``explicit`` (the flag), else the merge's recorded base (if it still
    exists), else the model folder (whose tokenizer is the base one when the model was never extended)."""
    if explicit:
        return explicit
    recorded = (tok_info or {}).get("base_tokenizer")
    if recorded and os.path.isdir(recorded):
        return recorded
    return model_path


def grow_to_tokenizer(
    model, tokenizer, *, tokenizer_dir: str, model_dir: str, init: str, pad_to_multiple_of: int,
    base_tokenizer_path: str | None = None, trust_remote_code: bool = False, cache_dir: str | None = None,
) -> ResizeReport:
    """Grow ``model``'s table to ``tokenizer`` and initialise the new rows: what the training stages do before
    training, and what perplexity does to score a merged tokenizer on the base model before any training.

    Checks the fit (:func:`check_vocab_fit`), loads the base tokenizer only when a ``subtoken_*`` init has new tokens to
    split (:func:`resolve_base_tokenizer`), and calls :func:`langadapt.embeddings.resize_and_init`.
    """
    from langadapt.portable import vocab_size

    tok_info = tokenizer_info(tokenizer_dir) if os.path.isdir(tokenizer_dir) else None
    model_info = ModelInfo.from_dir(model_dir) if os.path.isdir(model_dir) else None
    size = vocab_size(tokenizer)  # without the reserved tokens a saved folder pads the tokenizer with
    first_new = check_vocab_fit(
        embedding_rows(model), size, model_info=model_info, tok_info=tok_info,
        same_folder=os.path.abspath(tokenizer_dir) == os.path.abspath(model_dir), pad_to_multiple_of=pad_to_multiple_of,
    )
    base_tok = None
    if init in SUBTOKEN_DECAY and size > first_new:
        base_tok = load_tokenizer(resolve_base_tokenizer(base_tokenizer_path, tok_info, model_dir),
                                  trust_remote_code=trust_remote_code, cache_dir=cache_dir,
                                  arg="base_tokenizer_name_or_path")
    return resize_and_init(model, size, init=init, pad_to_multiple_of=pad_to_multiple_of,
                           tokenizer=tokenizer, base_tokenizer=base_tok, first_new_id=first_new)


def resolve_adapter_chain(adapters: Sequence[str], arg: str = "adapters") -> list[str]:
    """The adapters to apply, in order. One adapter expands to its recorded ``parent_adapters`` + itself."""
    adapters = [str(a) for a in adapters]
    for a in adapters:
        if not os.path.isdir(a):
            raise InputError(f"--{arg}: {a} does not exist; pass PEFT adapter folders", arg=arg, value=a)
        if not is_adapter_dir(a):
            info = ModelInfo.from_dir(a)
            what = "a full model; pass it as the base model" if info is not None else "not a PEFT adapter folder"
            raise InputError(f"--{arg}: {a} has no {ADAPTER_CONFIG}: it is {what}", arg=arg, value=a)
    try:  # an adapter applied together with its own continuation would apply the same training twice
        check_chain(adapters)
    except InputError as e:
        raise InputError(f"--{arg}: {e.message}", arg=arg, value=adapters) from None
    if len(adapters) != 1:
        return adapters
    info = ModelInfo.from_dir(adapters[0])
    parents = list(info.parent_adapters) if info is not None else []
    for p in parents:
        if not is_adapter_dir(p):
            raise InputError(
                f"--{arg}: {adapters[0]} was trained on top of the adapter {p} ({MODEL_INFO_FILE} parent_adapters), "
                f"which is not there any more; pass the whole chain in order: --{arg} PARENT... {adapters[0]}",
                arg=arg, value=p,
            )
    if parents:
        logger.info("applying the recorded parent adapters of %s first: %s", adapters[0], parents)
    return parents + adapters


def check_adapter_rows(adapter: str, info: ModelInfo | None, rows: int, arg: str = "adapters") -> int | None:
    """Embedding rows the adapter needs; refuses an adapter trained on a model with another vocabulary."""
    if info is None:
        return None
    if rows not in (info.base_embedding_rows, info.embedding_rows):
        raise InputError(
            f"--{arg}: the adapter {adapter} was trained on a model with {info.base_embedding_rows} embedding rows "
            f"(grown to {info.embedding_rows}), but the model it is applied to has {rows}; use the base model it "
            f"was trained from ({info.base_model_name_or_path}) and apply its parent adapters first",
            arg=arg, value=adapter,
        )
    return info.embedding_rows


def grow_embeddings(model, rows: int) -> None:
    """Grow the embedding table (and untied head) to ``rows`` for an adapter; new rows start at the mean base row."""
    current = embedding_rows(model)
    if rows < current:
        raise InputError(f"--adapters: an adapter needs {rows} embedding rows but the model already has {current}",
                         arg="adapters", value=rows)
    if rows > current:
        resize_and_init(model, rows, init="mean", pad_to_multiple_of=1, first_new_id=current)


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


def apply_adapter(model, adapter: str, merge: bool = True, arg: str = "adapters"):
    """Apply one adapter to ``model`` (growing its table first); merged into a plain model, or a ``PeftModel``."""
    from peft import PeftModel

    info = ModelInfo.from_dir(adapter)
    rows = embedding_rows(model)
    target = check_adapter_rows(adapter, info, rows, arg) or saved_embedding_rows(adapter) or rows
    grow_embeddings(model, target)
    try:
        peft_model = PeftModel.from_pretrained(model, adapter)
    except (RuntimeError, ValueError) as e:  # shape mismatches of a foreign adapter
        raise InputError(f"--{arg}: cannot apply the adapter {adapter} to this model: {e}", arg=arg,
                         value=adapter) from None
    if not merge:
        return peft_model
    merged = peft_model.merge_and_unload()
    retie_or_untie(merged)
    logger.info("merged adapter %s (%d embedding rows)", adapter, target)
    return merged


def tokenizer_path_for(base_model: str, adapters: Sequence[str], tokenizer_path: str | None) -> str:
    """``tokenizer_path``, else the last adapter's folder when it holds a tokenizer, else the base model's."""
    return tokenizer_path or next((a for a in reversed(adapters) if has_tokenizer(a)), base_model)


def load_tokenizer_for(base_model: str, adapters: Sequence[str], tokenizer_path: str | None):
    """(tokenizer, the folder it came from) for a base model + adapter chain (see :func:`tokenizer_path_for`)."""
    path = tokenizer_path_for(base_model, adapters, tokenizer_path)
    tokenizer = load_tokenizer(path)
    if os.path.isdir(path):
        warn_if_missing(path)  # langadapt normalizes itself; say what plain AutoTokenizer users of this folder get
    return tokenizer, path


def load_with_adapters(
    base_model: str,
    adapters: Sequence[str],
    tokenizer_path: str | None = None,
    torch_dtype: Any = None,
    merge_last: bool = True,
    arg: str = "adapters",
    base_arg: str = "model_name_or_path",
):
    """Load ``base_model``, apply ``adapters`` in order (each merged before the next) and return (model, tokenizer).

    ``torch_dtype``: see :func:`torch_dtype` (``None`` is float32). ``merge_last=False`` leaves the last adapter
    unmerged (a ``PeftModel``; the reference the merge script checks the merged weights against). The tokenizer
    comes from ``tokenizer_path``, else the last adapter's folder, else the base model; it must fit the final
    embedding table. ``arg``/``base_arg``: the argument names errors about the adapters / base model carry.
    """
    chain = resolve_adapter_chain(adapters, arg) if adapters else []
    tokenizer, tok_path = load_tokenizer_for(base_model, chain, tokenizer_path)
    model = load_base_model(base_model, dtype=torch_dtype, arg=base_arg)
    for i, adapter in enumerate(chain):
        model = apply_adapter(model, adapter, merge=merge_last or i < len(chain) - 1, arg=arg)
    rows = embedding_rows(model)
    if len(tokenizer) > rows:
        raise InputError(
            f"--tokenizer_name_or_path: the tokenizer {tok_path} has {len(tokenizer)} tokens but the model has only "
            f"{rows} embedding rows; pass the tokenizer the adapters were trained with",
            arg="tokenizer_name_or_path", value=tok_path,
        )
    model.eval()
    return model, tokenizer
