"""Loading a base model and tokenizer, growing the vocabulary, and setting up what is trained.

One call does it for both training stages::

    prepared = prepare_model(model_args, adapt_args, gradient_checkpointing=training_args.activation_checkpointing)
    prepared.model       # a PreTrainedModel (full/embeddings) or a PeftModel (lora/new_rows)
    prepared.tokenizer   # with a pad token
    prepared.info        # ModelInfo, written as langadapt_model.json by save_model()
    prepared.resize      # ResizeReport: rows before/after, init used (for run_args.json)

The steps are public too (:func:`load_tokenizer`, :func:`load_base_model`, :func:`check_vocab_fit`,
:func:`apply_training_mode`, :func:`count_parameters`, :func:`save_model`) for scripts that need only some of them.

``langadapt_model.json`` (the contract every later stage reads) records the base model, the table size before and
after the resize, the tokenizer size, the mode, the init and the chain of adapters an adapter was trained on top of.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from langadapt.args import AdaptationArguments, ModelArguments
from langadapt.cli import UsageError
from langadapt.embeddings import SUBTOKEN_DECAY, ResizeReport, padded_size, resize_and_init
from langadapt.io import read_json, write_json
from langadapt.normalize import CONFIG_FILE as NORMALIZER_FILE
from langadapt.normalize import NormalizerConfig

logger = logging.getLogger(__name__)

MODEL_INFO_FILE = "langadapt_model.json"
TOKENIZER_INFO_FILE = "langadapt_tokenizer.json"
ADAPTER_MODES = ("lora", "new_rows")
# peft_type of the adapter each PEFT mode produces (adapter_config.json), to tell "continue" from "stack".
PEFT_TYPE_OF_MODE = {"lora": "LORA", "new_rows": "TRAINABLE_TOKENS"}


@dataclass
class ModelInfo:
    """Contents of ``langadapt_model.json`` (see CONTRACTS.md, "Model/adapter output folder")."""

    base_model_name_or_path: str
    base_embedding_rows: int
    tokenizer_size: int
    embedding_rows: int
    training_mode: str
    embedding_init: str
    is_adapter: bool
    parent_adapters: list[str] = field(default_factory=list)
    # Full-model outputs only: adapters merged into these weights before training (provenance; do not re-apply).
    merged_adapters: list[str] = field(default_factory=list)

    def save(self, directory: str) -> str:
        path = os.path.join(directory, MODEL_INFO_FILE)
        write_json(path, dataclasses.asdict(self))
        return path

    @classmethod
    def from_dir(cls, directory: str) -> "ModelInfo | None":
        """The info saved in a model/adapter folder, or ``None`` when there is none (e.g. a hub base model)."""
        path = os.path.join(directory, MODEL_INFO_FILE)
        if not os.path.isfile(path):
            return None
        data = read_json(path)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


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


def _is_local_or_online(path: str) -> bool:
    return os.path.isdir(path) or os.environ.get("HF_HUB_OFFLINE", "0") not in ("1", "true", "True")


def tokenizer_info(tokenizer_dir: str) -> dict[str, Any] | None:
    """``langadapt_tokenizer.json`` of a merged tokenizer folder, or ``None``."""
    path = os.path.join(tokenizer_dir, TOKENIZER_INFO_FILE)
    return read_json(path, "--tokenizer_name_or_path") if os.path.isfile(path) else None


def load_tokenizer(model_args: ModelArguments, flag: str = "--tokenizer_name_or_path"):
    """The tokenizer of ``--tokenizer_name_or_path``, with ``pad_token`` set (to EOS when it has none)."""
    from transformers import AutoTokenizer

    path = model_args.tokenizer_name_or_path or model_args.model_name_or_path
    if not _is_local_or_online(path):
        raise UsageError(
            f"{flag}: {path} does not exist; pass a tokenizer folder (e.g. the output of tokenizer/merge.py)"
        )
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=model_args.trust_remote_code,
                                            cache_dir=model_args.cache_dir)
    except (OSError, ValueError) as e:
        raise UsageError(f"{flag}: cannot load a tokenizer from {path}: {e}") from None
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise UsageError(f"{flag}: the tokenizer in {path} has neither a pad nor an EOS token")
        # Padding is only used for sample generation and eval batches; packed training blocks need none.
        tok.pad_token = tok.eos_token
    return tok


def torch_dtype(name: str | None):
    """``--torch_dtype`` to what ``from_pretrained(dtype=...)`` takes. ``None`` -> float32 (transformers 5's
    default is ``auto``, which would load a bf16 checkpoint in bf16 and train it without fp32 master weights)."""
    if name in (None, "float32"):
        return torch.float32
    return "auto" if name == "auto" else getattr(torch, name)


def load_base_model(model_args: ModelArguments, flag: str = "--model_name_or_path"):
    """``AutoModelForCausalLM.from_pretrained`` with the dtype/attention options; bad paths raise UsageError."""
    from transformers import AutoModelForCausalLM

    path = model_args.model_name_or_path
    if not _is_local_or_online(path):
        raise UsageError(f"{flag}: {path} does not exist; pass a model folder")
    kwargs: dict[str, Any] = {"dtype": torch_dtype(model_args.torch_dtype),
                              "trust_remote_code": model_args.trust_remote_code, "cache_dir": model_args.cache_dir}
    if model_args.attn_implementation:
        kwargs["attn_implementation"] = model_args.attn_implementation
    try:
        return AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        raise UsageError(f"{flag}: cannot load a causal LM from {path}: {e}") from None


def embedding_module_names(model) -> tuple[str, str | None]:
    """Qualified names of the input embedding and output head modules (``model.embed_tokens``, ``lm_head``)."""
    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    names = {id(m): n for n, m in model.named_modules()}
    return names[id(inp)], (names.get(id(out)) if out is not None else None)


def is_tied(model) -> bool:
    out = model.get_output_embeddings()
    return out is not None and out.weight is model.get_input_embeddings().weight


def check_vocab_fit(
    rows: int, tokenizer_size: int, *, model_info: ModelInfo | None, tok_info: dict | None, same_folder: bool,
    pad_to_multiple_of: int,
) -> int:
    """Decide which ids are new for this model and refuse tokenizers that cannot belong to it. Returns first_new_id.

    A tokenizer smaller than the table is accepted only when the extra rows are padding on purpose: the model is
    our own output for this very tokenizer size, or the model's own tokenizer (same folder), or a merged
    tokenizer whose base was smaller than the table (a base shipped with spare rows, e.g. Qwen), or the table is
    exactly the tokenizer padded to ``--pad_vocab_to_multiple_of``. Anything else (typically the base tokenizer
    passed to an already extended model) would leave rows unused without notice.
    """
    hint = "pass the tokenizer the model was trained with (--tokenizer_name_or_path)"
    if model_info is not None:
        if tokenizer_size < model_info.tokenizer_size:
            raise UsageError(
                f"--tokenizer_name_or_path: the tokenizer has {tokenizer_size} tokens but the model was trained "
                f"with {model_info.tokenizer_size} ({MODEL_INFO_FILE}); {hint}"
            )
        return model_info.tokenizer_size
    if tok_info is not None:
        base = int(tok_info.get("base_vocab_size", tokenizer_size))
        if base > rows:
            raise UsageError(
                f"--tokenizer_name_or_path: the tokenizer was merged onto a base of {base} tokens but the model "
                f"has only {rows} embedding rows; merge onto this model's own tokenizer"
            )
        return base
    if tokenizer_size < rows and not same_folder and rows != padded_size(tokenizer_size, pad_to_multiple_of):
        raise UsageError(
            f"--tokenizer_name_or_path: the tokenizer has {tokenizer_size} tokens but the model has {rows} "
            f"embedding rows; the table is never shrunk. {hint}, or the model's own tokenizer"
        )
    return min(rows, tokenizer_size)


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
    # (tests/test_pretrain_modeling.py checks the head follows the trained rows).
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
        raise UsageError(
            "--training_mode new_rows: the tokenizer adds no tokens to this model "
            f"({resize.tokenizer_size} tokens, {resize.embedding_rows} rows); use a merged tokenizer or another mode"
        )
    targets = [inp_name] + ([out_name] if out_name and not tied else [])
    return get_peft_model(model, TrainableTokensConfig(token_indices=indices, target_modules=targets))


def small_adapter_saves(model) -> None:
    """Save adapters without a copy of the resized base embeddings when the adapter already holds every row that
    differs from the base.

    peft's ``save_embedding_layers="auto"`` adds the whole resized embedding table to an adapter whenever the
    vocabulary grew, which turns a 50 KB new_rows adapter into a full table copy. Our adapters do not need it:
    new_rows trains every row from the first new id up (padding included), and lora saves the input embeddings and
    (untied) head whole as modules_to_save. Loaders resize the base to ``embedding_rows`` first (CONTRACTS.md).
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
    return str(read_json(os.path.join(adapter_dir, "adapter_config.json"), "--peft_path").get("peft_type", ""))


