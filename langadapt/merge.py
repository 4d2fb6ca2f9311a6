"""Merge a chain of adapters into the base model and save a plain, checked HF model folder.

Serving stacks (vLLM, TGI, llama.cpp converters) refuse adapters that carry embedding tables, and every adapter
of a vocabulary-extended model does. Deployment therefore goes through a merged model:

1. rebuild the trained model: base, grown to the adapters' embedding rows, every adapter but the last merged in
   order, the last one applied *unmerged* (:func:`langadapt.loading.load_with_adapters` with ``merge_last=False``);
2. compute reference logits on a few prompts (built with the template the model was instruction-tuned with);
3. merge the last adapter, cast to the output dtype, save sharded safetensors + tokenizer + our metadata files;
4. reload the saved folder with ``AutoModelForCausalLM`` alone and compare its logits with the reference: the
   maximum absolute difference is reported (``merge_report.json``) and must stay under the tolerance, otherwise
   the output folder is not written.

The reference and the reloaded model are never in memory at the same time: peak memory is one model in float32.
With ``--low_memory`` step 3 runs one base shard at a time (:mod:`langadapt.lowmem_merge`, an implementation
independent of PEFT's, so the self-check compares two different computations), and step 1 happens after it.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from langadapt.loading import embedding_rows, load_with_adapters, resolve_adapter_chain, retie_or_untie
from langadapt.errors import InputError
from langadapt.io import atomic_output_dir, write_json
from langadapt.metadata import ModelInfo, copy_metadata
from langadapt.hf_normalizer import attach_normalizer, warn_if_missing
from langadapt.model_card import write_model_card
from langadapt.normalize import CONFIG_FILE as NORMALIZER_FILE
from langadapt.normalize import NormalizerConfig, normalize
from langadapt.portable import set_trained_chat_template, tokenizer_to_save, vocab_size
from langadapt.runinfo import write_run_args
from langadapt.templates import encode_prompts, load_template_name

if TYPE_CHECKING:  # the argument dataclass lives with the other scripts' arguments
    from langadapt.args.inference import MergeArguments

logger = logging.getLogger(__name__)

REPORT_FILE = "merge_report.json"
OUTPUT_DTYPES = ("auto", "float32", "bfloat16", "float16")
# Default tolerances on |logit difference|. float32: the merge only reorders float32 sums (observed ~1e-6 on tiny
# models, ~1e-4 on 7B). Half precision: rounding every merged weight to 8 (bf16) or 11 (fp16) mantissa bits moves
# logits by up to a few tenths on 7B models, which changes no greedy decision in practice.
DEFAULT_TOLERANCE = {"float32": 1e-3, "bfloat16": 0.5, "float16": 0.25}

# Check prompts: a Persian and an English instruction, with and without input, so the new rows are exercised.
CHECK_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("این جمله را به انگلیسی ترجمه کن.", "دل می‌رود ز دستم صاحب‌دلان خدا را"),
    ("Translate to Persian.", "The nightingale sings in the rose garden."),
    ("یک بیت از حافظ بنویس.", ""),
    ("Summarize the following text in one sentence.", "Language models learn from large amounts of text."),
)


@dataclass
class MergeReport:
    """What the merge did and how close the merged model is to the adapters; written as ``merge_report.json``."""

    base_model: str
    adapters: list[str]
    output_dtype: str
    embedding_rows: int
    tokenizer_size: int
    template: str
    check_prompts: int
    max_abs_diff: float | None
    max_abs_logit: float | None
    tolerance: float
    passed: bool


def checkpoint_dtype(model_dir: str) -> str:
    """dtype name recorded in a checkpoint's config (``float32`` when unknown)."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(model_dir)
    dtype = getattr(cfg, "dtype", None) or getattr(cfg, "torch_dtype", None)
    name = str(dtype).replace("torch.", "") if dtype is not None else "float32"
    return name if name in DEFAULT_TOLERANCE else "float32"


def find_normalizer(sources: Sequence[str]) -> NormalizerConfig:
    """The normalizer saved in the first of ``sources`` that has one (Persian defaults when none has)."""
    for src in sources:
        if os.path.isfile(os.path.join(src, NORMALIZER_FILE)):
            return NormalizerConfig.from_dir(src)
    return NormalizerConfig()


