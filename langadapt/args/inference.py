"""Argument dataclasses of the evaluation and deployment scripts in ``inference/``: inference, perplexity, merge_lora,
score, report and lm_eval."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from langadapt.args import DEFAULT_EMBEDDING_INIT, EMBEDDING_INITS, TORCH_DTYPES, split_names
from langadapt.cli import COMMA_LIST
from langadapt.evaldata import TASKS
from langadapt.gguf_export import LLAMA_CPP_PYTHON_VERSION, OUTTYPES
from langadapt.merge import CHECK_EXAMPLES, DEFAULT_TOLERANCE, OUTPUT_DTYPES
from langadapt.metrics import BLEU_TOKENIZERS
from langadapt.templates import TEMPLATE_NAMES



@dataclass
class InferenceArguments:
    """Model, data and decoding. The seed's flags (--base_model ... --cache_dir) keep their meaning."""

    model_name_or_path: str = field(metadata={"help": "Base model folder (or a merged model).",
                                              "aliases": ["--base_model"]})
    peft_path: str | None = field(default=None, metadata={
        "help": "Adapter folder, or a comma-separated list applied in order (e.g. pretrain,sft).",
        "aliases": ["--lora_model", "--adapters"], **COMMA_LIST})
    tokenizer_name_or_path: str | None = field(default=None, metadata={
        "help": "Tokenizer folder; default: the last adapter's folder, else --model_name_or_path.",
        "aliases": ["--tokenizer_path"]})
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
        self.lora_models = [p.strip() for p in (self.peft_path or "").split(",") if p.strip()]
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


@dataclass
class PerplexityArguments:
    """Model, held-out text and output of a perplexity measurement."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "Base model folder. Required.",
                                                                   "aliases": ["--base_model"]})
    eval_files: str | None = field(
        default=None,
        metadata={"help": "Comma-separated held-out .txt (a line = a document) / .jsonl ({'text'}) files or folders; "
                          "results are keyed by file stem. Required.", **COMMA_LIST},
    )
    output_dir: str | None = field(default=None, metadata={"help": "Folder for perplexity.json. Required."})
    peft_path: str | None = field(
        default=None, metadata={"help": "Comma-separated PEFT adapter folders applied (and merged) in order.",
                                "aliases": ["--lora_model", "--adapters"], **COMMA_LIST}
    )
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer folder. Default: the last adapter's, else the base model's.",
                                "aliases": ["--tokenizer_path"]}
    )
    embedding_init: str = field(
        default=DEFAULT_EMBEDDING_INIT,
        metadata={"help": "Init of new embedding rows when the tokenizer outgrows the model (see the training "
                          "stages' --embedding_init).", "choices": list(EMBEDDING_INITS)},
    )
    block_size: int | None = field(
        default=None, metadata={"help": "Tokens per scoring window. Default: min(1024, the model's context)."}
    )
    batch_tokens: int = field(
        default=2048, metadata={"help": "Padded tokens per forward pass (logits memory ~ this x vocabulary x 4 bytes)."}
    )
    max_documents: int | None = field(default=None, metadata={"help": "Score only the first N documents of each file."})
    max_words: int | None = field(
        default=None,
        metadata={"help": "Score the first documents of each file up to about N words (keeps CPU runs short)."},
    )
    torch_dtype: str | None = field(
        default=None, metadata={"help": "Load dtype (default float32).", "choices": list(TORCH_DTYPES)}
    )
    name: str | None = field(default=None, metadata={"help": "Label stored in perplexity.json (e.g. 'pretrain')."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace an existing --output_dir.",
                                                                "aliases": ["--overwrite"]})

    def __post_init__(self) -> None:
        for flag in ("model_name_or_path", "eval_files", "output_dir"):
            if not getattr(self, flag):
                raise ValueError(f"--{flag} is required")
        if self.embedding_init not in EMBEDDING_INITS:
            raise ValueError(f"--embedding_init must be one of {', '.join(EMBEDDING_INITS)}")
        for flag in ("block_size", "batch_tokens", "max_documents", "max_words"):
            value = getattr(self, flag)
            if value is not None and value < 1:
                raise ValueError(f"--{flag} must be >= 1, got {value}")

    @property
    def adapter_list(self) -> list[str]:
        return split_names(self.peft_path) or []


@dataclass
class MergeArguments:
    """Arguments of ``inference/merge_lora.py``."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Base model folder the first adapter was trained on. Required.",
                                "aliases": ["--base_model"]}
    )
    peft_path: str | None = field(
        default=None,
        metadata={
            "help": "Adapter folder(s), comma-separated, applied in order (e.g. pretraining,sft). One adapter "
            "brings its recorded parent adapters (langadapt_model.json) along. Required.",
            "aliases": ["--lora_model", "--adapters"], **COMMA_LIST,
        },
    )
    output_dir: str | None = field(default=None, metadata={"help": "Folder for the merged model. Required."})
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer to save. Default: the last adapter's folder, else the base's.",
                                "aliases": ["--tokenizer_path"]}
    )
    output_dtype: str = field(
        default="auto",
        metadata={
            "help": "dtype of the saved weights: auto (the base checkpoint's), float32, bfloat16, float16. The merge "
            "itself is always computed in float32.",
            "choices": list(OUTPUT_DTYPES),
        },
    )
    max_shard_size: str = field(default="2GB", metadata={"help": "Largest safetensors shard, e.g. 2GB, 500MB."})
    check_prompts: int = field(
        default=4, metadata={"help": f"Prompts for the logits self-check (at most {len(CHECK_EXAMPLES)}); 0 skips it."}
    )
    tolerance: float | None = field(
        default=None,
        metadata={
            "help": "Largest accepted |merged - adapter| logit difference. Default by output dtype: "
            + ", ".join(f"{k} {v}" for k, v in DEFAULT_TOLERANCE.items())
        },
    )
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace an existing --output_dir.",
                                                                "aliases": ["--overwrite"]})
    low_memory: bool = field(
        default=False,
        metadata={
            "help": "Merge one base safetensors shard at a time (7B on a CPU node: one shard + the adapters in "
            "memory; output keeps the base's shard layout, --max_shard_size is ignored). LoRA and trainable-token "
            "adapters only. The self-check still loads the model once; --check_prompts 0 skips it."
        },
    )

    def __post_init__(self) -> None:
        for name in ("model_name_or_path", "peft_path", "output_dir"):
            if not getattr(self, name):
                raise ValueError(f"--{name} is required")
        if self.output_dtype not in OUTPUT_DTYPES:
            raise ValueError(f"--output_dtype must be one of {', '.join(OUTPUT_DTYPES)}, got {self.output_dtype!r}")
        if not 0 <= self.check_prompts <= len(CHECK_EXAMPLES):
            raise ValueError(f"--check_prompts must be between 0 and {len(CHECK_EXAMPLES)}, got {self.check_prompts}")
        if self.tolerance is not None and self.tolerance <= 0:
            raise ValueError(f"--tolerance must be > 0, got {self.tolerance}")

    @property
    def adapters(self) -> list[str]:
        return split_names(self.peft_path) or []


