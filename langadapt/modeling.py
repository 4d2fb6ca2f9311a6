"""Preparing a model for the training stages: load, grow the vocabulary, set up what is trained, save.

One call does it for both training stages::

    prepared = prepare_model(model_args, adapt_args, gradient_checkpointing=training_args.activation_checkpointing)
    prepared.model       # a PreTrainedModel (full/embeddings) or a PeftModel (lora/new_rows)
    prepared.tokenizer   # with a pad token
    prepared.info        # ModelInfo, written as langadapt_model.json by save_model()
    prepared.resize      # ResizeReport: rows before/after, init used (for run_args.json)

Loading (tokenizer, base model, dtype, table growth) is :mod:`langadapt.loading`'s, shared with inference,
perplexity, merge and bench; the training-only steps are public here (:func:`apply_training_mode`,
:func:`count_parameters`, :func:`save_model`) for scripts that need only some of them.

``langadapt_model.json`` (:class:`langadapt.metadata.ModelInfo`, the contract every later stage reads) records the
base model, the table size before and after the resize, the tokenizer size, the mode, the init and the chain of
adapters an adapter was trained on top of.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from dataclasses import dataclass
from typing import Any

from langadapt.args import AdaptationArguments, ModelArguments
from langadapt.embeddings import ResizeReport, embedding_module_names, is_tied
from langadapt.errors import InputError
from langadapt.io import read_json
from langadapt.loading import (
    adapter_rows, check_vocab_fit, grow_to_tokenizer, load_base_model, load_tokenizer, torch_dtype,
)
from langadapt.metadata import (
    ADAPTER_CONFIG, MODEL_INFO_FILE, NORMALIZER_FILE, TOKENIZER_INFO_FILE, ModelInfo, copy_metadata, has_tokenizer,
    is_adapter_dir, read_model_info, tokenizer_info,
)
from langadapt.normalize import NormalizerConfig

logger = logging.getLogger(__name__)

ADAPTER_MODES = ("lora", "new_rows")
# peft_type of the adapter each PEFT mode produces (adapter_config.json), to tell "continue" from "stack".
PEFT_TYPE_OF_MODE = {"lora": "LORA", "new_rows": "TRAINABLE_TOKENS"}


@dataclass
class PreparedModel:
    """Result of :func:`prepare_model`."""

    model: Any
    tokenizer: Any
    info: ModelInfo
    resize: ResizeReport
    normalizer: NormalizerConfig
    trainable_params: int
    total_params: int

    def resolved(self) -> dict[str, Any]:
        """Facts decided at run time, for ``run_args.json``'s ``resolved`` block."""
        return {
            "embeddings": self.resize.to_dict(),
            "model_info": dataclasses.asdict(self.info),
            "trainable_params": self.trainable_params,
            "total_params": self.total_params,
            "normalizer": dataclasses.asdict(self.normalizer),
        }


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameters, each tensor counted once (tied weights once)."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        n = p.ds_numel if hasattr(p, "ds_numel") else p.numel()  # ZeRO-3 partitions report 0 elements
        total += n
        trainable += n if p.requires_grad else 0
    return trainable, total


