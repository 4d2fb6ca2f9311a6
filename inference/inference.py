"""Generate answers for every test set in a folder (batched, resumable), or chat with the model one turn at a time.

    python inference/inference.py --model_name_or_path BASE --peft_path PT_ADAPTER,SFT_ADAPTER \\
        --data_dir data/testset --predictions_dir outputs/predictions/sft
    python inference/inference.py --model_name_or_path MERGED --interactive  # one instruction per line on stdin

The seed's inference.sh names (--base_model, --lora_model, --tokenizer_path) work as aliases.

Writes ``<predictions_dir>/<path of the test file under data_dir, no extension>.jsonl`` records {id, instruction,
input, prediction, gold} (+ error; ``prediction`` is the model's answer, ``gold`` the test file's ``output``), flushed after every batch, and ``run_args.json``. A rerun skips finished ids and
retries failed ones; the run exits with status 1 when any example failed. Score with inference/score.py.
"""

from __future__ import annotations

import logging
import os
import sys

from langadapt.args.inference import InferenceArguments
from langadapt.cli import UsageError, parse_args, run_main
from langadapt.evaldata import CLASSIFICATION_TASKS, file_key, list_testsets, load_testset, prediction_path, task_of
from langadapt.generation import (DecodingOptions, HFGenerator, LoglikRanker, VLLMGenerator, check_vllm,
                                  default_max_new_tokens, label_candidates, load_model, repl,
                                  run_testset)
from langadapt.metrics import canonical_label
from langadapt.templates import load_template_name

logger = logging.getLogger("inference")


def main(argv=None) -> None:
    (args,) = parse_args((InferenceArguments,), argv, description=__doc__)
    from transformers import set_seed

    set_seed(args.seed)
    if args.cache_dir:
        import huggingface_hub.constants

        huggingface_hub.constants.HF_HUB_CACHE = args.cache_dir

    # 1. Template: the one the model was instruction-tuned with, unless told otherwise.
    model_dir = args.lora_models[-1] if args.lora_models else args.model_name_or_path
    template = "none" if not args.with_prompt else args.template or load_template_name(model_dir)
    logger.info("model %s + adapters %s, template %r", args.model_name_or_path, args.lora_models, template)

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
    preflight.check_model_path(args.model_name_or_path, "model_name_or_path")
    for adapter in args.lora_models:
        if os.path.isdir(adapter):  # a missing adapter is named by the adapter loader
            preflight.check_model_path(adapter, "lora_model")
    options = DecodingOptions(args.repetition_penalty, args.do_sample, args.temperature, args.top_p)
    if args.backend == "vllm":
        check_vllm(args.lora_models)
        generator = VLLMGenerator(args.model_name_or_path, args.tokenizer_name_or_path, template, options, args.seed,
                                  args.torch_dtype)
    else:
        import torch

        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        model, tokenizer = load_model(args.model_name_or_path, args.lora_models, args.tokenizer_name_or_path,
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
