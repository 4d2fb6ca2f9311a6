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

logger = logging.getLogger(__name__)

TRAINING_MODES = ("full", "lora", "embeddings", "new_rows")
EMBEDDING_INITS = ("subtoken_mean", "subtoken_weighted", "mean", "hf_default", "random")
TORCH_DTYPES = ("auto", "float32", "float16", "bfloat16")


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
        metadata={"help": "Base model: a local HF folder (or hub id when online). Required."},
    )
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Tokenizer folder, e.g. the output of tokenizer/merge.py. Default: --model_name_or_path."},
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
            "help": "full, lora, embeddings or new_rows (see the module docs). Default: lora with --use_lora, "
            "embeddings with --freeze_transformer, otherwise full.",
            "choices": list(TRAINING_MODES),
        },
    )
    use_lora: bool = field(default=False, metadata={"help": "Seed flag: same as --training_mode lora."})
    freeze_transformer: bool = field(
        default=False, metadata={"help": "Seed flag: same as --training_mode embeddings (train only embeddings/head)."}
    )
    embedding_init: str = field(
        default="subtoken_weighted",
        metadata={
            "help": "Initial value of new embedding rows. subtoken_weighted (default): weighted mean of the base rows "
            "of the pieces the base tokenizer splits the new token into, weights 1, 1/2, 1/4, ... from the first "
            "(input embeddings and an untied head separately); subtoken_mean: their plain mean (the seed paper's); "
            "mean: mean of all base rows; hf_default: whatever transformers' resize_token_embeddings does; random: normal(0, "
            "initializer_range).",
            "choices": list(EMBEDDING_INITS),
        },
    )
    pad_vocab_to_multiple_of: int = field(
        default=64,
        metadata={
            "help": "Pad the embedding table to a multiple of this many rows (64: tensor-core friendly matmuls for "
            "the output head). 1 disables padding. Padding rows are never produced by the tokenizer."
        },
    )
    base_tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Base tokenizer for the --embedding_init subtoken_* choices. Default: 'base_tokenizer' from the tokenizer "
            "folder's langadapt_tokenizer.json, else --model_name_or_path."
        },
    )
    lora_rank: int = field(default=8, metadata={"help": "LoRA rank r."})
    lora_alpha: float = field(default=32.0, metadata={"help": "LoRA scaling numerator (scale = alpha / rank)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input, probability 0-1."})
    trainable: str | None = field(
        default=None,
        metadata={
            "help": "Seed flag: comma-separated LoRA target modules, e.g. q_proj,v_proj,k_proj,o_proj,gate_proj,"
            "down_proj,up_proj. Default: every linear projection of the transformer blocks (not the output head)."
        },
    )
    modules_to_save: str | None = field(
        default=None,
        metadata={
            "help": "Seed flag: comma-separated modules trained in full next to LoRA, e.g. embed_tokens,lm_head. "
            "Default: the input embeddings and output head when the vocabulary grew, otherwise none."
        },
    )
    peft_path: str | None = field(
        default=None,
        metadata={
            "help": "Continue from this PEFT adapter folder. The same adapter type as --training_mode is trained "
            "further; another type (or --training_mode full/embeddings) merges it into the base first and records "
            "it in langadapt_model.json's parent_adapters."
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
            self.training_mode = implied[0][1] if implied else "full"
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
                          "study's curves; langadapt/bpb.py). Default: none."},
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


@dataclass
class LangAdaptTrainingArguments(_training_arguments_base()):
    """``transformers.TrainingArguments`` plus ``--overwrite_output_dir`` (gone from transformers 5) and checks.

    Differences from the HF defaults, each for a reason:

    * ``report_to`` defaults to ``tensorboard`` (HF 5 defaults to none): every run leaves curves in
      ``output_dir/runs``. Pass ``--report_to none`` to switch it off.
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
            "from the last complete one, and a non-empty folder without checkpoints is refused."
        },
    )

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
        super().__post_init__()
        if self.deepspeed:
            # Set up the process group now: ZeRO-3 partitions weights inside from_pretrained, and DeepSpeed reads
            # the world size from torch.distributed then (else: "train_batch_size 4 != 2 * 1 * 1").
            _ = self.device
            import deepspeed

            if not deepspeed.comm.is_initialized():  # e.g. --use_cpu: accelerate set up plain DDP, not DeepSpeed
                deepspeed.init_distributed()