def apply_training_mode(model, adapt_args: AdaptationArguments, resize: ResizeReport,
                        gradient_checkpointing: bool = False):
    """Set what is trained (see :class:`langadapt.args.AdaptationArguments`); returns the model or a PeftModel."""
    from peft import LoraConfig, TaskType, TrainableTokensConfig, get_peft_model

    # peft warns that tied adapters cannot be tied, but TrainableTokens and ensure_weight_tying do tie them
    # (tests/test_modeling.py checks the head follows the trained rows).
    warnings.filterwarnings("ignore", message="Model has `tie_word_embeddings=True`")
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
    mode = adapt_args.training_mode
    inp_name, out_name = embedding_module_names(model)
    tied = is_tied(model)
    if mode == "full":
        model.requires_grad_(True)
        return model
    if mode == "embeddings":
        model.requires_grad_(False)
        model.get_input_embeddings().weight.requires_grad_(True)
        if model.get_output_embeddings() is not None:
            model.get_output_embeddings().weight.requires_grad_(True)
        return model
    if gradient_checkpointing:
        # Frozen input embeddings give activations with no grad, so checkpointed blocks would get no gradient.
        model.enable_input_require_grads()
    if mode == "lora":
        to_save = adapt_args.lora_modules_to_save
        if to_save is None and resize.vocab_grew:
            to_save = [inp_name.rsplit(".", 1)[-1]] + ([out_name.rsplit(".", 1)[-1]] if out_name and not tied else [])
        config = LoraConfig(
            task_type=TaskType.CAUSAL_LM, r=adapt_args.lora_rank, lora_alpha=adapt_args.lora_alpha,
            lora_dropout=adapt_args.lora_dropout, target_modules=adapt_args.lora_target_modules or "all-linear",
            modules_to_save=to_save, ensure_weight_tying=tied,
        )
        return get_peft_model(model, config)
    # new_rows: every row from the first new id up, padding rows included, so that the adapter alone fixes every
    # row that differs from the base (a reload onto a base resized with another init gives identical logits).
    indices = list(range(resize.first_new_id, resize.embedding_rows))
    if not indices:
        raise InputError(
            "--training_mode new_rows: the tokenizer adds no tokens to this model "
            f"({resize.tokenizer_size} tokens, {resize.embedding_rows} rows); use a merged tokenizer or another mode",
            arg="training_mode", value=mode,
        )
    targets = [inp_name] + ([out_name] if out_name and not tied else [])
    return get_peft_model(model, TrainableTokensConfig(token_indices=indices, target_modules=targets))


def small_adapter_saves(model) -> None:
    """Save adapters without a copy of the resized base embeddings when the adapter already holds every row that
    differs from the base.

    peft's ``save_embedding_layers="auto"`` adds the whole resized embedding table to an adapter whenever the
    vocabulary grew, which turns a 50 KB new_rows adapter into a full table copy. Our adapters do not need it:
    new_rows trains every row from the first new id up (padding included), and lora saves the input embeddings and
    (untied) head whole as modules_to_save. Loaders resize the base to ``embedding_rows`` first.
    When a user's ``--modules_to_save`` leaves a resized table out, peft's default stays in force.
    """
    import functools

    from peft import PeftModel

    if not isinstance(model, PeftModel):
        return
    config = model.peft_config[model.active_adapter]
    peft_type = str(getattr(config.peft_type, "value", config.peft_type))
    inp, out = embedding_module_names(model.get_base_model())
    if peft_type == "LORA":
        saved = {m.rsplit(".", 1)[-1] for m in (config.modules_to_save or [])}
        needed = {inp.rsplit(".", 1)[-1]} | ({out.rsplit(".", 1)[-1]} if out and not is_tied(model.get_base_model())
                                             else set())
        if not needed <= saved:
            return
    elif peft_type != "TRAINABLE_TOKENS":
        return
    # An instance attribute shadows the method, so the Trainer's checkpoints and final save use it too.
    model.save_pretrained = functools.partial(type(model).save_pretrained, model, save_embedding_layers=False)


def _peft_type(adapter_dir: str) -> str:
    return str(read_json(os.path.join(adapter_dir, ADAPTER_CONFIG), "peft_path").get("peft_type", ""))


def default_tokenizer_to_adapter(model_args: ModelArguments, adapt_args: AdaptationArguments) -> None:
    """``--peft_path`` without ``--tokenizer_name_or_path``: use the tokenizer saved in the adapter folder (the one
    the adapter was trained with, usually a merged one) instead of the base model's. Changes ``model_args`` in
    place; an explicit ``--tokenizer_name_or_path`` always wins."""
    path = adapt_args.peft_path
    if not path or not getattr(model_args, "tokenizer_defaulted", False):
        return
    if has_tokenizer(path):
        model_args.tokenizer_name_or_path = path
        model_args.tokenizer_defaulted = False
        logger.info("--tokenizer_name_or_path not given: using the tokenizer of --peft_path %s", path)
    else:
        logger.warning("--tokenizer_name_or_path not given and --peft_path %s holds no tokenizer: using the base "
                       "model's tokenizer", path)


