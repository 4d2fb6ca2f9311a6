"""Scale check: tokens/s, peak memory and MFU of our pretraining stage against the seed paper's settings.

    python bench/gpu_scale.py --shape 7b --output_dir bench_out        # a GPU with ~80 GB (H100/A100-80G)
    python bench/gpu_scale.py --shape tiny --output_dir /tmp/gs        # CPU smoke run (what the test runs)

Throughput and memory depend on shapes, not on trained values, so the model is built from a config only (random
init; no weights are downloaded): ``7b`` = Llama-2-7B (hidden 4096, 32 layers, 32 heads, MLP 11008), ``3b`` =
OpenLLaMA-3B (3200, 26, 32, 8640), ``1b`` = TinyLlama-1.1B (2048, 22, 32 heads / 4 KV heads, 5632), ``tiny`` =
(64, 2, 4 / 2, 128); base vocabulary 32000 (tiny: 1000) grown to ``round(base * 50000 / 32000)`` rows, the size
of a Persian-extended Llama-2 tokenizer, then padded as the stage pads it.

Two configurations run in the same process, one after the other, on the same synthetic token blocks:

* **ours**: the pretraining stage's own functions: :func:`langadapt.embeddings.resize_and_init` (new rows at the
  mean of the base rows), :func:`langadapt.modeling.apply_training_mode` (``--training_mode lora``: LoRA r=8 on
  every projection plus trainable ``embed_tokens``/``lm_head``), :class:`langadapt.args.LangAdaptTrainingArguments`
  with gradient checkpointing, SDPA attention, bf16 weights and autocast, block 2048, micro-batch 1 (flags), the
  stage's data collator, and the HF Trainer.
* **seed**: the paper's script settings: fp32 weights with fp16 autocast (``--fp16``; HF Trainer's GradScaler
  refuses fp16 trainable weights, and the seed's transformers loaded fp32 by default), LoRA r=8, alpha 32,
  dropout 0.05 on q/k/v/o/gate/up/down, ``modules_to_save`` embed_tokens/lm_head, block 512, micro-batch 1,
  eager attention (the seed's transformers 4.2x had no SDPA path for Llama), no gradient checkpointing, HF Trainer
  defaults otherwise.

On CPU both run in fp32 (no fp16/bf16 autocast there). Times: CUDA events around the steps after ``--warmup_steps``
(wall clock on CPU). Peak memory: ``torch.cuda.max_memory_allocated`` per configuration (on CPU the process's
peak RSS, which never goes down, so the second run's value includes the first).

Model FLOPs utilisation (MFU) = model FLOPs per second / measured peak (a large bf16 matmul timed on the same device
in the same run; fp32 on CPU). Model FLOPs per token, with ``N`` = parameters used as matmul weights in the forward
(every linear layer including the output head and the LoRA matrices; the input embedding is a lookup and is not
counted) and ``N_t`` = trainable parameters among them (LoRA matrices and, when trained, the output head):

* full training: ``6 * N`` (forward 2N, backward 4N: activation grads 2N + weight grads 2N);
* LoRA / trainable embeddings: ``2 * N`` forward + ``2 * N`` backward through the frozen weights (activation grads
  are needed to reach the LoRA matrices and the embeddings of every layer below) + ``2 * N_t`` weight grads of the
  trainable matmul weights only. The trainable input embedding's gradient is a scatter-add, not counted.

Not counted (so MFU is model FLOPs, not hardware FLOPs): the recomputed forward of gradient checkpointing, the
attention score/value matmuls (``12 * layers * hidden * block`` per token: ~8% of 6N at 7B/2048, ~2% at 512),
norms, softmax and the optimizer.

Writes ``gpu_scale_<shape>.json`` and ``gpu_scale_<shape>.md`` (the table) into ``--output_dir``.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import platform
import resource
import tempfile
import time
from dataclasses import asdict, dataclass, field

import torch
from transformers import TrainerCallback

from langadapt.args import AdaptationArguments, LangAdaptTrainingArguments
from langadapt.cli import parse_args, run_main
from langadapt.embeddings import resize_and_init
from langadapt.io import write_json, write_text
from langadapt.modeling import apply_training_mode, count_parameters

logger = logging.getLogger("gpu_scale")

# Llama-family shapes (from the public config.json of each model).
SHAPES = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128, vocab_size=1000, max_position_embeddings=2048),
    "1b": dict(hidden_size=2048, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
               intermediate_size=5632, vocab_size=32000, max_position_embeddings=2048),
    "3b": dict(hidden_size=3200, num_hidden_layers=26, num_attention_heads=32, num_key_value_heads=32,
               intermediate_size=8640, vocab_size=32000, max_position_embeddings=2048),
    "7b": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
               intermediate_size=11008, vocab_size=32000, max_position_embeddings=4096),
}
# A Persian-extended Llama-2 tokenizer has about 50k entries for Llama-2's 32000.
VOCAB_GROWTH = 50000 / 32000
SEED_LORA_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


@dataclass
class BenchArguments:
    """What to build and how long to run it."""

    output_dir: str = field(metadata={"help": "Folder for gpu_scale_<shape>.json and .md (created)."})
    shape: str = field(default="tiny", metadata={"help": f"Model shape: {', '.join(SHAPES)}."})
    steps: int = field(default=10, metadata={"help": "Measured optimizer steps per configuration."})
    warmup_steps: int = field(default=3, metadata={"help": "Steps run before timing starts (CUDA init, autotune)."})
    ours_block_size: int = field(default=2048, metadata={"help": "Tokens per block for our configuration."})
    ours_batch_size: int = field(default=1, metadata={"help": "Micro-batch (blocks per step) for ours."})
    seed_block_size: int = field(default=512, metadata={"help": "Tokens per block for the seed configuration."})
    seed_batch_size: int = field(default=1, metadata={"help": "Micro-batch for the seed configuration."})
    ours_training_mode: str = field(default="lora", metadata={"help": "Our --training_mode: lora, embeddings, full."})
    ours_weights_dtype: str = field(default="bfloat16", metadata={
        "help": "Our weights on GPU: bfloat16 (the stage's --torch_dtype bfloat16 --bf16) or float32 (the stage's "
                "default --bf16: fp32 weights, bf16 autocast)."})
    tokenizer_size: int | None = field(default=None, metadata={
        "help": "Extended vocabulary size. Default: the shape's base vocabulary x 50000/32000."})
    runs: str = field(default="ours,seed", metadata={"help": "Which configurations to run, in order."})
    device: str | None = field(default=None, metadata={"help": "cuda or cpu. Default: cuda when available."})

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"--shape must be one of {', '.join(SHAPES)}, got {self.shape!r}")
        if self.steps < 1 or self.warmup_steps < 0:
            raise ValueError("--steps must be >= 1 and --warmup_steps >= 0")
        for flag in ("ours_block_size", "ours_batch_size", "seed_block_size", "seed_batch_size"):
            if getattr(self, flag) < 1:
                raise ValueError(f"--{flag} must be >= 1")
        if self.ours_weights_dtype not in ("bfloat16", "float32"):
            raise ValueError(f"--ours_weights_dtype must be bfloat16 or float32, got {self.ours_weights_dtype!r}")
        if self.ours_training_mode not in ("lora", "embeddings", "full"):
            raise ValueError(f"--ours_training_mode must be lora, embeddings or full, got {self.ours_training_mode!r}")
        self.run_list = [r.strip() for r in self.runs.split(",") if r.strip()]
        if not self.run_list or any(r not in ("ours", "seed") for r in self.run_list):
            raise ValueError(f"--runs: a comma list of ours, seed; got {self.runs!r}")
        if self.device is None:
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.device not in ("cuda", "cpu"):
            raise ValueError(f"--device must be cuda or cpu, got {self.device!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA GPU is visible")


class SyntheticBlocks(torch.utils.data.Dataset):
    """Packed pretraining blocks of random token ids (``input_ids``, as the stage's packing makes them)."""

    def __init__(self, n_blocks: int, block_size: int, vocab: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, vocab, (n_blocks, block_size), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i]}


