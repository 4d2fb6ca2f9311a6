"""Evaluate a model with EleutherAI's lm-evaluation-harness: standard benchmarks and our own test sets.

    python inference/lm_eval.py --model_name_or_path BASE --peft_path PT_ADAPTER,SFT_ADAPTER \\
        --tasks belebele_pes_Arab,global_mmlu_full_fa,include_base_44_persian --output_dir outputs/lm_eval/sft
    python inference/lm_eval.py --model_name_or_path MERGED --data_dir data/testset --tasks langadapt \\
        --output_dir outputs/lm_eval/merged                      # our test sets as offline lm-eval tasks
    python inference/lm_eval.py --data_dir data/testset --write_tasks outputs/lm_eval_tasks   # only the task folder

The model is loaded the way inference/inference.py loads it (base, adapter chain with its embedding rows, or a
merged folder) and every request text is normalized with the tokenizer's normalizer (langadapt_normalizer.json)
first, as training saw its text (--normalize False: plain lm-eval). --data_dir turns each test file into a task
langadapt_<folder>_<file> (tags: langadapt, langadapt_<folder>); see langadapt/lm_eval_tasks.py.

Writes into --output_dir: results.json (lm-eval's aggregated results), samples_<task>.jsonl (lm-eval's per-example
log), lm_eval_summary.{json,md} (rows task, metric, value, stderr, n, read by inference/score.py --lm_eval and the
run report), tasks/ (the generated task folder), run_args.json. The folder appears only when the run is complete.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile

# This file shares its name with the lm-eval package: keep its own folder off the import path so that
# `import lm_eval` below finds the package when the file is run as a script.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.getcwd()) != _HERE]

from langadapt.args.inference import LMEvalArguments  # noqa: E402
from langadapt.cli import UsageError, parse_args, run_main  # noqa: E402
from langadapt.errors import InputError  # noqa: E402
from langadapt.io import atomic_output_dir, check_output_dir, write_json, write_text  # noqa: E402
from langadapt.templates import load_template_name  # noqa: E402

logger = logging.getLogger("lm_eval_run")


def main(argv=None) -> dict:
    (args,) = parse_args((LMEvalArguments,), argv, description=__doc__)
    try:
        return run(args)
    except InputError as e:
        raise UsageError(e.render()) from None


def run(args: LMEvalArguments) -> dict:
    from langadapt import lm_eval_tasks as lt

    # 1. Template of our tasks: the one the model was instruction-tuned with, unless told otherwise.
    model_dir = args.lora_models[-1] if args.lora_models else (args.model_name_or_path or "")
    template = "none" if not args.with_prompt else args.template or load_template_name(model_dir)
    tokenizer = None
    if template == "chat":
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer_name_or_path or model_dir or args.model_name_or_path)
    if args.write_tasks:
        with atomic_output_dir(args.write_tasks, args.overwrite_output_dir, "write_tasks") as out:
            specs = lt.write_task_folder(args.data_dir, out, template, tokenizer,
                                         data_location=os.path.abspath(args.write_tasks))
        logger.info("wrote %d tasks to %s (template %r): %s", len(specs), args.write_tasks, template,
                    ", ".join(s.name for s in specs))
        return {"tasks": [s.name for s in specs]}

    check_output_dir(args.output_dir, args.overwrite_output_dir)
    with tempfile.TemporaryDirectory(prefix="langadapt-lm-eval-") as tasks_dir:
        # 2. Our test sets as tasks, then every task built (its data read) before the model loads.
        if args.data_dir:
            lt.write_task_folder(args.data_dir, tasks_dir, template, tokenizer)
        paths = ([tasks_dir] if args.data_dir else []) + args.include_paths
        task_manager = lt.make_task_manager(args.task_names, paths)
        lt.check_task_names(args.task_names, task_manager.all_tasks)
        lt.load_tasks(args.task_names, task_manager)

        # 3. Model and lm-eval's wrapper around it.
        model, tokenizer = lt.load_model(args.model_name_or_path, args.lora_models, args.tokenizer_name_or_path,
                                         args.torch_dtype, args.device)
        normalizer = lt.normalizer_of(tokenizer) if args.normalize else None
        lm = lt.make_lm(model, tokenizer, normalizer, args.batch_size, args.max_length)
        logger.info("model %s + adapters %s, template %r, normalizer %s, tasks %s", args.model_name_or_path,
                    args.lora_models, template, normalizer, args.task_names)

        # 4. Evaluate.
        from lm_eval import simple_evaluate
        from lm_eval.utils import handle_non_serializable, make_table

        results = simple_evaluate(model=lm, tasks=args.task_names, task_manager=task_manager,
                                  num_fewshot=args.num_fewshot, limit=args.limit, log_samples=True,
                                  gen_kwargs={"max_gen_toks": args.max_new_tokens} if args.max_new_tokens else None,
                                  random_seed=args.seed, numpy_random_seed=args.seed, torch_random_seed=args.seed,
                                  fewshot_random_seed=args.seed)
        samples = results.pop("samples")
        logger.info("\n%s", make_table(results))
        summary = lt.summary(results, args.task_names)

        # 5. Outputs, all at once.
        from langadapt.runinfo import write_run_args

        final = os.path.abspath(args.output_dir)
        with atomic_output_dir(args.output_dir, args.overwrite_output_dir) as out:
            write_text(os.path.join(out, "results.json"),
                       json.dumps(results, indent=2, default=handle_non_serializable, ensure_ascii=False) + "\n")
            for name, records in samples.items():
                write_text(os.path.join(out, f"samples_{name}.jsonl"), "".join(
                    json.dumps(r, default=handle_non_serializable, ensure_ascii=False) + "\n" for r in records))
            write_json(os.path.join(out, lt.SUMMARY_FILE), summary)
            write_text(os.path.join(out, "lm_eval_summary.md"), lt.summary_markdown(summary["rows"]))
            if args.data_dir:
                lt.write_task_folder(args.data_dir, os.path.join(out, "tasks"), template, tokenizer,
                                     data_location=os.path.join(final, "tasks"))
            write_run_args(out, {"lm_eval": args}, {"template": template, "normalizer": str(normalizer),
                                                   "tasks": args.task_names})
    logger.info("wrote %s/results.json and %s (%d rows)", args.output_dir, lt.SUMMARY_FILE, len(summary["rows"]))
    return summary


if __name__ == "__main__":
    run_main(main)
