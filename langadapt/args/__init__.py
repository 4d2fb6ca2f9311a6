"""Argument dataclasses shared by the training stages (continued pretraining and SFT).

They are parsed with ``transformers.HfArgumentParser`` together with ``TrainingArguments`` (see
:func:`langadapt.cli.parse_args`), so every familiar HF flag works and a single ``.json`` argument is the whole
config. The seed paper's flags keep working: ``--llama``, ``--use_lora``, ``--freeze_transformer``, ``--lora_rank``,
``--lora_alpha``, ``--lora_dropout``, ``--trainable``, ``--modules_to_save``, ``--peft_path``, ``--torch_dtype``.

Validation happens in ``__post_init__`` and raises ``ValueError`` naming the flag; ``parse_args`` turns it into a
:class:`~langadapt.cli.UsageError` (``error: ...``, exit 2).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from langadapt.cli import COMMA_LIST

logger = logging.getLogger(__name__)

TRAINING_MODES = ("full", "lora", "embeddings", "new_rows")
EMBEDDING_INITS = ("subtoken_mean", "subtoken_weighted", "mean", "hf_default", "random")
# The default of every --embedding_init (training stages and perplexity). The adaptation study (README) measured it
# against the seed paper's subtoken_mean: closer to the base tokenizer before training, as good after.
DEFAULT_EMBEDDING_INIT = "subtoken_weighted"
TORCH_DTYPES = ("auto", "float32", "float16", "bfloat16")
# LoRA: a 7B model's continued pretraining (and the seed's SFT, which always trained LoRA) on one 80 GB GPU; the seed
# paper's `run_pt.sh --use_lora` and `run_sft.sh` (which has no --use_lora: its SFT script only trained LoRA).
DEFAULT_TRAINING_MODE = "lora"


def split_names(value: str | None) -> list[str] | None:
    """``"q_proj, v_proj"`` -> ``["q_proj", "v_proj"]``; ``None``/empty -> ``None`` (meaning: choose automatically)."""
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    return names or None


@dataclass
class ModelArguments:
    """Which model and tokenizer to start from, and how to load them."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Base model: a local HF folder (or hub id when online). Required.",
                  "aliases": ["--base_model"]},
    )
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Tokenizer folder, e.g. the output of tokenizer/merge.py. Default: --model_name_or_path.",
                  "aliases": ["--tokenizer_path"]},
    )
    torch_dtype: str | None = field(
        default=None,
        metadata={
            "help": "dtype the weights are loaded in: auto, float32, float16, bfloat16. Default float32, the dtype "
            "the HF Trainer expects for its master weights (use --bf16/--fp16 for mixed precision).",
            "choices": list(TORCH_DTYPES),
        },
    )
    llama: bool = field(
        default=False,
        metadata={"help": "Seed-script flag, kept for compatibility: any HF causal LM loads with AutoModel now."},
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from the model folder."})
    attn_implementation: str | None = field(
        default=None, metadata={"help": "Attention kernel: eager, sdpa, flash_attention_2. Default: transformers'."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "HF cache folder for hub downloads."})

    def __post_init__(self) -> None:
        if not self.model_name_or_path:
            raise ValueError("--model_name_or_path is required: a base model folder (e.g. SmolLM2-135M)")
        if self.torch_dtype is not None and self.torch_dtype not in TORCH_DTYPES:
            raise ValueError(f"--torch_dtype must be one of {', '.join(TORCH_DTYPES)}, got {self.torch_dtype!r}")
        # Not a field (stays out of the parser and run_args.json): whether the tokenizer path was defaulted here,
        # so that --peft_path can supply its own tokenizer instead (modeling.default_tokenizer_to_adapter).
        self.tokenizer_defaulted = self.tokenizer_name_or_path is None
        if self.tokenizer_name_or_path is None:
            self.tokenizer_name_or_path = self.model_name_or_path


@dataclass
class AdaptationArguments:
    """What is trained, how new embedding rows start, and the LoRA / PEFT settings.

    ``--training_mode``:

    * ``full``: every parameter.
    * ``lora``: LoRA on every attention/MLP projection, plus the input embeddings and output head as
      ``modules_to_save`` when the vocabulary grew (so new tokens get trained rows).
    * ``embeddings``: only the input embeddings and the output head (the seed's ``--freeze_transformer``).
    * ``new_rows``: only the rows of the new tokens, with PEFT's trainable tokens; the adapter holds just those rows.

    The seed's ``--use_lora`` maps to ``lora`` and ``--freeze_transformer`` to ``embeddings``.
    """

    training_mode: str | None = field(
        default=None,
        metadata={
            "help": "full, lora, embeddings or new_rows (see the class docs). Default: lora (embeddings with the "
            "seed's --freeze_transformer): a 7B model's continued pretraining and SFT fit one GPU with it.",
            "choices": list(TRAINING_MODES),
        },
    )
    use_lora: bool = field(default=False, metadata={"help": "Seed flag: same as --training_mode lora."})
    freeze_transformer: bool = field(
        default=False, metadata={"help": "Seed flag: same as --training_mode embeddings (train only embeddings/head)."}
    )
    embedding_init: str = field(
        default=DEFAULT_EMBEDDING_INIT,
        metadata={
            "help": "Initial value of new embedding rows. subtoken_weighted (default): the base rows of the pieces the "
            "base tokenizer splits the new token into, weighted 1, 1/2, 1/4, ... from the first (input embeddings "
            "and an untied head separately); subtoken_mean: their plain mean (the seed paper's); mean: mean of all "
            "base rows; hf_default: whatever transformers' resize_token_embeddings does; random: normal(0, "
            "initializer_range).",
            "choices": list(EMBEDDING_INITS),
        },
    )
    pad_vocab_to_multiple_of: int = field(
        default=64,
        metadata={
            "help": "Pad the embedding table to a multiple of this many rows (64: tensor-core friendly matmuls for "
            "the output head). 1 disables padding. Padding rows are never produced by the tokenizer; the tokenizer "
            "saved with the model ends in one reserved special token per padding row (<|langadapt_reserved_N|>), so "
            "len(tokenizer) equals the rows, as PEFT's AutoPeftModelForCausalLM expects."
        },
    )
    base_tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Base tokenizer for the --embedding_init subtoken_* choices. Default: 'base_tokenizer' from the "
            "tokenizer folder's langadapt_tokenizer.json, else --model_name_or_path."
        },
    )
    # r=64, alpha=128 (scale 2): the seed paper's (Chinese-LLaMA-style) pretraining adapter for a 7B model, large
    # enough for a new language's statistics; ~0.5% of a 7B model's weights besides the embeddings and head.
    lora_rank: int = field(default=64, metadata={"help": "LoRA rank r."})
    lora_alpha: float = field(default=128.0, metadata={"help": "LoRA scaling numerator (scale = alpha / rank)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input, probability 0-1."})
    trainable: str | None = field(
        default=None,
        metadata={
            **COMMA_LIST,
            "help": "Seed flag: comma-separated LoRA target modules, e.g. q_proj,v_proj,k_proj,o_proj,gate_proj,"
            "down_proj,up_proj. Default: every linear projection of the transformer blocks (not the output head)."
        },
    )
    modules_to_save: str | None = field(
        default=None,
        metadata={
            **COMMA_LIST,
            "help": "Seed flag: comma-separated modules trained in full next to LoRA, e.g. embed_tokens,lm_head. "
            "Default: the input embeddings and output head when the vocabulary grew, otherwise none."
        },
    )
    peft_path: str | None = field(
        default=None,
        metadata={
            "help": "Continue from this PEFT adapter folder. The same adapter type as --training_mode is trained "
            "further; another type (or --training_mode full/embeddings) merges it into the base first and records "
            "it in langadapt_model.json's parent_adapters.",
            "aliases": ["--lora_model"],
        },
    )
    embedding_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "Learning rate of the input embeddings and output head (their trained copies under LoRA; only the "
            "new rows with --training_mode new_rows), in their own optimizer group; the rest keeps --learning_rate. "
            "Same schedule. Default: --learning_rate for everything (langadapt/optim.py says why one would differ)."
        },
    )

    def __post_init__(self) -> None:
        implied = []
        if self.use_lora:
            implied.append(("--use_lora", "lora"))
        if self.freeze_transformer:
            implied.append(("--freeze_transformer", "embeddings"))
        if len(implied) > 1:
            raise ValueError(
                "--use_lora and --freeze_transformer contradict each other; pick one --training_mode "
                f"({', '.join(TRAINING_MODES)})"
            )
        if self.training_mode is None:
            self.training_mode = implied[0][1] if implied else DEFAULT_TRAINING_MODE
        elif self.training_mode not in TRAINING_MODES:
            raise ValueError(
                f"--training_mode must be one of {', '.join(TRAINING_MODES)}, got {self.training_mode!r}"
            )
        elif implied and implied[0][1] != self.training_mode:
            raise ValueError(
                f"{implied[0][0]} means --training_mode {implied[0][1]}, but --training_mode {self.training_mode} "
                "was given; drop one of them"
            )
        if self.embedding_init not in EMBEDDING_INITS:
            raise ValueError(
                f"--embedding_init must be one of {', '.join(EMBEDDING_INITS)}, got {self.embedding_init!r}"
            )
        if self.pad_vocab_to_multiple_of < 1:
            raise ValueError(
                f"--pad_vocab_to_multiple_of must be >= 1 (1 = no padding), got {self.pad_vocab_to_multiple_of}"
            )
        if self.lora_rank < 1:
            raise ValueError(f"--lora_rank must be >= 1, got {self.lora_rank}")
        if self.lora_alpha <= 0:
            raise ValueError(f"--lora_alpha must be > 0, got {self.lora_alpha}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"--lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.embedding_learning_rate is not None and not self.embedding_learning_rate > 0:
            raise ValueError(f"--embedding_learning_rate must be > 0, got {self.embedding_learning_rate}")
        if self.training_mode != "lora" and (self.trainable or self.modules_to_save):
            raise ValueError(
                "--trainable/--modules_to_save only apply to --training_mode lora (or --use_lora), "
                f"not {self.training_mode}"
            )

    @property
    def lora_target_modules(self) -> list[str] | None:
        """``--trainable`` as a list, or ``None`` for every linear projection."""
        return split_names(self.trainable)

    @property
    def lora_modules_to_save(self) -> list[str] | None:
        """``--modules_to_save`` as a list, or ``None`` for automatic."""
        return split_names(self.modules_to_save)


@dataclass
class PretrainDataArguments:
    """Raw-text corpus for continued pretraining and how it is tokenized, packed and cached."""

    dataset_dir: str | None = field(
        default=None,
        metadata={
            **COMMA_LIST,
            "help": "Folder(s) of .txt (one document a line) and .jsonl ({'text': ...}) files. Several folders mix "
            "with sampling weights: 'fa_dir:0.8,en_dir:0.2' (weights are normalized; default weight 1). Required."
        },
    )
    validation_dataset_dir: str | None = field(
        default=None,
        metadata={"help": "Folder/file of held-out text. Default: --validation_split_percentage of the blocks."},
    )
    data_cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Cache of tokenized, packed blocks, keyed by a hash of the tokenizer files, every data file's "
            "content and the block size. Default: no cache (tokenized again on every run)."
        },
    )
    validation_split_percentage: float = field(
        default=0.5,
        metadata={"help": "Percent (0-50) of packed blocks held out for evaluation, chosen by a fixed-seed shuffle."},
    )
    block_size: int | None = field(
        default=None,
        metadata={"help": "Tokens per training block. Default: min(1024, the model's context length)."},
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for tokenization (datasets.map num_proc). Default: 1."}
    )
    text_field: str = field(default="text", metadata={"help": "Field holding the document in .jsonl files."})
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Tokenize and pack on the fly while training (corpora larger than RAM; memory flat in corpus "
            "size). Needs --max_steps; the validation set is then the first blocks of --validation_dataset_dir, "
            "or of the corpus when none is given (those blocks are skipped for training)."
        },
    )
    max_eval_blocks: int | None = field(
        default=None, metadata={"help": "Cap on evaluation blocks (keeps eval cheap on big corpora)."}
    )
    overwrite_cache: bool = field(default=False, metadata={"help": "Rebuild the tokenized cache even if it matches."})
    def __post_init__(self) -> None:
        if not self.dataset_dir:
            raise ValueError("--dataset_dir is required: a folder of .txt/.jsonl text files")
        if not 0 <= self.validation_split_percentage <= 50:
            raise ValueError(
                f"--validation_split_percentage must be between 0 and 50, got {self.validation_split_percentage}"
            )
        if self.block_size is not None and self.block_size < 2:
            raise ValueError(f"--block_size must be >= 2 tokens, got {self.block_size}")
        if self.preprocessing_num_workers is not None and self.preprocessing_num_workers < 1:
            raise ValueError(f"--preprocessing_num_workers must be >= 1, got {self.preprocessing_num_workers}")


