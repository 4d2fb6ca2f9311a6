"""Generate answers for every test set in a folder (batched, resumable), or chat with the model one turn at a time.

    python inference/inference.py --base_model BASE --lora_model PT_ADAPTER,SFT_ADAPTER \\
        --data_dir data/testset --predictions_dir outputs/predictions/sft
    python inference/inference.py --base_model MERGED --interactive          # one instruction per line on stdin

Writes ``<predictions_dir>/<path of the test file under data_dir, no extension>.jsonl`` records {id, instruction,
input, prediction, gold} (+ error; ``prediction`` is the model's answer, ``gold`` the test file's ``output``), flushed after every batch, and ``run_args.json``. A rerun skips finished ids and
retries failed ones; the run exits with status 1 when any example failed. Score with inference/score.py.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field

from langadapt.cli import COMMA_LIST, UsageError, parse_args, run_main
from langadapt.evaldata import CLASSIFICATION_TASKS, file_key, list_testsets, load_testset, prediction_path, task_of
from langadapt.generation import (DecodingOptions, HFGenerator, LoglikRanker, VLLMGenerator, check_vllm,
                                  default_max_new_tokens, label_candidates, load_model, repl,
                                  run_testset)
from langadapt.metrics import canonical_label
from langadapt.templates import TEMPLATE_NAMES, load_template_name

logger = logging.getLogger("inference")


@dataclass
class InferenceArguments:
    """Model, data and decoding. The seed's flags (--base_model ... --cache_dir) keep their meaning."""

    base_model: str = field(metadata={"help": "Base model folder (or a merged model).",
                                      "aliases": ["--model_name_or_path"]})
    lora_model: str | None = field(default=None, metadata={
        "help": "Adapter folder, or a comma-separated list applied in order (e.g. pretrain,sft).",
        "aliases": ["--peft_path", "--adapters"], **COMMA_LIST})
    tokenizer_path: str | None = field(default=None, metadata={
        "help": "Tokenizer folder; default: the last adapter's folder, else --base_model.",
        "aliases": ["--tokenizer_name_or_path"]})
    data_dir: str | None = field(default=None, metadata={"help": "Folder of .json/.jsonl test sets (recursive)."})
    predictions_dir: str | None = field(default=None, metadata={"help": "Where prediction .jsonl files go."})
    with_prompt: bool = field(default=True, metadata={
        "help": "Wrap inputs in the prompt template (the seed's flag); --with_prompt False sends them raw."})
    template: str | None = field(default=None, metadata={
        "help": f"One of {', '.join(TEMPLATE_NAMES)}; default: the one recorded by SFT in the model/adapter "
                "folder (langadapt_template.json), else alpaca."})
    interactive: bool = field(default=False, metadata={"help": "Single-turn REPL on stdin instead of test sets."})
    batch_size: int = field(default=16, metadata={"help": "Prompts per generate() call."})
    max_new_tokens: int | None = field(default=None, metadata={
        "help": "New-token cap for every file; default: per task (labels 32, translation 256, summary 384, "
                "other 512)."})
    repetition_penalty: float = field(default=1.1, metadata={"help": "The seed's default; 1.0 turns it off."})
    do_sample: bool = field(default=False, metadata={"help": "Sample instead of greedy decoding."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (with --do_sample)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass (with --do_sample)."})
    seed: int = field(default=42, metadata={"help": "Random seed (sampling only; greedy is deterministic)."})
    scoring: str = field(default="generate", metadata={
        "help": "generate, or loglik: answer classification/multiple-choice files with the gold label the model "
                "finds most likely (other files are generated as usual)."})
    backend: str = field(default="hf", metadata={"help": "hf (transformers) or vllm (merged models, CUDA GPU)."})
    torch_dtype: str = field(default="auto", metadata={
        "help": "auto (the checkpoint's own dtype, as transformers' dtype='auto'), float32, float16 or bfloat16."})
    device: str | None = field(default=None, metadata={"help": "Default: cuda when available, else cpu."})
    cache_dir: str | None = field(default=None, metadata={"help": "Hugging Face hub cache folder (the seed's flag)."})

    def __post_init__(self) -> None:
        self.lora_models = [p.strip() for p in (self.lora_model or "").split(",") if p.strip()]
        if self.interactive == bool(self.data_dir):
            raise ValueError("pass either --data_dir (with --predictions_dir) or --interactive")
        if self.data_dir and not self.predictions_dir:
            raise ValueError("--predictions_dir is required with --data_dir")
        if self.template is not None and self.template not in TEMPLATE_NAMES:
            raise ValueError(f"--template: unknown template {self.template!r}; choose one of {TEMPLATE_NAMES}")
        for flag, ok in (("--batch_size", self.batch_size >= 1),
                         ("--max_new_tokens", self.max_new_tokens is None or self.max_new_tokens >= 1),
                         ("--repetition_penalty", self.repetition_penalty > 0),
                         ("--backend", self.backend in ("hf", "vllm")),
                         ("--scoring", self.scoring in ("generate", "loglik")),
                         ("--torch_dtype", self.torch_dtype in ("auto", "float32", "float16", "bfloat16"))):
            if not ok:
                raise ValueError(f"{flag}: invalid value; see --help")
        if self.scoring == "loglik" and (self.backend != "hf" or self.interactive):
            raise ValueError("--scoring loglik needs --backend hf and a --data_dir")


def main(argv=None) -> None:
    (args,) = parse_args((InferenceArguments,), argv, description=__doc__)
    from transformers import set_seed

    set_seed(args.seed)
    if args.cache_dir:
        import huggingface_hub.constants

        huggingface_hub.constants.HF_HUB_CACHE = args.cache_dir

    # 1. Template: the one the model was instruction-tuned with, unless told otherwise.
    model_dir = args.lora_models[-1] if args.lora_models else args.base_model
    template = "none" if not args.with_prompt else args.template or load_template_name(model_dir)
    logger.info("model %s + adapters %s, template %r", args.base_model, args.lora_models, template)

    # 2. Test sets and the output path: read and validate all of them before loading the model.
    from langadapt import preflight

    if args.predictions_dir:
        preflight.check_output_path(args.predictions_dir, "predictions_dir")
    tests = []
    if not args.interactive:
        for path in list_testsets(args.data_dir):
            key = file_key(path, args.data_dir)
            tests.append((key, task_of(key), load_testset(path)))
        logger.info("%d test files, %d examples", len(tests), sum(len(t[2]) for t in tests))

    # 3. Model: a missing base model or a truncated safetensors file is named here, not by the loader's traceback.
    preflight.check_model_path(args.base_model, "base_model")
    for adapter in args.lora_models:
        if os.path.isdir(adapter):  # a missing adapter is named by the adapter loader
            preflight.check_model_path(adapter, "lora_model")
    options = DecodingOptions(args.repetition_penalty, args.do_sample, args.temperature, args.top_p)
    if args.backend == "vllm":
        check_vllm(args.lora_models)
        generator = VLLMGenerator(args.base_model, args.tokenizer_path, template, options, args.seed,
                                  args.torch_dtype)
    else:
        import torch

        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        model, tokenizer = load_model(args.base_model, args.lora_models, args.tokenizer_path,
                                      args.torch_dtype, device)
        generator = HFGenerator(model, tokenizer, template, options)

    # 4a. Interactive: one instruction per line.
    if args.interactive:
        repl(generator, args.max_new_tokens or default_max_new_tokens(None), sys.stdin, sys.stdout,
             show_prompt=sys.stdin.isatty())
        return

    # 4b. Test sets: one prediction file each, resumable.
    from langadapt.runinfo import write_run_args

    os.makedirs(args.predictions_dir, exist_ok=True)
    write_run_args(args.predictions_dir, {"inference": args}, {"template": template})
    failed = 0
    for key, task, examples in tests:
        answerer = generator
        if args.scoring == "loglik" and task in CLASSIFICATION_TASKS:
            answerer = LoglikRanker(generator, label_candidates(examples, canonical_label))
        max_new = args.max_new_tokens or default_max_new_tokens(task)
        try:
            summary = run_testset(answerer, examples, prediction_path(args.predictions_dir, key), key, max_new,
                                  args.batch_size)
        except UsageError as e:
            raise UsageError(f"{key}: {e}") from None
        logger.info("%s", summary.line())
        failed += summary.failed

    # 5. Failures are recorded in the files; the exit status says so too.
    if failed:
        raise SystemExit(f"error: {failed} examples failed; their records in {args.predictions_dir} have an "
                         "\"error\" field; rerun the same command to retry only them")


if __name__ == "__main__":
    run_main(main)
