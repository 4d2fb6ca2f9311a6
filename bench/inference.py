"""Inference speed: the seed's loop (one example at a time, 512 new tokens) vs ours, same model and test file, one run.

    python bench/inference.py                                        # tiny random Llama (tests/tiny.py), CPU, ~40 s
    python bench/inference.py --model .cache/langadapt/SmolLM2-135M-Instruct   # the demo's base model, ~1 min
    python bench/inference.py --model outputs/demo/sft_merged --test_file data/testset/fa/summary.json

Three configurations, the same greedy decoding (repetition penalty 1.1, the same template and prompt tokens):

* **seed**: a Python loop over examples, ``generate`` on one prompt with ``max_new_tokens=512`` for every task,
  stopping at EOS only; the response is then cut at the template's stop strings (what the seed's post-processing
  did by splitting on the response marker).
* **ours, cap 512**: :func:`langadapt.generation.run_testset`: prompts sorted by length, batches of ``--batch_size``
  with left padding and the KV cache, stop at EOS and at the stop strings, the same 512-token cap. Its answers must
  equal the seed's exactly (batching changes speed, not answers).
* **ours**: the same with the per-task cap ``inference.py`` uses by default (32 new tokens for a label). Its answers
  must equal the seed's, or be a prefix of it where the cap cut a longer answer (``capped``).

A random tiny model never emits EOS, so every seed answer runs to 512 tokens: that is the seed's behaviour on a
model that does not stop (a base model, or a Persian prompt before instruction tuning), and the worst case it pays.
Torch's thread count is left as it is (all cores by default) and recorded: batched steps use every core, the seed's
one-row steps hardly can. On a CPU a real model's prompt pass is compute-bound and costs the same batched or not, so
``--model`` with short answers shows a much smaller gain than the same model on a GPU (README, inference section).
Writes ``inference.json`` into ``--output_dir`` and prints the table.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

# Tiny models and tokenizers (tests/tiny.py) and the real text they are trained on (demo/corpora.py) are test and
# demo code, not part of the shipped package: import them from their folders.
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(_REPO, "tests"), os.path.join(_REPO, "demo")]


import torch

from langadapt.cli import parse_args, run_main
from langadapt.evaldata import load_testset, read_predictions, task_of
from langadapt.generation import SEED_MAX_NEW_TOKENS, HFGenerator, cut_at_stop, default_max_new_tokens, run_testset
from langadapt.io import write_json
from langadapt.templates import load_template_name

logger = logging.getLogger("bench.inference")


@dataclass
class BenchArguments:
    model: str | None = field(default=None, metadata={
        "help": "Model folder; default: a tiny random Llama (2 layers, hidden 32) built from tests/tiny.py."})
    test_file: str = field(default="data/testset/en/sentiment.json", metadata={"help": "A bundled test file."})
    limit: int | None = field(default=None, metadata={"help": "Use only the first N examples."})
    batch_size: int = field(default=32, metadata={
        "help": "Our batch size (prompts per generate call); 32 holds a whole bundled test file (20-24 items)."})
    seed_max_new_tokens: int = field(default=SEED_MAX_NEW_TOKENS, metadata={
        "help": "The seed's cap (512); smaller only for smoke runs."})
    output_dir: str = field(default="outputs/bench", metadata={"help": "Where inference.json goes."})


@dataclass
class Result:
    name: str
    batch_size: int
    max_new_tokens: int
    seconds: float
    examples_per_s: float
    speedup: float = 1.0
    identical: int = 0
    capped: int = 0
    different: int = 0


def _tiny_model(workdir: str) -> str:
    import tiny

    tok_dir = tiny.train_bpe_tokenizer(tiny.english_corpus(), os.path.join(workdir, "tok"), vocab_size=1000)
    return tiny.make_tiny_llama(tok_dir, os.path.join(workdir, "model"))


def seed_loop(gen: HFGenerator, examples, cap: int = SEED_MAX_NEW_TOKENS) -> list[str]:
    """The seed's loop: one prompt at a time, 512 new tokens, EOS only; cut at the stop strings afterwards."""
    out = []
    for ex in examples:
        ids = torch.tensor(gen.encode([gen.prompt(ex)])["input_ids"], device=gen.model.device)
        with torch.inference_mode():
            seq = gen.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                     max_new_tokens=cap, repetition_penalty=1.1,
                                     eos_token_id=gen.eos_ids, pad_token_id=gen.tokenizer.pad_token_id)
        out.append(cut_at_stop(gen.tokenizer.decode(seq[0, ids.shape[1]:], skip_special_tokens=True), gen.stops))
    return out