def prepare_model(model_args: ModelArguments, adapt_args: AdaptationArguments,
                  gradient_checkpointing: bool = False) -> PreparedModel:
    """Load tokenizer and model, resize and initialise new rows, continue ``--peft_path``, set the training mode."""
    default_tokenizer_to_adapter(model_args, adapt_args)
    tok_dir = model_args.tokenizer_name_or_path or model_args.model_name_or_path
    tokenizer = load_tokenizer(tok_dir, trust_remote_code=model_args.trust_remote_code,
                               cache_dir=model_args.cache_dir)
    parent = load_parent_adapter_info(adapt_args.peft_path) if adapt_args.peft_path else None
    model = load_base_model(model_args.model_name_or_path, dtype=model_args.torch_dtype,
                            trust_remote_code=model_args.trust_remote_code, cache_dir=model_args.cache_dir,
                            attn_implementation=model_args.attn_implementation)
    resize = grow_to_tokenizer(
        model, tokenizer, tokenizer_dir=tok_dir, model_dir=model_args.model_name_or_path,
        init=adapt_args.embedding_init, pad_to_multiple_of=adapt_args.pad_vocab_to_multiple_of,
        base_tokenizer_path=adapt_args.base_tokenizer_name_or_path,
        trust_remote_code=model_args.trust_remote_code, cache_dir=model_args.cache_dir,
    )
    if resize.embedding_rows < len(tokenizer):  # a saved folder's tokenizer, padded to a larger table
        m = adapt_args.pad_vocab_to_multiple_of
        raise InputError(
            f"--pad_vocab_to_multiple_of {m}: the tokenizer in {tok_dir} was saved padded to a table of "
            f"{len(tokenizer)} rows ({len(tokenizer) - resize.tokenizer_size} reserved tokens) but this multiple gives "
            f"{resize.embedding_rows} rows; pass the multiple it was trained with, or the tokenizer stage's folder as "
            "--tokenizer_name_or_path", arg="pad_vocab_to_multiple_of", value=m)
    parents: list[str] = []
    continued = False
    if parent is not None:
        model, parents, continued = _attach_parent(model, adapt_args, resize, parent, gradient_checkpointing)
    if not continued:
        model = apply_training_mode(model, adapt_args, resize, gradient_checkpointing)
    small_adapter_saves(model)
    is_adapter = adapt_args.training_mode in ADAPTER_MODES
    base = model_args.model_name_or_path
    info = ModelInfo(
        # A local folder is recorded absolute, so later stages find it from any working directory.
        base_model_name_or_path=os.path.abspath(base) if os.path.isdir(base) else base,
        base_embedding_rows=resize.base_rows,
        tokenizer_size=resize.tokenizer_size, embedding_rows=resize.embedding_rows,
        training_mode=adapt_args.training_mode, embedding_init=adapt_args.embedding_init, is_adapter=is_adapter,
        parent_adapters=parents if is_adapter else [], merged_adapters=[] if is_adapter else parents,
    )
    trainable, total = count_parameters(model)
    normalizer = NormalizerConfig.from_dir(tok_dir) if os.path.isdir(tok_dir) else NormalizerConfig()
    log_model_summary(resize, adapt_args.training_mode, trainable, total)
    return PreparedModel(model, tokenizer, info, resize, normalizer, trainable, total)


def load_parent_adapter_info(peft_path: str) -> dict[str, Any]:
    """Check ``--peft_path`` early (before loading a model): an adapter folder; returns its config and info."""
    if not os.path.isdir(peft_path) or not is_adapter_dir(peft_path):
        raise InputError(f"--peft_path: {peft_path} is not a PEFT adapter folder (no adapter_config.json)",
                         arg="peft_path", value=peft_path)
    return {"path": peft_path, "peft_type": _peft_type(peft_path), "info": ModelInfo.from_dir(peft_path)}