def default_tokenizer_to_adapter(model_args: ModelArguments, adapt_args: AdaptationArguments) -> None:
    """``--peft_path`` without ``--tokenizer_name_or_path``: use the tokenizer saved in the adapter folder (the one
    the adapter was trained with, usually a merged one) instead of the base model's. Changes ``model_args`` in
    place; an explicit ``--tokenizer_name_or_path`` always wins."""
    path = adapt_args.peft_path
    if not path or not getattr(model_args, "tokenizer_defaulted", False):
        return
    if any(os.path.isfile(os.path.join(path, f)) for f in ("tokenizer.json", "tokenizer.model")):
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
    tokenizer = load_tokenizer(model_args)
    tok_dir = model_args.tokenizer_name_or_path
    tok_info = tokenizer_info(tok_dir) if os.path.isdir(tok_dir) else None
    parent = load_parent_adapter_info(adapt_args.peft_path) if adapt_args.peft_path else None
    model = load_base_model(model_args)
    model_info = ModelInfo.from_dir(model_args.model_name_or_path) if os.path.isdir(model_args.model_name_or_path) \
        else None
    weight = model.get_input_embeddings().weight
    rows = int(weight.ds_shape[0]) if hasattr(weight, "ds_shape") else int(weight.shape[0])  # ZeRO-3: partitioned
    first_new = check_vocab_fit(
        rows, len(tokenizer), model_info=model_info, tok_info=tok_info,
        same_folder=os.path.abspath(tok_dir) == os.path.abspath(model_args.model_name_or_path),
        pad_to_multiple_of=adapt_args.pad_vocab_to_multiple_of,
    )
    base_tok = None
    if adapt_args.embedding_init in SUBTOKEN_DECAY and len(tokenizer) > first_new:
        base_tok = load_tokenizer(
            ModelArguments(model_name_or_path=model_args.model_name_or_path,
                           tokenizer_name_or_path=resolve_base_tokenizer(model_args, adapt_args, tok_info),
                           trust_remote_code=model_args.trust_remote_code, cache_dir=model_args.cache_dir),
            flag="--base_tokenizer_name_or_path",
        )
    resize = resize_and_init(model, tokenizer, init=adapt_args.embedding_init,
                             pad_to_multiple_of=adapt_args.pad_vocab_to_multiple_of, base_tokenizer=base_tok,
                             first_new_id=first_new)
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