def ours(gen: HFGenerator, examples, cap: int, batch_size: int, workdir: str, name: str) -> tuple[list[str], float]:
    path = os.path.join(workdir, f"{name}.jsonl")
    start = time.perf_counter()
    run_testset(gen, examples, path, name, cap, batch_size, progress=False)
    seconds = time.perf_counter() - start
    return [r["prediction"] for r in read_predictions(path)], seconds


def compare(result: Result, answers: list[str], reference: list[str]) -> Result:
    for a, ref in zip(answers, reference):
        if a == ref:
            result.identical += 1
        elif ref.startswith(a.rstrip("\ufffd").rstrip()):  # a cap can cut inside a multi-byte character
            result.capped += 1
        else:
            result.different += 1
    return result


def main(argv=None) -> dict:
    (args,) = parse_args((BenchArguments,), argv, description=__doc__)
    from langadapt.loading import load_with_adapters

    with tempfile.TemporaryDirectory() as workdir:
        model_dir = args.model or _tiny_model(workdir)
        model, tok = load_with_adapters(model_dir, [], None, torch.float32)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        gen = HFGenerator(model.to(device).eval(), tok, load_template_name(model_dir))
        examples = load_testset(args.test_file)[: args.limit]
        cap = default_max_new_tokens(task_of(args.test_file))
        n = len(examples)
        logger.info("%d examples of %s on %s (%d torch threads)", n, args.test_file, device, torch.get_num_threads())

        start = time.perf_counter()
        seed_answers = seed_loop(gen, examples, args.seed_max_new_tokens)
        t_seed = time.perf_counter() - start
        results = [Result("seed loop", 1, args.seed_max_new_tokens, t_seed, n / t_seed)]
        for name, max_new in ((f"ours, cap {args.seed_max_new_tokens}", args.seed_max_new_tokens), ("ours", cap)):
            answers, t = ours(gen, examples, max_new, args.batch_size, workdir, name.replace(" ", "_"))
            results.append(compare(Result(name, args.batch_size, max_new, t, n / t, t_seed / t), answers,
                                   seed_answers))

    report = {
        "model": args.model or "tiny random Llama (tests/tiny.py, 2 layers, hidden 32, vocab 1000)",
        "test_file": args.test_file, "examples": n, "device": device,
        "cpu": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
        "results": [asdict(r) for r in results],
    }
    os.makedirs(args.output_dir, exist_ok=True)
    write_json(os.path.join(args.output_dir, "inference.json"), report)
    print(f"{'config':<14} {'batch':>5} {'cap':>4} {'seconds':>8} {'ex/s':>7} {'speedup':>7}  "
          "identical/capped/different")
    for r in results:
        print(f"{r.name:<14} {r.batch_size:>5} {r.max_new_tokens:>4} {r.seconds:>8.2f} {r.examples_per_s:>7.2f} "
              f"{r.speedup:>6.1f}x  {r.identical}/{r.capped}/{r.different}" if r.name != "seed loop" else
              f"{r.name:<14} {r.batch_size:>5} {r.max_new_tokens:>4} {r.seconds:>8.2f} {r.examples_per_s:>7.2f} "
              f"{'1.0x':>7}  (reference)")
    return report


if __name__ == "__main__":
    run_main(main)
