"""Continued pretraining on raw text: teach a base causal LM a new language with its extended tokenizer.

Modes (``--training_mode``): ``full``, ``lora`` (LoRA + embeddings/head when the vocabulary grew), ``embeddings``
(the seed's ``--freeze_transformer``) and ``new_rows`` (only the new tokens' rows, a small adapter).

Example (one GPU; 8 x 4 x 1 x 1024 = 32,768 tokens per optimizer step)::

    torchrun --nproc_per_node 1 pretrain/run_clm_pt_with_peft.py \\
        --model_name_or_path models/llama-2-7b --tokenizer_name_or_path outputs/tokenizer \\
        --dataset_dir data/fa:0.8,data/en:0.2 --data_cache_dir outputs/cache --block_size 1024 \\
        --training_mode lora --per_device_train_batch_size 8 --gradient_accumulation_steps 4 \\
        --max_steps 1000 --learning_rate 2e-4 --eval_strategy steps --eval_steps 200 --bf16 \\
        --output_dir outputs/pretrain

Outputs in ``--output_dir``: the model or adapter, the tokenizer, ``langadapt_model.json``, ``run_args.json``,
``all_results.json``, ``trainer_state.json``, ``samples.jsonl`` (sample generations at each evaluation) and
TensorBoard logs under ``runs/``. A folder with checkpoints resumes from the last one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from langadapt.args import (
    AdaptationArguments,
    ModelArguments,
    PretrainDataArguments,
    PretrainTrainingArguments,
    SampleArguments,
)
from langadapt.cli import UsageError, parse_args, run_main, setup_logging
from langadapt.model_card import write_model_card

logger = logging.getLogger("langadapt.pretrain")


def main(argv: Sequence[str] | None = None) -> dict:
    # 1. Arguments: model, adaptation, data, samples and every HF TrainingArguments flag (a YAML/JSON config first,
    #    flags after it override it).
    model_args, adapt_args, data_args, sample_args, training_args = parse_args(
        (ModelArguments, AdaptationArguments, PretrainDataArguments, SampleArguments, PretrainTrainingArguments),
        argv, description=__doc__,
    )
    setup_logging()
    from transformers import set_seed

    from langadapt import data, lifecycle, modeling, preflight, training
    from langadapt.optim import EmbeddingLRTrainer

    if data_args.streaming and training_args.max_steps <= 0:
        raise UsageError("--streaming needs --max_steps: a stream has no length to count epochs by")
    if model_args.llama:
        logger.info("--llama is no longer needed: every HF causal LM loads with AutoModelForCausalLM")

    # 2. Where to start, checked before the model loads: flags and output path; resume from the last good checkpoint
    #    (same settings only), restart after an attempt that never reached one, refuse to train over finished results.
    modeling.default_tokenizer_to_adapter(model_args, adapt_args)  # --peft_path alone: the adapter's own tokenizer
    preflight.check_training_run(training_args, model_args.model_name_or_path, adapt_args.training_mode,
                                 adapt_args.peft_path)
    groups = {"model": model_args, "adaptation": adapt_args, "data": data_args, "samples": sample_args,
              "training": training_args}
    checkpoint = lifecycle.start_or_resume(training_args.output_dir, training_args.overwrite_output_dir,
                                           training_args.resume_from_checkpoint, groups)
    set_seed(training_args.seed)

    # 3. Model and tokenizer: load, grow the vocabulary, initialise new rows, set what is trained.
    prepared = modeling.prepare_model(model_args, adapt_args,
                                      gradient_checkpointing=training_args.activation_checkpointing)
    model, tokenizer = prepared.model, prepared.tokenizer
    block_size = data.resolve_block_size(data_args.block_size, model.config)

    # 4. Data: normalize, tokenize, pack into blocks (cached by content), hold out validation, mix sources.
    with training_args.main_process_first(desc="preprocessing"):
        train_ds, eval_ds, report = data.load_pretrain_data(
            data_args, tokenizer, prepared.normalizer, block_size,
            tokenizer_dir=model_args.tokenizer_name_or_path, seed=training_args.seed,
        )
    training_args.skip_eval_without_data(eval_ds is not None)
    logger.info("tokens per optimizer step: %d (%d per device x %d accumulation x %d processes x %d block)",
                training.tokens_per_step(training_args, block_size), training_args.per_device_train_batch_size,
                training_args.gradient_accumulation_steps, training_args.world_size, block_size)

    curve = []
    if sample_args.bpb_eval_files:  # held-out bits per byte at step 0, every K steps and at the end (study curves)
        from langadapt.bpb_curve import make_curve_callback

        curve = [make_curve_callback(
            sample_args.bpb_eval_files, sample_args.bpb_eval_max_words, sample_args.bpb_eval_steps, tokenizer,
            training_args.output_dir, training.tokens_per_step(training_args, block_size), prepared.normalizer,
            block_size)]

    # 5. Provenance before training starts, so a crashed or preempted run still says what it was.
    resolved = {**prepared.resolved(), "data": report.to_dict(), "block_size": block_size,
                "resumed_from": checkpoint,
                "tokens_per_step": training.tokens_per_step(training_args, block_size)}
    training.save_run_args(training_args.output_dir, groups, resolved)

    # 6. Train, with eval loss/perplexity and sample generations at each evaluation.
    prompts = training.load_prompts(sample_args.sample_prompts_file, prepared.normalizer)
    callback = training.SampleGenerationCallback(
        tokenizer, prompts, os.path.join(training_args.output_dir, training.SAMPLES_FILE),
        max_new_tokens=sample_args.sample_max_new_tokens,
    )
    preemption = training.PreemptionCallback()  # SIGUSR1/SIGTERM: checkpoint at the next step, exit 75, requeue
    callbacks = [callback, preemption, lifecycle.output_modes_callback(), *curve]
    trainer = EmbeddingLRTrainer(model=model, args=training_args, train_dataset=train_ds, eval_dataset=eval_ds,
                                 data_collator=data.collate_blocks, processing_class=tokenizer, callbacks=callbacks,
                                 embedding_learning_rate=adapt_args.embedding_learning_rate)
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    training.exit_if_preempted(preemption, training_args.output_dir)

    # 7. Save: model or adapter + tokenizer + langadapt_model.json, trainer state, metrics.
    modeling.save_model(model, tokenizer, training_args.output_dir, prepared.info, trainer=trainer,
                        tokenizer_dir=model_args.tokenizer_name_or_path, peft_path=adapt_args.peft_path)
    trainer.save_state()
    metrics = dict(train_result.metrics)
    if eval_ds is not None:
        metrics.update(training.eval_metrics(trainer.evaluate()))
    trainer.log_metrics("all", metrics)
    training.save_all_results(training_args.output_dir, metrics)
    if training.is_main_process():
        write_model_card(training_args.output_dir)  # README.md: what this is, its numbers, tested loading snippets
    lifecycle.finish_outputs(training_args.output_dir)  # safetensors files are 0600 whatever the umask
    return metrics


if __name__ == "__main__":
    run_main(main)