def resolve_base_tokenizer(model_args: ModelArguments, adapt_args: AdaptationArguments,
                           tok_info: dict | None) -> str:
    """Base tokenizer for sub-token init: the flag, else the merge's recorded base (if it still exists), else the
    model folder (whose tokenizer is the base one when the model was never extended)."""
    if adapt_args.base_tokenizer_name_or_path:
        return adapt_args.base_tokenizer_name_or_path
    recorded = (tok_info or {}).get("base_tokenizer")
    if recorded and os.path.isdir(recorded):
        return recorded
    return model_args.model_name_or_path


def load_parent_adapter_info(peft_path: str) -> dict[str, Any]:
    """Check ``--peft_path`` early (before loading a model): an adapter folder; returns its config and info."""
    if not os.path.isdir(peft_path) or not os.path.isfile(os.path.join(peft_path, "adapter_config.json")):
        raise UsageError(f"--peft_path: {peft_path} is not a PEFT adapter folder (no adapter_config.json)")
    return {"path": peft_path, "peft_type": _peft_type(peft_path), "info": ModelInfo.from_dir(peft_path)}


def _adapter_rows(peft_path: str) -> int | None:
    """Embedding rows an adapter was trained for, from its saved weights when it has no langadapt_model.json."""
    from safetensors import safe_open

    path = os.path.join(peft_path, "adapter_model.safetensors")
    if not os.path.isfile(path):
        return None
    with safe_open(path, "pt") as f:
        for key in f.keys():
            if "modules_to_save" in key and ("embed_tokens" in key or "lm_head" in key):
                return int(f.get_slice(key).get_shape()[0])
    return None