def check_inputs(tokenizer, template: str, n: int, norm: NormalizerConfig) -> list[torch.Tensor]:
    """Token ids of the self-check prompts, normalized and templated exactly as inference will."""
    if n == 0:
        return []
    examples = CHECK_EXAMPLES[:n]
    ids = encode_prompts([normalize(i, norm) for i, _ in examples], [normalize(x, norm) for _, x in examples],
                         template=template, tokenizer=tokenizer)
    return [torch.tensor([x]) for x in ids]


@torch.no_grad()
def prompt_logits(model, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """float32 logits of each prompt (one at a time: no padding to get wrong)."""
    return [model(input_ids=x).logits.float() for x in inputs]


def _save_in_memory(args: MergeArguments, chain: list[str], tmp: str, out_dtype: str, template: str,
                    sources: list[str]):
    """Steps 1-3 with the whole model in memory: reference logits, PEFT merge, save. Returns (tokenizer, rows,
    inputs, reference logits)."""
    model, tokenizer = load_with_adapters(args.model_name_or_path, chain, args.tokenizer_name_or_path,
                                          torch.float32, merge_last=False, arg="peft_path",
                                          base_arg="model_name_or_path")
    inputs = check_inputs(tokenizer, template, args.check_prompts, find_normalizer(sources))
    reference = prompt_logits(model, inputs)
    model = model.merge_and_unload()
    retie_or_untie(model)
    rows = embedding_rows(model)
    model = model.to(getattr(torch, out_dtype))
    model.save_pretrained(tmp, max_shard_size=args.max_shard_size)
    del model
    gc.collect()
    return tokenizer, rows, inputs, reference


def _save_shardwise(args: MergeArguments, chain: list[str], tmp: str, out_dtype: str, template: str,
                    sources: list[str]):
    """Steps 1-3 one base shard at a time (``--low_memory``); the reference model is built afterwards, only when
    the self-check is on."""
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    from langadapt.embeddings import embedding_module_names, is_tied
    from langadapt.loading import check_adapter_rows, load_tokenizer_for
    from langadapt.lowmem_merge import merge_shardwise

    tokenizer, _ = load_tokenizer_for(args.model_name_or_path, chain, args.tokenizer_name_or_path)
    config = AutoConfig.from_pretrained(args.model_name_or_path)
    with torch.device("meta"):  # module names and tying only: no memory, no weights read
        skeleton = AutoModelForCausalLM.from_config(config)
    embed_name, head_name = embedding_module_names(skeleton)
    tied = is_tied(skeleton)
    rows = int(skeleton.get_input_embeddings().weight.shape[0])
    del skeleton
    for adapter in chain:
        rows = max(rows, check_adapter_rows(adapter, ModelInfo.from_dir(adapter), rows, "peft_path") or rows)
    if len(tokenizer) > rows:
        raise InputError(f"--tokenizer_name_or_path: the tokenizer has {len(tokenizer)} tokens but the merged model "
                         f"has {rows} embedding rows; pass the tokenizer the adapters were trained with",
                         arg="tokenizer_name_or_path", value=len(tokenizer))
    updates = merge_shardwise(args.model_name_or_path, chain, tmp, getattr(torch, out_dtype), embed_name, head_name,
                              tied, rows)
    text_config = config.get_text_config()
    for cfg in {id(config): config, id(text_config): text_config}.values():
        for key, value in updates.items():
            setattr(cfg, key, value)
    config.dtype = out_dtype
    config.save_pretrained(tmp)
    try:
        GenerationConfig.from_pretrained(args.model_name_or_path).save_pretrained(tmp)
    except OSError:
        pass  # the base has no generation_config.json; transformers derives one from config.json
    inputs = check_inputs(tokenizer, template, args.check_prompts, find_normalizer(sources))
    reference = []
    if inputs:
        model, _ = load_with_adapters(args.model_name_or_path, chain, args.tokenizer_name_or_path, torch.float32,
                                      merge_last=False, arg="peft_path", base_arg="model_name_or_path")
        reference = prompt_logits(model, inputs)
        del model
        gc.collect()
    return tokenizer, rows, inputs, reference


def merge_adapters(args: MergeArguments) -> MergeReport:
    """Merge ``args.adapters`` into ``args.model_name_or_path`` and save the checked result in ``args.output_dir``."""
    from transformers import AutoModelForCausalLM

    chain = resolve_adapter_chain(args.adapters, arg="peft_path")
    last = chain[-1]
    out_dtype = checkpoint_dtype(args.model_name_or_path) if args.output_dtype == "auto" else args.output_dtype
    tolerance = args.tolerance if args.tolerance is not None else DEFAULT_TOLERANCE[out_dtype]
    template = load_template_name(last, default="alpaca")
    sources = [p for p in (args.tokenizer_name_or_path, last, *chain, args.model_name_or_path) if p]

    with atomic_output_dir(args.output_dir, args.overwrite_output_dir, "output_dir",
                           "overwrite_output_dir") as tmp:
        # 1-3. reference logits (base + adapters, the last one unmerged, float32), merge, cast, save
        save = _save_shardwise if args.low_memory else _save_in_memory
        tokenizer, rows, inputs, reference = save(args, chain, tmp, out_dtype, template, sources)
        if load_template_name(last, default=""):  # instruction-tuned (an older SFT folder may lack the template)
            set_trained_chat_template(tokenizer, template)
        first_info, last_info = ModelInfo.from_dir(chain[0]), ModelInfo.from_dir(last)
        base_rows = first_info.base_embedding_rows if first_info else rows
        tokenizer = tokenizer_to_save(tokenizer, rows, base_rows)  # len(tokenizer) == rows: see langadapt.portable
        tokenizer.save_pretrained(tmp)
        copy_metadata(sources, tmp)
        if os.path.isfile(os.path.join(tmp, NORMALIZER_FILE)):
            warn_if_missing(next((s for s in sources if os.path.isfile(os.path.join(s, "tokenizer.json"))), tmp))
            attach_normalizer(tmp)  # plain AutoTokenizer / vLLM users get the ids training saw
        ModelInfo(
            base_model_name_or_path=args.model_name_or_path, base_embedding_rows=base_rows,
            tokenizer_size=vocab_size(tokenizer), embedding_rows=rows, training_mode="merged",
            embedding_init=last_info.embedding_init if last_info else "unknown", is_adapter=False,
            merged_adapters=[os.path.abspath(a) for a in chain],
        ).save(tmp)
        # 4. reload with transformers alone and compare
        diff = max_logit = None
        if inputs:
            merged = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32)
            merged.eval()
            got = prompt_logits(merged, inputs)
            del merged
            diff = max(float((a - b).abs().max()) for a, b in zip(reference, got))
            max_logit = max(float(a.abs().max()) for a in reference)
        report = MergeReport(
            base_model=args.model_name_or_path, adapters=chain, output_dtype=out_dtype, embedding_rows=rows,
            tokenizer_size=vocab_size(tokenizer), template=template, check_prompts=len(inputs), max_abs_diff=diff,
            max_abs_logit=max_logit, tolerance=tolerance, passed=diff is None or diff <= tolerance,
        )
        write_json(os.path.join(tmp, REPORT_FILE), dataclasses.asdict(report))
        write_run_args(tmp, {"merge": args}, {"report": dataclasses.asdict(report)})
        if report.passed:
            write_model_card(tmp, final_path=args.output_dir)
        if diff is not None:
            logger.info("self-check on %d prompts: max |merged - adapters| logit difference %.3g (largest |logit| "
                        "%.3g, tolerance %.3g)", len(inputs), diff, max_logit, tolerance)
        if not report.passed:
            raise InputError(
                f"the merged model's logits differ from the adapters' by up to {diff:.3g} (> --tolerance "
                f"{tolerance}); nothing was written to {args.output_dir}. Merge with --output_dtype float32, or "
                "raise --tolerance if this precision loss is acceptable", arg="tolerance", value=tolerance,
            )
    return report
