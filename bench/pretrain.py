"""Benchmark: our continued-pretraining stage vs a plain HF Trainer run configured like the seed paper's script.

    python bench/pretrain.py [--steps 20] [--output_dir outputs/bench]

Same tiny Llama (hidden 128, 4 layers, random weights, vocabulary grown by tokenizer/extract_vocab.py +
tokenizer/merge.py on Hafez's Persian), same Persian corpus, same steps, batch 4 x block 512, LoRA r=8, alpha 32,
dropout 0.05, in one run, each configuration in its own process (so peak RSS is its own):

(a) seed: AutoModel + ``resize_token_embeddings(len(tokenizer))``, LoRA on q,k,v,o,gate,down,up with
    ``modules_to_save=embed_tokens,lm_head``, tokenized with ``datasets.map`` and packed with run_clm's
    ``group_texts`` (per 1000-document batch), ``default_data_collator``; HF Trainer.
(b) ours: ``pretrain/run_clm_pt_with_peft.py main([...])`` with ``--training_mode lora`` (the same LoRA, embeddings
    and head trained whole because the vocabulary grew, the default sub-token init, table padded to 64).

Also measured: our preprocessing throughput (MB of UTF-8 text per second: normalize, tokenize, pack, cache) next
to the seed-style ``datasets.map`` preprocessing, the time of a re-run that hits the cache, and the peak RSS of
``--streaming`` over the corpus at 1x and 10x its size. Goals (issue 3): tokens/s ratio ours/seed >= 1.0, cache
re-run < 5% of the first, streaming RSS flat (10x/1x close to 1). Prints a table and writes
``<output_dir>/bench_pretrain.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

# Tiny models and tokenizers (tests/tiny.py) and the real text they are trained on (demo/corpora.py) are test and
# demo code, not part of the shipped package: import them from their folders.
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(_REPO, "tests"), os.path.join(_REPO, "demo")]


BLOCK = 512  # tokens; the seed's block size
BATCH = 4  # sequences per step
LORA = dict(r=8, lora_alpha=32, lora_dropout=0.05)
SEED_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "down_proj", "up_proj"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def train_flags(steps: int) -> list[str]:
    """The TrainingArguments both configurations share."""
    return ["--per_device_train_batch_size", str(BATCH), "--max_steps", str(steps), "--learning_rate", "2e-4",
            "--logging_steps", "10", "--save_strategy", "no", "--report_to", "none", "--use_cpu", "--seed", "1",
            "--dataloader_num_workers", "0", "--eval_strategy", "no"]


# ------------------------------------------------------------------------------------------------ workers


def worker_ours(work: str, steps: int) -> dict:
    import importlib.util

    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pretrain",
                          "run_clm_pt_with_peft.py")
    spec = importlib.util.spec_from_file_location("run_clm_pt_with_peft", script)
    pretrain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pretrain)

    metrics = pretrain.main([
        "--model_name_or_path", f"{work}/model", "--tokenizer_name_or_path", f"{work}/tokenizer",
        "--dataset_dir", f"{work}/fa1", "--output_dir", f"{work}/out_ours", "--block_size", str(BLOCK),
        "--training_mode", "lora", "--lora_rank", str(LORA["r"]), "--lora_alpha", str(LORA["lora_alpha"]),
        "--lora_dropout", str(LORA["lora_dropout"]), "--validation_split_percentage", "0",
        "--sample_max_new_tokens", "0", "--data_cache_dir", f"{work}/cache_train", "--overwrite_output_dir",
        *train_flags(steps),
    ])
    return {"train_runtime_s": metrics["train_runtime"], "train_loss": metrics["train_loss"]}


def worker_seed(work: str, steps: int) -> dict:
    """The seed's recipe with stock HF pieces (run_clm_pt_with_peft.py of Chinese-LLaMA-Alpaca, vocabulary-agnostic)."""
    from itertools import chain

    import datasets
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import (AutoModelForCausalLM, AutoTokenizer, HfArgumentParser, Trainer, TrainingArguments,
                              default_data_collator)

    (args,) = HfArgumentParser(TrainingArguments).parse_args_into_dataclasses(
        ["--output_dir", f"{work}/out_seed", *train_flags(steps)])
    tok = AutoTokenizer.from_pretrained(f"{work}/tokenizer")
    raw = datasets.load_dataset("text", data_files=[f"{work}/fa1/fa.txt"], cache_dir=f"{work}/hf_cache_seed",
                                keep_linebreaks=False)["train"]
    tokenized = raw.map(lambda b: tok(b["text"]), batched=True, remove_columns=["text"])

    def group_texts(examples):
        concatenated = {k: list(chain(*examples[k])) for k in examples}
        total = len(concatenated["input_ids"]) // BLOCK * BLOCK
        result = {k: [t[i:i + BLOCK] for i in range(0, total, BLOCK)] for k, t in concatenated.items()}
        result["labels"] = result["input_ids"].copy()
        return result

    blocks = tokenized.map(group_texts, batched=True)
    model = AutoModelForCausalLM.from_pretrained(f"{work}/model", dtype="float32")
    model.resize_token_embeddings(len(tok))
    model = get_peft_model(model, LoraConfig(task_type=TaskType.CAUSAL_LM, target_modules=SEED_TARGETS,
                                             modules_to_save=["embed_tokens", "lm_head"], **LORA))
    trainer = Trainer(model=model, args=args, train_dataset=blocks, data_collator=default_data_collator)
    metrics = trainer.train().metrics
    return {"train_runtime_s": metrics["train_runtime"], "train_loss": metrics["train_loss"]}