class StepTimer(TrainerCallback):
    """Times optimizer steps ``warmup+1 .. warmup+steps`` with CUDA events (wall clock on CPU)."""

    def __init__(self, warmup: int, steps: int, cuda: bool):
        self.warmup, self.steps, self.cuda = warmup, steps, cuda
        self.start = self.end = None
        self.t0 = self.t1 = None

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            if self.cuda:
                self.start = torch.cuda.Event(enable_timing=True)
                self.start.record()
            self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup + self.steps:
            if self.cuda:
                self.end = torch.cuda.Event(enable_timing=True)
                self.end.record()
                torch.cuda.synchronize()
            self.t1 = time.perf_counter()

    def seconds(self) -> float:
        """Seconds of the measured steps."""
        if self.t1 is None:
            raise RuntimeError("the timed steps did not run (Trainer stopped early?)")
        return self.start.elapsed_time(self.end) / 1000.0 if self.cuda else self.t1 - self.t0


def measure_peak_tflops(device: str) -> tuple[float, str]:
    """Achievable dense matmul rate on this device, in TFLOP/s: bf16 8192^3 on GPU, fp32 1024^3 on CPU."""
    if device == "cuda":
        n, dtype, reps = 8192, torch.bfloat16, 20
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        for _ in range(3):
            a @ b
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            a @ b
        end.record()
        torch.cuda.synchronize()
        seconds = start.elapsed_time(end) / 1000.0
    else:
        n, dtype, reps = 1024, torch.float32, 5
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        seconds = time.perf_counter() - t0
    return 2 * n**3 * reps / seconds / 1e12, str(dtype).replace("torch.", "")