@dataclass
class ScoreArguments:
    """Which predictions to score and how."""

    predictions_dir: str | None = field(default=None, metadata={
        "help": "Prediction folder to score; writes scores.json and scores.md into it."})
    compare: list[str] | None = field(default=None, metadata={
        "help": "Several NAME=DIR prediction folders, in row order (e.g. base=... pt=... sft=...).",
        "nargs": "+"})
    lm_eval: list[str] | None = field(default=None, metadata={
        "help": "With --compare: NAME=DIR output folders of inference/lm_eval.py; each one's headline rows become "
                "columns of stage NAME's row (a new row when --compare has no NAME).", "nargs": "+"})
    output_dir: str | None = field(default=None, metadata={"help": "Where --compare writes comparison.*."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace an existing --output_dir.",
                                                                "aliases": ["--overwrite"]})
    allow_incomplete: bool = field(default=False, metadata={
        "help": "Score prediction folders that miss records of the test set named in their run_args.json (a "
                "killed or running inference job); without it they are refused."})
    task: str | None = field(default=None, metadata={
        "help": f"Task of every file ({', '.join(TASKS)}) when the file names do not say."})
    bleu_tokenize: str | None = field(default=None, metadata={
        "help": f"sacrebleu tokenizer ({', '.join(BLEU_TOKENIZERS)}); default 13a for Latin-script references, "
                "intl otherwise."})

    def __post_init__(self) -> None:
        if bool(self.predictions_dir) == bool(self.compare):
            raise ValueError("pass either --predictions_dir DIR or --compare NAME=DIR ... (with --output_dir)")
        if self.compare:
            if not self.output_dir:
                raise ValueError("--compare needs --output_dir")
            bad = [c for c in self.compare if c.count("=") < 1 or not c.split("=", 1)[0] or not c.split("=", 1)[1]]
            if bad:
                raise ValueError(f"--compare: {bad[0]!r} is not NAME=DIR (e.g. sft=outputs/predictions/sft)")
            names = [c.split("=", 1)[0] for c in self.compare]
            if len(set(names)) != len(names):
                raise ValueError(f"--compare: stage names must be distinct, got {names}")
        if self.lm_eval:
            if not self.compare:
                raise ValueError("--lm_eval goes with --compare (it adds columns to the comparison table)")
            bad = [c for c in self.lm_eval if "=" not in c or not all(c.split("=", 1))]
            if bad:
                raise ValueError(f"--lm_eval: {bad[0]!r} is not NAME=DIR (e.g. sft=outputs/lm_eval/sft)")
        if self.task is not None and self.task not in TASKS:
            raise ValueError(f"--task: unknown task {self.task!r}; choose one of {', '.join(TASKS)}")
        if self.bleu_tokenize is not None and self.bleu_tokenize not in BLEU_TOKENIZERS:
            raise ValueError(f"--bleu_tokenize: {self.bleu_tokenize!r} is not one of {BLEU_TOKENIZERS} "
                             "(the others download a model)")