def worker_preprocess(work: str, corpus: str) -> dict:
    """Ours: first build into an empty cache, then a re-run that hits it."""
    from langadapt.args import PretrainDataArguments
    from langadapt.data import load_pretrain_data
    from langadapt.loading import load_tokenizer
    from langadapt.normalize import NormalizerConfig

    tok = load_tokenizer(f"{work}/tokenizer")
    norm = NormalizerConfig.from_dir(f"{work}/tokenizer")
    args = PretrainDataArguments(dataset_dir=corpus, data_cache_dir=f"{work}/cache_pre",
                                 preprocessing_num_workers=None)
    t0 = time.perf_counter()
    train, _, report = load_pretrain_data(args, tok, norm, BLOCK, tokenizer_dir=f"{work}/tokenizer")
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, _, report2 = load_pretrain_data(args, tok, norm, BLOCK, tokenizer_dir=f"{work}/tokenizer")
    rerun = time.perf_counter() - t0
    assert report2.sources[0]["cache_hit"], "second run did not hit the cache"
    return {"first_s": first, "rerun_s": rerun, "bytes": report.sources[0]["bytes"], "blocks": len(train) +
            report.eval_blocks}


def worker_preprocess_seed(work: str, corpus: str) -> dict:
    """Seed-style preprocessing: load_dataset('text') + tokenize map + group_texts map (HF's own cache)."""
    from itertools import chain

    import datasets
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(f"{work}/tokenizer")
    files = [os.path.join(corpus, f) for f in os.listdir(corpus)]
    t0 = time.perf_counter()
    raw = datasets.load_dataset("text", data_files=files, cache_dir=f"{work}/hf_cache_pre")["train"]
    tokenized = raw.map(lambda b: tok(b["text"]), batched=True, remove_columns=["text"])

    def group_texts(examples):
        ids = list(chain(*examples["input_ids"]))
        total = len(ids) // BLOCK * BLOCK
        return {"input_ids": [ids[i:i + BLOCK] for i in range(0, total, BLOCK)]}

    blocks = tokenized.map(group_texts, batched=True, remove_columns=tokenized.column_names)
    return {"first_s": time.perf_counter() - t0, "bytes": sum(os.path.getsize(f) for f in files),
            "blocks": len(blocks)}


