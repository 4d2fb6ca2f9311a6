"""Instruction tuning (SFT): loss on the response + EOS only, continuing the pretraining adapter or a new one.

    python sft/run_clm_sft_with_peft.py --model_name_or_path models/base --tokenizer_name_or_path outputs/tokenizer \
        --peft_path outputs/pt --training_mode lora --dataset_dir data/sft --validation_file data/sft_dev.json \
        --template alpaca --max_seq_length 512 --per_device_train_batch_size 8 --gradient_accumulation_steps 4 \
        --learning_rate 1e-4 --num_train_epochs 3 --eval_strategy steps --eval_steps 200 --output_dir outputs/sft

* ``--peft_path ADAPTER`` with the adapter's own mode (``--training_mode lora``): the same adapter is trained
  further, as the paper did. With another mode it is merged into the base first and recorded as a parent.
* ``--model_name_or_path MERGED`` (the output of inference/merge_lora.py) without ``--peft_path``: a new adapter.
* Every HF ``TrainingArguments`` flag works (``--train_sampling_strategy group_by_length``, ``--bf16``,
  ``--deepspeed``); a YAML or JSON config as the first argument, flags after it overriding it. A non-empty ``--output_dir`` with checkpoints
  resumes from the last complete one.

Writes to ``--output_dir``: the adapter (or model) and tokenizer, ``langadapt_model.json``,
``langadapt_template.json``, ``langadapt_normalizer.json``, ``run_args.json``, ``all_results.json``,
``trainer_state.json``, TensorBoard logs in ``runs/``, and ``samples.jsonl`` when there is a validation set. The
tokenizer's ``chat_template`` is the ``--template`` trained (langadapt/portable.py), so ``apply_chat_template`` and
OpenAI-style servers prompt the model as it was tuned.
"""

from __future__ import annotations

import logging
import os

from transformers import set_seed

from langadapt import lifecycle, preflight
from langadapt.args import (
    AdaptationArguments, ModelArguments, SampleArguments, SeedSFTDataArguments, SFTTrainingArguments,
)
from langadapt.args.sft import SFTDataArguments
from langadapt.cli import parse_args, run_main, setup_logging
from langadapt.model_card import write_model_card
from langadapt.errors import InputError
from langadapt.modeling import default_tokenizer_to_adapter, prepare_model, save_model
from langadapt.normalize import NormalizerConfig
from langadapt.optim import EmbeddingLRTrainer
from langadapt.portable import set_trained_chat_template
from langadapt.sft_data import (
    make_collator, read_sft_records, resolve_max_seq_length, sample_prompts, tokenize_records,
)
from langadapt.templates import prompt_adds_special_tokens, save_template_name
from langadapt.training import (
    SAMPLES_FILE, PreemptionCallback, SampleGenerationCallback, eval_metrics, exit_if_preempted, is_main_process,
    load_prompts, save_all_results, save_run_args, world_size,
)

logger = logging.getLogger("sft")