def linear_params(model) -> int:
    """Parameters held by linear layers (each tensor once): the matmul weights of a forward pass."""
    seen, total = set(), 0
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            for p in m.parameters(recurse=False):
                if id(p) not in seen:
                    seen.add(id(p))
                    total += p.numel()
    return total


def trainable_linear_params(model) -> tuple[int, int]:
    """(trainable parameters in linear layers, of which LoRA matrices)."""
    seen, total, lora = set(), 0, 0
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear):
            for p in m.parameters(recurse=False):
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    total += p.numel()
                    lora += p.numel() if "lora_" in name else 0
    return total, lora


def model_flops_per_token(n_forward: int, n_trainable_linear: int, full: bool) -> int:
    """See the module docstring: 6N for full training, 4N + 2N_t with frozen base weights."""
    return 6 * n_forward if full else 4 * n_forward + 2 * n_trainable_linear


def build_model(shape: str, dtype, device: str, attn: str):
    """A randomly initialised Llama of the given shape, built directly on ``device`` in ``dtype``."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(**SHAPES[shape], bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    torch.manual_seed(0)
    with torch.device(device):
        return AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn)


def _peak_memory_gb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_config(name: str, args: BenchArguments, tokenizer_size: int, peak_tflops: float) -> dict:
    """Build, set up and train one configuration; return its measurements (``oom`` when it did not fit)."""
    from transformers import Trainer

    from langadapt.data import collate_blocks, resolve_block_size

    cuda = args.device == "cuda"
    ours = name == "ours"
    block = args.ours_block_size if ours else args.seed_block_size
    batch = args.ours_batch_size if ours else args.seed_batch_size
    if ours:
        weight_dtype, amp = (getattr(torch, args.ours_weights_dtype), "bf16") if cuda else (torch.float32, "none")
        attn, checkpointing, mode = "sdpa", True, args.ours_training_mode
        # r=8/alpha=32 as measured in bench/RESULTS.md (the library default is now the 7B recipe's r=64/alpha=128).
        adapt = AdaptationArguments(training_mode=mode, lora_rank=8, lora_alpha=32.0)
    else:
        weight_dtype, amp = torch.float32, ("fp16" if cuda else "none")
        attn, checkpointing, mode = "eager", False, "lora"
        adapt = AdaptationArguments(training_mode="lora", lora_rank=8, lora_alpha=32.0, lora_dropout=0.05,
                                    trainable=SEED_LORA_TARGETS, modules_to_save="embed_tokens,lm_head")
    result = {"config": name, "training_mode": mode, "block_size": block, "micro_batch": batch,
              "weights_dtype": str(weight_dtype).replace("torch.", ""), "autocast": amp, "attention": attn,
              "gradient_checkpointing": checkpointing, "steps": args.steps, "warmup_steps": args.warmup_steps}
    if cuda:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        # Anything still allocated here (a leak from the previous configuration) would count in this peak.
        result["memory_at_start_gb"] = torch.cuda.memory_allocated() / 2**30
    model = trainer = None
    try:
        model = build_model(args.shape, weight_dtype, args.device, attn)
        # The stage's resize for both (the seed script resized to len(tokenizer), no padding: pad 1); the init
        # of the new rows does not change the speed.
        resize = resize_and_init(model, tokenizer_size, init="mean",
                                 pad_to_multiple_of=adapt.pad_vocab_to_multiple_of if ours else 1)
        n_forward_base = linear_params(model)
        model = apply_training_mode(model, adapt, resize, gradient_checkpointing=checkpointing)
        trainable, total = count_parameters(model)
        n_trainable_linear, n_lora = trainable_linear_params(model)
        n_forward = n_forward_base + n_lora
        if ours:
            block = result["block_size"] = resolve_block_size(block, model.config, arg="ours_block_size")
        timer = StepTimer(args.warmup_steps, args.steps, cuda)
        with tempfile.TemporaryDirectory() as tmp:
            targs = LangAdaptTrainingArguments(
                output_dir=tmp, max_steps=args.warmup_steps + args.steps, per_device_train_batch_size=batch,
                activation_checkpointing=checkpointing, bf16=amp == "bf16", fp16=amp == "fp16", report_to="none",
                save_strategy="no", logging_steps=10**6, disable_tqdm=True, dataloader_num_workers=0,
                use_cpu=not cuda, seed=0,
            )
            data = SyntheticBlocks((args.warmup_steps + args.steps) * batch, block, tokenizer_size)
            # Both use the stage's collator (labels = input ids): the seed's default_data_collator did the same for
            # its packed blocks, and one collator keeps the comparison about the model setup.
            trainer = Trainer(model=model, args=targs, train_dataset=data, data_collator=collate_blocks,
                              callbacks=[timer])
            out = trainer.train()
        seconds = timer.seconds()
        tokens = args.steps * batch * block
        flops_tok = model_flops_per_token(n_forward, n_trainable_linear, full=mode == "full")
        result.update(
            oom=False, params_total=total, params_trainable=trainable, params_forward_linear=n_forward,
            params_trainable_linear=n_trainable_linear, embedding_rows=resize.embedding_rows,
            measured_seconds=seconds, tokens_per_s=tokens / seconds, step_time_s=seconds / args.steps,
            model_flops_per_token=flops_tok, achieved_tflops=flops_tok * tokens / seconds / 1e12,
            mfu=flops_tok * tokens / seconds / 1e12 / peak_tflops, peak_memory_gb=_peak_memory_gb(args.device),
            train_loss=float(out.training_loss),
        )
    except torch.cuda.OutOfMemoryError as e:
        logger.warning("%s: out of memory: %s", name, str(e).splitlines()[0])
        result.update(oom=True, error=str(e).splitlines()[0], peak_memory_gb=_peak_memory_gb(args.device))
    except Exception as e:  # noqa: BLE001 - on a lent GPU one broken configuration must not lose the other's numbers
        logger.exception("%s failed", name)
        result.update(oom=False, error=f"{type(e).__name__}: {e}".splitlines()[0])
    finally:
        if trainer is not None:
            trainer.accelerator.free_memory()
        del model, trainer
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    logger.info("%s: %s", name, {k: v for k, v in result.items() if k in ("tokens_per_s", "peak_memory_gb", "mfu")})
    return result


def _fmt(v, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def table(report: dict) -> str:
    """The markdown table: one row per configuration, plus ours/seed."""
    mem = "peak GPU memory (GiB)" if report["device_type"] == "cuda" else "peak RSS (GiB, process)"
    lines = [f"# gpu_scale: shape {report['shape']} on {report['device']}", "",
             f"Measured peak: {report['peak_tflops']:.3g} TFLOP/s ({report['peak_dtype']} matmul). "
             f"Vocabulary {report['base_vocab_size']} -> {report['tokenizer_size']}.", "",
             f"| config | mode | weights / autocast | attention | ckpt | block x batch | trainable / total params "
             f"| tokens/s | {mem} | MFU |", "| --- | --- | --- | --- | --- | --- | --- | ---: | ---: | ---: |"]
    for r in report["runs"].values():
        if "error" in r:
            params = "OOM" if r["oom"] else f"error: {r['error'][:60]}"
        else:
            params = f"{r['params_trainable'] / 1e6:.1f}M / {r['params_total'] / 1e6:.1f}M"
        lines.append(
            f"| {r['config']} | {r['training_mode']} | {r['weights_dtype']} / {r['autocast']} | {r['attention']} | "
            f"{'yes' if r['gradient_checkpointing'] else 'no'} | {r['block_size']} x {r['micro_batch']} | {params} | "
            f"{_fmt(r.get('tokens_per_s'), ',.0f')} | {_fmt(r.get('peak_memory_gb'), '.2f')} | "
            f"{_fmt(None if r.get('mfu') is None else 100 * r['mfu'], '.1f')}% |")
    ratio = report.get("ratio_tokens_per_s")
    lines += ["", f"ours / seed tokens/s: {_fmt(ratio, '.2f')}x", ""]
    return "\n".join(lines)


def main(argv=None) -> dict:
    (args,) = parse_args((BenchArguments,), argv, description=__doc__)
    cuda = args.device == "cuda"
    base_vocab = SHAPES[args.shape]["vocab_size"]
    tokenizer_size = args.tokenizer_size or round(base_vocab * VOCAB_GROWTH)
    device_name = torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.processor() or platform.machine()}, " \
                                                                f"{torch.get_num_threads()} threads)"
    logger.info("shape %s on %s, vocabulary %d -> %d", args.shape, device_name, base_vocab, tokenizer_size)
    peak, peak_dtype = measure_peak_tflops(args.device)
    report = {"shape": args.shape, "model_config": SHAPES[args.shape], "device": device_name,
              "device_type": args.device, "torch": torch.__version__, "peak_tflops": peak, "peak_dtype": peak_dtype,
              "base_vocab_size": base_vocab, "tokenizer_size": tokenizer_size, "runs": {},
              "ratio_tokens_per_s": None, "args": asdict(args),
              "mfu_formula": "full: 6*N*T; frozen base (lora/embeddings): (4*N + 2*N_trainable_linear)*T; N = linear "
                             "weights used in the forward incl. output head and LoRA, input embedding excluded"}
    os.makedirs(args.output_dir, exist_ok=True)
    json_path = os.path.join(args.output_dir, f"gpu_scale_{args.shape}.json")
    for name in args.run_list:
        report["runs"][name] = run_config(name, args, tokenizer_size, peak)
        write_json(json_path, report)  # after each configuration: a run cut off by a time limit keeps the first
    ours, seed = report["runs"].get("ours", {}), report["runs"].get("seed", {})
    if ours.get("tokens_per_s") and seed.get("tokens_per_s"):
        report["ratio_tokens_per_s"] = ours["tokens_per_s"] / seed["tokens_per_s"]
    write_json(json_path, report)
    md = table(report)
    write_text(os.path.join(args.output_dir, f"gpu_scale_{args.shape}.md"), md)
    print(md)  # the table is this script's output
    return report


if __name__ == "__main__":
    run_main(main)