def worker_stream(work: str, corpus: str) -> dict:
    """One pass of --streaming over the corpus; peak RSS is the number."""
    from langadapt.data import PackedStream, parse_dataset_dirs
    from langadapt.loading import load_tokenizer
    from langadapt.normalize import NormalizerConfig

    tok = load_tokenizer(f"{work}/tokenizer")
    stream = PackedStream(parse_dataset_dirs(corpus), tok, NormalizerConfig.from_dir(f"{work}/tokenizer"), BLOCK)
    t0 = time.perf_counter()
    n = sum(1 for _ in stream.source_blocks(stream.sources[0], cycle=False))
    return {"blocks": n, "seconds": time.perf_counter() - t0}


WORKERS = {"ours": worker_ours, "seed": worker_seed}


def run_worker(name: str, *args: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "HF_DATASETS_OFFLINE": "1"}
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", name, *args], capture_output=True,
                       text=True, env=env, timeout=3600)
    if r.returncode != 0:
        raise RuntimeError(f"worker {name} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------ setup


def build_fixtures(work: str) -> None:
    """Base tokenizer (English BPE), merged tokenizer (project scripts), tiny model, 1x and 10x Persian corpora."""
    import tiny

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    fa = list(tiny.persian_corpus())
    tiny.train_bpe_tokenizer(tiny.english_corpus(), f"{work}/base", vocab_size=2000)
    os.makedirs(f"{work}/fa1")
    with open(f"{work}/fa1/fa.txt", "w", encoding="utf-8") as f:
        f.write("\n".join(fa) + "\n")
    os.makedirs(f"{work}/fa10")
    with open(f"{work}/fa10/fa.txt", "w", encoding="utf-8") as f:
        for i in range(10):  # 10x the bytes, each copy numbered so no two documents are equal
            f.write("\n".join(f"{i} {x}" for x in fa) + "\n")
    py = sys.executable
    subprocess.run([py, f"{repo}/tokenizer/extract_vocab.py", "--train_file", f"{work}/fa1", "--vocab_size", "3000",
                    "--base_tokenizer", f"{work}/base", "--output_dir", f"{work}/addon"], check=True,
                   capture_output=True)
    subprocess.run([py, f"{repo}/tokenizer/merge.py", "--base_tokenizer", f"{work}/base", "--extra_model",
                    f"{work}/addon", "--output_dir", f"{work}/tokenizer"], check=True, capture_output=True)
    tiny.make_tiny_llama(f"{work}/base", f"{work}/model", hidden_size=128, num_layers=4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="Optimizer steps per training run")
    parser.add_argument("--repeats", type=int, default=2,
                        help="Runs of each training/preprocessing configuration, interleaved; the fastest counts "
                        "(a shared box's load varies by the minute)")
    parser.add_argument("--output_dir", default="outputs/bench", help="Where bench_pretrain.json goes")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:  # child process: run one measurement, print one JSON line
        if args.worker in WORKERS:
            out = WORKERS[args.worker](args.work, args.steps)
        else:
            out = {"preprocess": worker_preprocess, "preprocess_seed": worker_preprocess_seed,
                   "stream": worker_stream}[args.worker](args.work, args.corpus)
        out["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(out))
        return

    from langadapt.io import write_json

    with tempfile.TemporaryDirectory(prefix="bench_pretrain_") as work:
        build_fixtures(work)
        steps = ["--steps", str(args.steps), "--work", work]
        runs: dict[str, list[dict]] = {"seed": [], "ours": [], "preprocess_seed": [], "preprocess": []}
        for _ in range(args.repeats):
            for name in ("seed", "ours"):
                runs[name].append(run_worker(name, *steps))
            for name in ("preprocess_seed", "preprocess"):
                runs[name].append(run_worker(name, "--work", work, "--corpus", f"{work}/fa10"))
            shutil.rmtree(f"{work}/cache_pre", ignore_errors=True)
            shutil.rmtree(f"{work}/hf_cache_pre", ignore_errors=True)
        train = {name: min(runs[name], key=lambda r: r["train_runtime_s"]) for name in ("seed", "ours")}
        for name, r in train.items():
            r["tokens_per_s"] = args.steps * BATCH * BLOCK / r["train_runtime_s"]
            r["all_runtimes_s"] = [x["train_runtime_s"] for x in runs[name]]
        pre = min(runs["preprocess"], key=lambda r: r["first_s"])
        pre_seed = min(runs["preprocess_seed"], key=lambda r: r["first_s"])
        stream = {k: run_worker("stream", "--work", work, "--corpus", f"{work}/{k}") for k in ("fa1", "fa10")}
    result = {
        "config": {"steps": args.steps, "repeats": args.repeats, "cpus": os.cpu_count(), "batch": BATCH,
                   "block": BLOCK, "model": "llama hidden 128, 4 layers",
                   "lora": LORA},
        "train": train,
        "tokens_per_s_ratio_ours_over_seed": train["ours"]["tokens_per_s"] / train["seed"]["tokens_per_s"],
        "preprocess": {
            "ours_mb_per_s": pre["bytes"] / 1e6 / pre["first_s"], "ours_first_s": pre["first_s"],
            "ours_cache_rerun_s": pre["rerun_s"], "cache_rerun_fraction": pre["rerun_s"] / pre["first_s"],
            "seed_mb_per_s": pre_seed["bytes"] / 1e6 / pre_seed["first_s"], "corpus_mb": pre["bytes"] / 1e6,
            "ours_blocks": pre["blocks"], "seed_blocks": pre_seed["blocks"],
        },
        "streaming": {"rss_mb_1x": stream["fa1"]["peak_rss_mb"], "rss_mb_10x": stream["fa10"]["peak_rss_mb"],
                      "rss_ratio_10x_over_1x": stream["fa10"]["peak_rss_mb"] / stream["fa1"]["peak_rss_mb"],
                      "blocks_1x": stream["fa1"]["blocks"], "blocks_10x": stream["fa10"]["blocks"]},
    }
    rows = [
        ("tokens/s (training)", f"{train['seed']['tokens_per_s']:.0f}", f"{train['ours']['tokens_per_s']:.0f}"),
        ("peak RSS MB (training)", f"{train['seed']['peak_rss_mb']:.0f}", f"{train['ours']['peak_rss_mb']:.0f}"),
        ("final train loss", f"{train['seed']['train_loss']:.3f}", f"{train['ours']['train_loss']:.3f}"),
        ("preprocessing MB/s (10x corpus)", f"{result['preprocess']['seed_mb_per_s']:.2f}",
         f"{result['preprocess']['ours_mb_per_s']:.2f}"),
        ("cache re-run s / first s", "-", f"{pre['rerun_s']:.2f} / {pre['first_s']:.2f}"),
        ("streaming peak RSS MB 1x / 10x", "-",
         f"{stream['fa1']['peak_rss_mb']:.0f} / {stream['fa10']['peak_rss_mb']:.0f}"),
    ]
    print(f"\n{'':34s} {'seed':>12s} {'ours':>16s}")
    for name, a, b in rows:
        print(f"{name:34s} {a:>12s} {b:>16s}")
    print(f"\nratio ours/seed tokens/s: {result['tokens_per_s_ratio_ours_over_seed']:.2f} (goal >= 1.0); cache "
          f"re-run {100 * result['preprocess']['cache_rerun_fraction']:.1f}% of first (goal < 5%); streaming RSS "
          f"10x/1x {result['streaming']['rss_ratio_10x_over_1x']:.2f} (goal ~1)")
    os.makedirs(args.output_dir, exist_ok=True)
    write_json(os.path.join(args.output_dir, "bench_pretrain.json"), result)


if __name__ == "__main__":
    main()
