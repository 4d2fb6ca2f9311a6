"""Merge adapters (pretraining, then SFT) into the base model: a plain HF folder that serving stacks accept.

    python inference/merge_lora.py --model_name_or_path models/smollm2-135m --peft_path outputs/sft \
        --output_dir outputs/merged

One adapter is enough: an SFT adapter that continued the pretraining adapter holds it (passing both is refused, see
langadapt/lineage.py), and an adapter trained on merged parents brings them along; ``--base_model``/``--lora_model``
work as aliases. The output holds sharded safetensors, the tokenizer (the Persian normalizer in tokenizer.json, the trained prompt as chat template, and
``langadapt_normalizer.json``), ``langadapt_template.json``, ``langadapt_model.json``, a model card (``README.md``)
and ``merge_report.json`` with the logits self-check: merged model vs adapters applied, maximum absolute
difference, which must be under ``--tolerance`` or nothing is written. ``--low_memory`` merges
one base shard at a time (7B on a CPU node). See langadapt/merge.py.
"""

from __future__ import annotations

import logging

from langadapt import preflight
from langadapt.cli import parse_args, run_main, setup_logging
from langadapt.args.inference import MergeArguments
from langadapt.merge import merge_adapters

logger = logging.getLogger("merge_lora")


def main(argv=None):
    # 1. arguments
    (args,) = parse_args((MergeArguments,), argv, description=__doc__)
    setup_logging()
    logger.info("merging %s into %s -> %s", args.adapters, args.model_name_or_path, args.output_dir)
    # the merged model is about as large as the base: refuse a disk that cannot hold it before any weight is read
    preflight.check_output_path(args.output_dir, "output_dir", preflight.model_bytes(args.model_name_or_path))
    # 2. merge, save, reload and check; the folder (with run_args.json) appears only when the check passes
    report = merge_adapters(args)
    logger.info("merged model written to %s (max |logit diff| %s, tolerance %s)", args.output_dir,
                report.max_abs_diff, report.tolerance)
    return report


if __name__ == "__main__":
    run_main(main)