@dataclass
class SeedSFTDataArguments:
    """Flags the seed's ``run_sft.sh`` passes that our SFT does not need, accepted so its command line runs unchanged.

    They meant nothing for the seed's SFT either beyond speed: its instruction data came from ``--dataset_dir`` and
    ``--validation_file`` (``--validation_split_percentage`` was read only by pretraining), and SFT sets are small
    enough to tokenize in one process on every run (no ``--data_cache_dir`` cache, no worker pool).
    """

    data_cache_dir: str | None = field(default=None, metadata={"help": "Seed flag, accepted and unused by SFT."})
    validation_split_percentage: float | None = field(
        default=None, metadata={"help": "Seed flag, accepted and unused by SFT (use --validation_file)."}
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Seed flag, accepted and unused by SFT (tokenized in one process)."}
    )


@dataclass
class SampleArguments:
    """Sample generations written at every evaluation (see :class:`langadapt.training.SampleGenerationCallback`)."""

    sample_prompts_file: str | None = field(
        default=None,
        metadata={
            "help": "Prompts for the sample-generation callback, one a line (.txt) or {'prompt': ...} (.jsonl). "
            "Default: a few Persian and English prompts."
        },
    )
    sample_max_new_tokens: int = field(
        default=32, metadata={"help": "New tokens generated per sample prompt at each evaluation; 0 disables."}
    )
    bpb_eval_files: str | None = field(
        default=None,
        metadata={"help": "Held-out text files (.txt/.jsonl, comma-separated) scored in bits per byte before the "
                          "first step, every --bpb_eval_steps and at the end, into bpb_curve.jsonl (the adaptation "
                          "study's curves; langadapt/bpb_curve.py). Default: none."},
    )
    bpb_eval_steps: int = field(
        default=0, metadata={"help": "Optimizer steps between bits-per-byte evaluations; 0: only at start and end."}
    )
    bpb_eval_max_words: int = field(
        default=400, metadata={"help": "Words scored per --bpb_eval_files file (its first documents)."}
    )

    def __post_init__(self) -> None:
        if self.sample_max_new_tokens < 0:
            raise ValueError(f"--sample_max_new_tokens must be >= 0, got {self.sample_max_new_tokens}")
        if self.bpb_eval_steps < 0:
            raise ValueError(f"--bpb_eval_steps must be >= 0, got {self.bpb_eval_steps}")
        if self.bpb_eval_max_words < 1:
            raise ValueError(f"--bpb_eval_max_words must be >= 1, got {self.bpb_eval_max_words}")