def _attach_parent(model, adapt_args, resize: ResizeReport, parent: dict, gradient_checkpointing: bool):
    """Continue ``--peft_path`` (same adapter type as the mode) or merge it into the base and train on top.

    Returns ``(model, parent_adapters, continued)``. A continued adapter replaces ``--peft_path`` (it starts from
    its weights), so its parents are ``--peft_path``'s own; a merged one becomes a parent of the new adapter.
    """
    from peft import PeftModel

    path, info = parent["path"], parent["info"]
    rows = info.embedding_rows if info is not None else _adapter_rows(path)
    if rows is not None and rows != resize.embedding_rows:
        raise UsageError(
            f"--peft_path: the adapter {path} was trained with {rows} embedding rows but this model and tokenizer "
            f"give {resize.embedding_rows} ({resize.tokenizer_size} tokens); use the tokenizer (and "
            "--pad_vocab_to_multiple_of) the adapter was trained with"
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
               tokenizer_dir: str | None = None) -> None:
    """Write the model or adapter, the tokenizer and ``langadapt_model.json`` into ``output_dir``.

    With a ``trainer`` its ``save_model`` is used (handles DeepSpeed ZeRO-3 gathering and only writes on the main
    process); otherwise ``model.save_pretrained``. ``tokenizer_dir``: the folder the tokenizer was loaded from;
    its ``langadapt_normalizer.json`` and ``langadapt_tokenizer.json`` (which ``save_pretrained`` does not write)
    are copied too, so later stages find the normalization next to the model or adapter.
    """
    from langadapt.adapters import copy_metadata  # adapters imports this module
    if trainer is not None:
        trainer.save_model(output_dir)
        if not trainer.is_world_process_zero():
            return
    else:
        model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    info.save(output_dir)
    if tokenizer_dir and os.path.isdir(tokenizer_dir):
        copy_metadata([tokenizer_dir], output_dir, names=(NORMALIZER_FILE, TOKENIZER_INFO_FILE))


def read_model_info(directory: str) -> ModelInfo | None:
    """Alias of :meth:`ModelInfo.from_dir` for callers that prefer a function."""
    return ModelInfo.from_dir(directory)


__all__ = [
    "MODEL_INFO_FILE", "ModelInfo", "PreparedModel", "apply_training_mode", "check_vocab_fit", "count_parameters",
    "default_tokenizer_to_adapter",
    "embedding_module_names", "is_tied", "load_base_model", "load_tokenizer", "prepare_model", "read_model_info",
    "save_model", "tokenizer_info", "torch_dtype",
]