def _attach_parent(model, adapt_args, resize: ResizeReport, parent: dict, gradient_checkpointing: bool):
    """Continue ``--peft_path`` (same adapter type as the mode) or merge it into the base and train on top.

    Returns ``(model, parent_adapters, continued)``. A continued adapter replaces ``--peft_path`` (it starts from
    its weights), so its parents are ``--peft_path``'s own; a merged one becomes a parent of the new adapter.
    """
    from peft import PeftModel

    path, info = parent["path"], parent["info"]
    rows = adapter_rows(path, info)
    if rows is not None and rows != resize.embedding_rows:
        raise InputError(
            f"--peft_path: the adapter {path} was trained with {rows} embedding rows but this model and tokenizer "
            f"give {resize.embedding_rows} ({resize.tokenizer_size} tokens); use the tokenizer (and "
            "--pad_vocab_to_multiple_of) the adapter was trained with", arg="peft_path", value=path,
        )
    chain = list(info.parent_adapters) if info is not None else []
    if PEFT_TYPE_OF_MODE.get(adapt_args.training_mode) == parent["peft_type"]:
        if gradient_checkpointing:
            model.enable_input_require_grads()
        logger.info("continuing adapter %s (%s)", path, parent["peft_type"])
        return PeftModel.from_pretrained(model, path, is_trainable=True), chain, True
    logger.info("merging adapter %s (%s) into the base before %s training", path, parent["peft_type"],
                adapt_args.training_mode)
    merged = PeftModel.from_pretrained(model, path).merge_and_unload()
    return merged, chain + [os.path.abspath(path)], False


def log_model_summary(resize: ResizeReport, mode: str, trainable: int, total: int) -> None:
    """The facts everyone asks for first, logged once."""
    logger.info(
        "vocabulary: %d embedding rows -> %d (tokenizer %d tokens, %d new from id %d, %d padding rows, init %s%s)",
        resize.base_rows, resize.embedding_rows, resize.tokenizer_size, len(resize.new_token_ids),
        resize.first_new_id, resize.padding_rows, resize.init, ", tied head" if resize.tied else "",
    )
    logger.info("training mode %s: %d / %d parameters trainable (%.2f%%)", mode, trainable, total,
                100.0 * trainable / max(total, 1))


def save_model(model, tokenizer, output_dir: str, info: ModelInfo, trainer=None,
               tokenizer_dir: str | None = None, peft_path: str | None = None) -> None:
    """Write the model or adapter, the tokenizer and ``langadapt_model.json`` into ``output_dir``.

    With a ``trainer`` its ``save_model`` is used (handles DeepSpeed ZeRO-3 gathering and only writes on the main
    process); otherwise ``model.save_pretrained``. ``tokenizer_dir``: the folder the tokenizer was loaded from;
    its ``langadapt_normalizer.json`` and ``langadapt_tokenizer.json`` (which ``save_pretrained`` does not write)
    are copied too, so later stages find the normalization next to the model or adapter. ``peft_path``: the
    ``--peft_path`` the adapter was trained from, recorded in ``langadapt_lineage.json`` (continued or merged).
    """
    if trainer is not None:
        trainer.save_model(output_dir)
        if not trainer.is_world_process_zero():
            return
    else:
        model.save_pretrained(output_dir)
    from langadapt.portable import tokenizer_to_save
    tokenizer_to_save(tokenizer, info.embedding_rows, info.base_embedding_rows).save_pretrained(output_dir)
    info.save(output_dir)
    if info.is_adapter:  # PEFT's AutoPeftModelForCausalLM then finds the base from any working directory
        from langadapt.lineage import write_lineage
        from langadapt.portable import record_absolute_base
        record_absolute_base(output_dir, info.base_model_name_or_path)
        write_lineage(output_dir, peft_path, info.training_mode)
    if tokenizer_dir and os.path.isdir(tokenizer_dir):
        copy_metadata([tokenizer_dir], output_dir, names=(NORMALIZER_FILE, TOKENIZER_INFO_FILE))


__all__ = [
    "PreparedModel", "apply_training_mode", "count_parameters", "default_tokenizer_to_adapter", "prepare_model",
    "save_model",
    # Re-exported from langadapt.loading / langadapt.metadata / langadapt.embeddings for existing imports.
    "MODEL_INFO_FILE", "ModelInfo", "check_vocab_fit", "embedding_module_names", "is_tied", "load_base_model",
    "load_tokenizer", "read_model_info", "tokenizer_info", "torch_dtype",
]