def main(argv=None):
    # 1. arguments, logging, seed
    model_args, adapt_args, data_args, sample_args, _seed_flags, training_args = parse_args(
        (ModelArguments, AdaptationArguments, SFTDataArguments, SampleArguments, SeedSFTDataArguments,
         SFTTrainingArguments),
        argv, description=__doc__,
    )
    setup_logging()
    set_seed(training_args.seed)
    if model_args.llama:
        logger.info("--llama is no longer needed: every HF causal LM loads with AutoModelForCausalLM")
    if data_args.packing and training_args.use_cache:
        # The Trainer applies --use_cache to the model; with a KV cache transformers does not read the packed position
        # ids as example boundaries, so packed examples would attend to each other.
        raise InputError("--use_cache: packed examples would attend to each other; leave --use_cache off with "
                         "--packing", arg="use_cache", value=True)
    # 2. resume detection and input checks, before any model is loaded (bad input fails in seconds)
    default_tokenizer_to_adapter(model_args, adapt_args)  # --peft_path alone: the adapter's own tokenizer
    preflight.check_training_run(training_args, model_args.model_name_or_path, adapt_args.training_mode,
                                 adapt_args.peft_path)
    groups = {"model": model_args, "adaptation": adapt_args, "data": data_args, "samples": sample_args,
              "training": training_args}
    checkpoint = lifecycle.start_or_resume(training_args.output_dir, training_args.overwrite_output_dir,
                                           training_args.resume_from_checkpoint, groups)
    tok_dir = model_args.tokenizer_name_or_path
    normalizer = NormalizerConfig.from_dir(tok_dir) if os.path.isdir(tok_dir) else NormalizerConfig()
    train_records = read_sft_records(data_args.dataset_paths, "dataset_dir", normalizer)
    eval_records = (read_sft_records(data_args.validation_file, "validation_file", normalizer)
                    if data_args.validation_file else None)

    # 3. model and tokenizer: resize, continue --peft_path or set up a new adapter (shared with pretraining)
    prepared = prepare_model(model_args, adapt_args, gradient_checkpointing=training_args.activation_checkpointing)
    model, tokenizer = prepared.model, prepared.tokenizer
    # The KV cache is useless while training, conflicts with checkpointing, and while it is on transformers does not
    # read packed position ids as example boundaries (packed examples would attend to each other). The Trainer sets
    # it again from --use_cache (off by default, refused with --packing above).
    model.config.use_cache = False

    # 4. tokenize with the loss on response + EOS only
    max_len = resolve_max_seq_length(data_args.max_seq_length, model.config)
    train_examples, train_stats = tokenize_records(train_records[: data_args.max_train_samples], tokenizer,
                                                   data_args.template, max_len, data_args.drop_long_examples, "train")
    eval_examples = eval_stats = None
    if eval_records is not None:
        eval_examples, eval_stats = tokenize_records(eval_records[: data_args.max_eval_samples], tokenizer,
                                                     data_args.template, max_len, data_args.drop_long_examples, "eval")
    from datasets import Dataset

    train_dataset = Dataset.from_list(train_examples)
    eval_dataset = Dataset.from_list(eval_examples) if eval_examples else None
    training_args.skip_eval_without_data(eval_dataset is not None)
    per_step = (training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
                * world_size())
    mean_len = train_stats.tokens / max(train_stats.kept, 1)
    logger.info("template %s, max_seq_length %d: ~%d tokens per optimizer step (%d examples x %.1f tokens)%s",
                data_args.template, max_len, per_step * mean_len, per_step, mean_len,
                ", packed" if data_args.packing else "")

    curve = []
    if sample_args.bpb_eval_files:  # held-out bits per byte at step 0, every K steps and at the end
        from langadapt.bpb_curve import make_curve_callback

        # tokens_seen counts the mean example length (SFT steps are not fixed blocks)
        curve = [make_curve_callback(sample_args.bpb_eval_files, sample_args.bpb_eval_max_words,
                                     sample_args.bpb_eval_steps, tokenizer, training_args.output_dir,
                                     round(per_step * mean_len), normalizer, max_len)]

    # 5. provenance before training starts, so a crashed or preempted run still says what it was
    save_run_args(training_args.output_dir, groups,
                  {**prepared.resolved(), "max_seq_length": max_len, "resumed_from": checkpoint,
                   "train_data": train_stats.as_dict("train"),
                   "eval_data": eval_stats.as_dict("eval") if eval_stats else None})

    # 6. trainer, with sample generations at every evaluation
    preemption = PreemptionCallback()  # SIGUSR1/SIGTERM: checkpoint at the next step, exit 75, the launcher requeues
    callbacks = [preemption, lifecycle.output_modes_callback(), *curve]
    if eval_dataset is not None and sample_args.sample_max_new_tokens > 0:
        instructions = load_prompts(sample_args.sample_prompts_file) if sample_args.sample_prompts_file else None
        prompts = sample_prompts(instructions, data_args.template, tokenizer, normalizer)
        callbacks.append(SampleGenerationCallback(
            tokenizer, prompts, os.path.join(training_args.output_dir, SAMPLES_FILE), sample_args.sample_max_new_tokens,
            add_special_tokens=prompt_adds_special_tokens(data_args.template)))
    trainer = EmbeddingLRTrainer(
        model=model, args=training_args, train_dataset=train_dataset, eval_dataset=eval_dataset,
        data_collator=make_collator(tokenizer, data_args.packing, model_args.attn_implementation),
        processing_class=tokenizer, callbacks=callbacks, embedding_learning_rate=adapt_args.embedding_learning_rate,
    )

    # 7. train (resuming when a checkpoint was found) and save
    result = trainer.train(resume_from_checkpoint=checkpoint)
    exit_if_preempted(preemption, training_args.output_dir)
    model.config.use_cache = True  # saved configs keep generation fast
    set_trained_chat_template(tokenizer, data_args.template)  # apply_chat_template renders the trained prompt
    save_model(model, tokenizer, training_args.output_dir, prepared.info, trainer, tokenizer_dir=tok_dir,
               peft_path=adapt_args.peft_path)
    model.config.use_cache = False  # the final evaluation below runs on packed batches too
    trainer.save_state()
    if is_main_process():
        save_template_name(training_args.output_dir, data_args.template)
        normalizer.save(training_args.output_dir)  # the normalization the model was trained with
    metrics = {**result.metrics, **train_stats.as_dict("train")}

    # 8. evaluate
    if eval_dataset is not None:
        metrics.update(eval_metrics(trainer.evaluate()))
        metrics.update(eval_stats.as_dict("eval"))
    save_all_results(training_args.output_dir, metrics)
    if is_main_process():
        write_model_card(training_args.output_dir)  # README.md: what this is, its numbers, tested loading snippets
    lifecycle.finish_outputs(training_args.output_dir)  # safetensors files are 0600 whatever the umask
    return metrics


if __name__ == "__main__":
    run_main(main)