@dataclass
class ReportArguments:
    """Where the run is and where the report goes."""

    run_dir: str | None = field(default=None, metadata={"help": "Run directory (stage outputs). Required."})
    output_dir: str | None = field(
        default=None, metadata={"help": "Folder for report.md, report.json and the charts. Default: --run_dir."}
    )
    quiet: bool = field(default=False, metadata={"help": "Do not print the report."})

    def __post_init__(self) -> None:
        if not self.run_dir:
            raise ValueError("--run_dir is required: the folder the pipeline wrote its stage outputs into")
        if not os.path.isdir(self.run_dir):
            raise ValueError(f"--run_dir: {self.run_dir} is not a folder; run the pipeline first")
        self.output_dir = self.output_dir or self.run_dir


@dataclass
class LMEvalArguments:
    """Model, tasks and output. Model flags are inference/inference.py's."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "Base model folder (or a merged model).",
                                                                   "aliases": ["--base_model"]})
    peft_path: str | None = field(default=None, metadata={
        "help": "Adapter folder, or a comma-separated list applied in order (e.g. pretrain,sft).",
        "aliases": ["--lora_model", "--adapters"], **COMMA_LIST})
    tokenizer_name_or_path: str | None = field(default=None, metadata={
        "help": "Tokenizer folder; default: the last adapter's folder, else --model_name_or_path.",
        "aliases": ["--tokenizer_path"]})
    tasks: str | None = field(default=None, metadata={
        "help": "Comma-separated lm-eval task/group/tag names (e.g. belebele_pes_Arab,global_mmlu_full_fa) and our "
                "generated ones (langadapt, langadapt_fa, langadapt_fa_sentiment); default with --data_dir: "
                "langadapt."})
    data_dir: str | None = field(default=None, metadata={
        "help": "Folder of our .json/.jsonl test sets (e.g. data/testset: fa/, en/, translate-test/) to run as "
                "lm-eval tasks."})
    include_path: str | None = field(default=None, metadata={
        "help": "Comma-separated folders of more lm-eval task YAMLs (lm-eval's --include_path), e.g. groups over "
                "our tasks or local copies of benchmarks."})
    output_dir: str | None = field(default=None, metadata={"help": "Where results and the summary go."})
    overwrite_output_dir: bool = field(default=False, metadata={
        "help": "Replace an existing --output_dir (or --write_tasks).", "aliases": ["--overwrite"]})
    write_tasks: str | None = field(default=None, metadata={
        "help": "Only write the task folder for --data_dir here (for `lm-eval --include_path`) and stop."})
    with_prompt: bool = field(default=True, metadata={
        "help": "Wrap our test records in the prompt template; --with_prompt False sends instruction and input."})
    template: str | None = field(default=None, metadata={
        "help": f"One of {', '.join(TEMPLATE_NAMES)} for our tasks; default: the one recorded by SFT in the "
                "model/adapter folder, else alpaca."})
    normalize: bool = field(default=True, metadata={
        "help": "Normalize every request text with the tokenizer's normalizer; False: plain lm-eval."})
    num_fewshot: int | None = field(default=None, metadata={"help": "Few-shot examples; default: each task's."})
    limit: float | None = field(default=None, metadata={
        "help": "Examples per task (a fraction if < 1); for smoke runs only, never for reported numbers."})
    max_new_tokens: int | None = field(default=None, metadata={
        "help": "New-token cap of every generation task (lm-eval's max_gen_toks); default: each task's (ours: per "
                "task family, as inference/inference.py)."})
    batch_size: int = field(default=8, metadata={"help": "Requests per forward pass."})
    max_length: int | None = field(default=None, metadata={"help": "Context tokens; default: the model's."})
    torch_dtype: str = field(default="auto", metadata={
        "help": "auto (bfloat16 on a GPU that has it, else float32), float32, float16 or bfloat16."})
    device: str | None = field(default=None, metadata={"help": "Default: cuda when available, else cpu."})
    seed: int = field(default=1234, metadata={"help": "lm-eval's random seed (few-shot sampling)."})

    def __post_init__(self) -> None:
        self.lora_models = [p.strip() for p in (self.peft_path or "").split(",") if p.strip()]
        self.task_names = [t.strip() for t in (self.tasks or "").split(",") if t.strip()]
        self.include_paths = [p.strip() for p in (self.include_path or "").split(",") if p.strip()]
        for p in self.include_paths:
            if not os.path.isdir(p):
                raise ValueError(f"--include_path: {p} is not a folder of lm-eval task YAMLs")
        if self.write_tasks:
            if not self.data_dir:
                raise ValueError("--write_tasks needs --data_dir (the test sets to turn into tasks)")
            return
        if not self.model_name_or_path:
            raise ValueError("--model_name_or_path is required (or --write_tasks to only write the task folder)")
        if not self.output_dir:
            raise ValueError("--output_dir is required")
        if not self.task_names:
            if not self.data_dir:
                raise ValueError("pass --tasks (lm-eval task names) and/or --data_dir (our test sets)")
            self.task_names = ["langadapt"]
        if self.template is not None and self.template not in TEMPLATE_NAMES:
            raise ValueError(f"--template: unknown template {self.template!r}; choose one of {TEMPLATE_NAMES}")
        for flag, ok in (("--batch_size", self.batch_size >= 1),
                         ("--num_fewshot", self.num_fewshot is None or self.num_fewshot >= 0),
                         ("--limit", self.limit is None or self.limit > 0),
                         ("--max_length", self.max_length is None or self.max_length >= 1),
                         ("--max_new_tokens", self.max_new_tokens is None or self.max_new_tokens >= 1),
                         ("--torch_dtype", self.torch_dtype in ("auto", "float32", "float16", "bfloat16"))):
            if not ok:
                raise ValueError(f"{flag}: invalid value; see --help")


@dataclass
class ExportArguments:
    """Arguments of ``inference/export_gguf.py``."""

    model_dir: str | None = field(default=None, metadata={
        "help": "Merged model folder (the output of inference/merge_lora.py, or any HF causal LM folder). Required.",
        "aliases": ["--model_name_or_path"]})
    output_dir: str | None = field(default=None, metadata={"help": "Folder for the GGUF files. Required."})
    outtypes: str = field(default="f16,q8_0", metadata={
        "help": f"Comma-separated GGUF types, one file each: {', '.join(OUTTYPES)}."})
    converter_dir: str | None = field(default=None, metadata={
        "help": "Folder with llama.cpp's convert_hf_to_gguf.py (a llama.cpp checkout). Default: $LLAMA_CPP_DIR, "
                f"else the converter of llama-cpp-python {LLAMA_CPP_PYTHON_VERSION}, fetched once with pip."})
    no_fetch: bool = field(default=False, metadata={
        "help": "Never download the converter (offline nodes): fail unless it is already there."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace an existing --output_dir.",
                                                                "aliases": ["--overwrite"]})

    def __post_init__(self) -> None:
        for name in ("model_dir", "output_dir"):
            if not getattr(self, name):
                raise ValueError(f"--{name} is required")
        bad = [t for t in self.types if t not in OUTTYPES]
        if bad or not self.types:
            raise ValueError(f"--outtypes: {','.join(bad) or 'empty'}; choose from {', '.join(OUTTYPES)}")

    @property
    def types(self) -> list[str]:
        return [t.strip() for t in self.outtypes.split(",") if t.strip()]