def _training_arguments_base():
    from transformers import TrainingArguments

    return TrainingArguments


def _has_accelerator() -> bool:
    """Whether torch sees a GPU (or another accelerator) on this machine."""
    import torch

    return torch.accelerator.is_available()


@dataclass
class LangAdaptTrainingArguments(_training_arguments_base()):
    """``transformers.TrainingArguments`` with the defaults of a 7B LoRA run, the seed's flag names, and checks.

    Every default a launcher used to set lives here, so ``bash slurm/pretrain.sbatch`` and ``python
    pretrain/run_clm_pt_with_peft.py`` with the same inputs give the same run (the launchers pass only what the user
    set). Differences from the HF defaults, each for a reason:

    * ``lr_scheduler_type`` cosine with ``warmup_steps`` 0.03 (3% of the steps): the seed paper's schedule.
    * ``per_device_train_batch_size`` 4 (x ``gradient_accumulation_steps`` of the stage): 4 x 1024-token blocks of a
      7B model with activation checkpointing fit an 80 GB GPU.
    * ``activation_checkpointing`` on (``--activation_checkpointing False`` or the seed's ``--gradient_checkpointing
      False`` turn it off): ~30% slower, and what fits 7B at block 1024-2048.
    * ``bf16`` on when the GPU supports it and ``--fp16`` was not given (off on CPU): mixed precision on A100/H100.
    * ``logging_steps`` 10, ``save_steps`` 200, ``save_total_limit`` 3: a curve worth reading, at most 200 steps
      lost to a crash (a preemption loses one), three checkpoints on disk.
    * ``ddp_find_unused_parameters`` False: LoRA leaves most parameters without gradients, and DDP's search for
      unused ones costs a pass per step.
    * ``report_to`` tensorboard (HF 5 defaults to none): every run leaves curves in ``output_dir/runs``.
    * ``--overwrite_output_dir`` (gone from transformers 5, alias ``--overwrite``), the seed's
      ``--evaluation_strategy`` (HF's old name of ``--eval_strategy``) and ``--warmup_ratio`` (a ``--warmup_steps``
      below 1) are accepted.
    * ``use_cpu`` is set on a machine without an accelerator, so that the processes of a CPU ``torchrun`` (one
      node or several) train as one gloo job instead of each on its own.
    * ``--deepspeed`` is checked before anything starts: the file must exist and be JSON, and a launcher
      (torchrun/deepspeed/srun) must have set ``WORLD_SIZE``; plain ``python`` would die inside DeepSpeed looking
      for mpi4py.
    """

    report_to: None | str | list[str] = field(
        default="tensorboard",
        metadata={"help": "Where logs go: tensorboard (default), wandb, none, all, or a list."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Train from scratch into a non-empty --output_dir. Without it, a folder with checkpoints resumes "
            "from the last whole one (if the result-shaping flags match its run_args.json), an attempt that never "
            "reached a checkpoint is moved aside to <output_dir>.attempt-N, and any other non-empty folder is "
            "refused.",
            "aliases": ["--overwrite"],
        },
    )
    eval_strategy: str = field(
        default="no",
        metadata={"help": "When to evaluate: no, steps (every --eval_steps) or epoch.",
                  "choices": ["no", "steps", "epoch"], "aliases": ["--evaluation_strategy"]},
    )
    per_device_train_batch_size: int = field(default=4, metadata={"help": "Sequences per device per micro-step."})
    learning_rate: float = field(default=2e-4, metadata={"help": "Peak learning rate (after warmup)."})
    lr_scheduler_type: str = field(
        default="cosine", metadata={"help": "Learning-rate schedule after warmup: cosine, linear, constant, ..."}
    )
    warmup_steps: float = field(
        default=0.03,
        metadata={"help": "Linear warmup: optimizer steps (an integer), or a fraction of the total steps (< 1). The "
                  "seed's --warmup_ratio (gone from transformers 5) is the same flag.",
                  "aliases": ["--warmup_ratio"]},
    )
    logging_steps: float = field(default=10, metadata={"help": "Log the loss every this many optimizer steps."})
    save_steps: float = field(default=200, metadata={"help": "Checkpoint every this many optimizer steps."})
    save_total_limit: int | None = field(default=3, metadata={"help": "Checkpoints kept on disk (oldest deleted)."})
    ddp_find_unused_parameters: bool | None = field(
        default=False, metadata={"help": "DDP's search for parameters without gradients (off: LoRA has many)."}
    )
    bf16: bool | None = field(
        default=None,
        metadata={"help": "bf16 mixed precision. Default: on when a CUDA GPU supports it and --fp16 is not given.",
                  "nargs": "?", "const": True},
    )
    activation_checkpointing: bool | None = field(
        default=None,
        metadata={"help": "Recompute activations in the backward pass (~30% slower, far less memory). Default: on "
                  "(off with --activation_checkpointing False or the seed's --gradient_checkpointing False).",
                  "nargs": "?", "const": True},
    )

    def skip_eval_without_data(self, has_eval_data: bool) -> None:
        """Evaluate only when there is something to evaluate on: ``eval_strategy`` becomes ``no`` without eval data
        (the Trainer refuses to start otherwise), so the stage default ``steps`` holds whenever a validation set
        exists."""
        if not has_eval_data:
            from transformers.trainer_utils import IntervalStrategy

            self.eval_strategy = IntervalStrategy.NO

    def __post_init__(self) -> None:
        if isinstance(self.deepspeed, str) and self.deepspeed:
            import json
            import os

            if not os.path.isfile(self.deepspeed):
                raise ValueError(f"--deepspeed: {self.deepspeed} does not exist; use configs/deepspeed/zero2.json")
            try:
                with open(self.deepspeed, encoding="utf-8") as f:
                    cfg = json.load(f)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f"--deepspeed: {self.deepspeed} is not valid JSON ({e})") from None
            if not isinstance(cfg, dict) or not isinstance(cfg.get("zero_optimization", {}), dict):
                raise ValueError(f"--deepspeed: {self.deepspeed} must be a JSON object with a zero_optimization block")
            if "WORLD_SIZE" not in os.environ and "LOCAL_RANK" not in os.environ:
                raise ValueError(
                    "--deepspeed needs a distributed launcher: run under `torchrun --nproc_per_node N` or `deepspeed` "
                    "(plain `python` makes DeepSpeed look for mpi4py)"
                )
        if not self.use_cpu and not _has_accelerator():
            # accelerate joins the processes of a torchrun into one distributed job on CPU only with use_cpu: without
            # it, every process of a CPU-only (multi-node) run would train alone on all the data.
            self.use_cpu = True
        if self.activation_checkpointing is None and self.gradient_checkpointing is None:
            self.activation_checkpointing = True
        if self.bf16 is None:
            self.bf16 = not self.fp16 and not self.use_cpu and _cuda_bf16()
        super().__post_init__()
        if self.deepspeed:
            # Set up the process group now: ZeRO-3 partitions weights inside from_pretrained, and DeepSpeed reads
            # the world size from torch.distributed then (else: "train_batch_size 4 != 2 * 1 * 1").
            _ = self.device
            import deepspeed

            if not deepspeed.comm.is_initialized():  # e.g. --use_cpu: accelerate set up plain DDP, not DeepSpeed
                deepspeed.init_distributed()


def _cuda_bf16() -> bool:
    """Whether a CUDA GPU with bf16 support is visible."""
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


@dataclass
class PretrainTrainingArguments(LangAdaptTrainingArguments):
    """Continued pretraining: one epoch over the corpus, lr 2e-4 (the seed paper's LoRA pretraining rate), 4 x 8 x
    1024 = 32,768 tokens per optimizer step per GPU, evaluation every 200 steps on the held-out blocks."""

    learning_rate: float = field(default=2e-4, metadata={"help": "Peak learning rate (after warmup)."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Passes over the corpus (when --max_steps <= 0)."})
    gradient_accumulation_steps: int = field(default=8, metadata={"help": "Micro-steps per optimizer step."})
    eval_strategy: str = field(
        default="steps",
        metadata={"help": "When to evaluate: no, steps (every --eval_steps) or epoch. Without held-out data: no.",
                  "choices": ["no", "steps", "epoch"], "aliases": ["--evaluation_strategy"]},
    )
    eval_steps: float | None = field(default=200, metadata={"help": "Evaluate every this many optimizer steps."})


@dataclass
class SFTTrainingArguments(LangAdaptTrainingArguments):
    """Instruction tuning: three epochs, lr 1e-4 (the seed paper's SFT rate), 4 x 4 = 16 examples per optimizer step
    per GPU, evaluation and checkpoints every 100 steps (evaluation only with --validation_file)."""

    learning_rate: float = field(default=1e-4, metadata={"help": "Peak learning rate (after warmup)."})
    num_train_epochs: float = field(default=3.0, metadata={"help": "Passes over the data (when --max_steps <= 0)."})
    gradient_accumulation_steps: int = field(default=4, metadata={"help": "Micro-steps per optimizer step."})
    eval_strategy: str = field(
        default="steps",
        metadata={"help": "When to evaluate: no, steps (every --eval_steps) or epoch. Without --validation_file: no.",
                  "choices": ["no", "steps", "epoch"], "aliases": ["--evaluation_strategy"]},
    )
    eval_steps: float | None = field(default=100, metadata={"help": "Evaluate every this many optimizer steps."})
    save_steps: float = field(default=100, metadata={"help": "Checkpoint every this many optimizer steps."})
