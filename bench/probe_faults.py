"""Fault probe for issue 14: run the stage scripts as a user would (subprocesses, tiny model, CPU) on the bad inputs
and faults the issue lists, and print each case's exit status, whether a traceback was printed, and the verdict.

    python bench/probe_faults.py [--work DIR]      # about 9 minutes on 2 shared cores

A case is "ok" when it behaves as the README's exit-status contract says (0 done, 2 bad input with one error line
and nothing written, 75 preempted, 1 internal error), "weak" when the status is right but a traceback or wrong
advice came with it, "bad" otherwise. Not a speed benchmark: it measures behaviour, so there is no baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO}


def run(cmd: list[str], umask: int | None = None) -> tuple[int, str]:
    def pre():
        if umask is not None:
            os.umask(umask)

    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600, preexec_fn=pre, cwd=REPO)
    return proc.returncode, proc.stderr


def script(path: str, *args: str) -> list[str]:
    return [sys.executable, os.path.join(REPO, path), *args]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=None, help="Scratch folder (default: a temporary one, removed after).")
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="probe-")
    sys.path[:0] = [REPO, os.path.join(REPO, "tests"), os.path.join(REPO, "demo")]
    import tiny

    tok = tiny.train_bpe_tokenizer(list(tiny.english_corpus()), os.path.join(work, "tok"), vocab_size=1000)
    model = tiny.make_tiny_llama(tok, os.path.join(work, "model"))
    fa = list(tiny.persian_corpus())
    os.makedirs(os.path.join(work, "corpus"), exist_ok=True)
    with open(os.path.join(work, "corpus", "fa.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(fa[:300]) + "\n")

    def pt(out: str, *extra: str) -> list[str]:
        return script("pretrain/run_clm_pt_with_peft.py", "--model_name_or_path", model, "--dataset_dir",
                      os.path.join(work, "corpus"), "--output_dir", out, "--block_size", "32",
                      "--per_device_train_batch_size", "2", "--max_steps", "2", "--learning_rate", "1e-3",
                      "--save_strategy", "steps", "--save_steps", "2", "--report_to", "none",
                      "--sample_max_new_tokens", "0", "--use_cpu", "--training_mode", "lora", "--lora_rank", "4",
                      "--pad_vocab_to_multiple_of", "8", "--embedding_init", "mean", *extra)

    results = []

    def case(name: str, expect: int, rc: int, err: str, extra_ok: bool = True) -> None:
        tb = "Traceback" in err
        verdict = "ok" if rc == expect and extra_ok and not (tb and expect != 1) else \
            ("weak" if rc == expect else "bad")
        lines = [line for line in err.splitlines() if line.startswith("error:")] or err.strip().splitlines() or [""]
        results.append((name, expect, rc, tb, verdict, lines[-1][:110]))

    # 1. killed before the first checkpoint: only run_args.json is left; the same command reruns
    out = os.path.join(work, "killed")
    os.makedirs(out)
    with open(os.path.join(out, "run_args.json"), "w") as f:
        f.write("{}")
    rc, err = run(pt(out))
    case("1 rerun after kill before first checkpoint", 0, rc, err, os.path.isdir(out + ".attempt-1"))
    out = os.path.join(work, "neg_lr")
    rc, err = run(pt(out, "--learning_rate=-1e-3"))
    case("1 --learning_rate=-1e-3 (before model load)", 2, rc, err, not os.path.exists(out))
    rc, err = run(pt(out))
    case("1 corrected rerun", 0, rc, err)
    # 2. finished LoRA folder, rerun with other settings
    record = open(os.path.join(out, "run_args.json"), "rb").read()
    rc, err = run(pt(out, "--training_mode", "full", "--max_steps", "260"))
    case("2 resume with --training_mode full", 2, rc, err,
         open(os.path.join(out, "run_args.json"), "rb").read() == record and "--training_mode" in err)
    # 3. nothing to train
    rc, err = run(pt(os.path.join(work, "zero"), "--max_steps", "0", "--num_train_epochs", "0"))
    case("3 --max_steps 0 --num_train_epochs 0", 2, rc, err, not os.path.exists(os.path.join(work, "zero")))
    # 4. incomplete predictions
    data = os.path.join(work, "testset")
    os.makedirs(data)
    recs = [{"instruction": "احساس؟", "input": str(i), "output": "مثبت"} for i in range(24)]
    with open(os.path.join(data, "sentiment.json"), "w", encoding="utf-8") as f:
        json.dump(recs, f, ensure_ascii=False)
    preds = os.path.join(work, "preds")
    os.makedirs(preds)
    with open(os.path.join(preds, "run_args.json"), "w") as f:
        json.dump({"inference": {"data_dir": data}}, f)
    with open(os.path.join(preds, "sentiment.jsonl"), "w", encoding="utf-8") as f:
        for i in range(7):
            f.write(json.dumps({"id": i, "output": "مثبت", "answer": "مثبت"}, ensure_ascii=False) + "\n")
    rc, err = run(script("inference/score.py", "--predictions_dir", preds))
    case("4 score.py on 7 of 24 records", 2, rc, err, "7 of 24" in err)
    rc, err = run(script("inference/score.py", "--compare", f"a={preds}", "--output_dir", os.path.join(work, "cmp")))
    case("4 score.py --compare with an incomplete folder", 2, rc, err)
    # 5. perplexity on blank lines
    blank = os.path.join(work, "blank.txt")
    with open(blank, "w") as f:
        f.write("\n \n\n")
    rc, err = run(script("inference/perplexity.py", "--model_name_or_path", model, "--eval_files", blank,
                         "--output_dir", os.path.join(work, "ppl")))
    case("5 perplexity.py on blank lines", 2, rc, err, not os.path.exists(os.path.join(work, "ppl")))
    # 6. misspelled recipe variable
    recipe = os.path.join(work, "r.env")
    with open(recipe, "w") as f:
        f.write(f"RUN_DIR={work}/run\nBASE_MODEL={model}\nSTAGES=pt\nPT_KIND=pretrain\nPT_DATASET_DIR={work}/corpus\n")
    rc, err = run(["bash", os.path.join(REPO, "slurm", "pipeline.sh"), "--dry-run", recipe, "PT_LEARNIG_RATE=5e-1"])
    case("6 PT_LEARNIG_RATE=5e-1", 2, rc, err, "PT_LEARNING_RATE" in err)
    # 8. modes under umask 002
    out = os.path.join(work, "modes")
    rc, err = run(pt(out), umask=0o002)
    found = {stat.S_IMODE(os.stat(os.path.join(r, n)).st_mode) for r, ds, fs in os.walk(out) for n in ds + fs}
    case("8 umask 002: files 664, folders 775", 0, rc, err, found <= {0o664, 0o775})
    rc, err = run(script("inference/perplexity.py", "--model_name_or_path", model, "--eval_files",
                         os.path.join(work, "corpus", "fa.txt"), "--max_words", "50", "--output_dir",
                         os.path.join(work, "ppl_modes")), umask=0o002)
    case("8 umask 002: perplexity/ folder 775", 0, rc, err,
         stat.S_IMODE(os.stat(os.path.join(work, "ppl_modes")).st_mode) == 0o775)
    # 9. corpus without the target script
    en = os.path.join(work, "en.txt")
    with open(en, "w") as f:
        f.write("\n".join(tiny.english_corpus()[:300]) + "\n")
    rc, err = run(script("tokenizer/extract_vocab.py", "--train_file", en, "--vocab_size", "300",
                         "--output_dir", os.path.join(work, "addon")))
    case("9 extract_vocab.py on English only", 2, rc, err)
    nul = os.path.join(work, "nul.txt")
    with open(nul, "wb") as f:
        f.write(b"\x00" * 1000 + b"\n")
    rc, err = run(script("tokenizer/extract_vocab.py", "--train_file", nul, "--vocab_size", "300",
                         "--output_dir", os.path.join(work, "addon")))
    case("9 extract_vocab.py on NUL bytes", 2, rc, err)
    # weak ones
    with open(os.path.join(work, "afile"), "w") as f:
        f.write("x")
    rc, err = run(pt(os.path.join(work, "afile", "out")))
    case("w output under a file (pretrain)", 2, rc, err)
    rc, err = run(script("inference/inference.py", "--base_model", model, "--data_dir", data, "--predictions_dir",
                         os.path.join(work, "afile", "p")))
    case("w output under a file (inference)", 2, rc, err)
    rc, err = run(pt(os.path.join(work, "wandb"), "--report_to", "wandb"))
    case("w --report_to wandb without wandb", 2, rc, err)
    broken = os.path.join(work, "broken_model")
    shutil.copytree(model, broken)
    weights = os.path.join(broken, "model.safetensors")
    with open(weights, "r+b") as f:
        f.truncate(os.path.getsize(weights) // 2)
    rc, err = run(pt(os.path.join(work, "b"), "--model_name_or_path", broken))
    case("w truncated model.safetensors", 2, rc, err, "model.safetensors" in err)
    trunc = os.path.join(work, "neg_lr")  # finished, checkpoint-2; add a damaged checkpoint-4
    shutil.copytree(os.path.join(trunc, "checkpoint-2"), os.path.join(trunc, "checkpoint-4"))
    w = os.path.join(trunc, "checkpoint-4", "adapter_model.safetensors")
    with open(w, "r+b") as f:
        f.truncate(os.path.getsize(w) // 2)
    rc, err = run(pt(trunc, "--max_steps", "3"))
    case("w truncated last checkpoint falls back", 0, rc, err, "skipping" in err)
    os.makedirs(os.path.join(work, "ppl_exists", "x"))
    rc, err = run(script("inference/perplexity.py", "--model_name_or_path", model, "--eval_files",
                         os.path.join(work, "corpus", "fa.txt"), "--output_dir", os.path.join(work, "ppl_exists")))
    case("w perplexity advice names --overwrite_output_dir", 2, rc, err, "--overwrite_output_dir" in err)
    rc, err = run(pt(os.path.join(work, "m"), "--model_name_or_path", os.path.join(work, "no_model")))
    case("w missing base model names --model_name_or_path", 2, rc, err, "--model_name_or_path" in err)
    with open(os.path.join(work, "norun.env"), "w") as f:
        f.write("STAGES=pt\n")
    rc, err = run(["bash", os.path.join(REPO, "slurm", "pipeline.sh"), "--dry-run", os.path.join(work, "norun.env")])
    case("w pipeline.sh without RUN_DIR", 2, rc, err)
    rc, err = run(["bash", os.path.join(REPO, "slurm", "report.sbatch")])
    case("w launcher without a required variable", 2, rc, err)

    print("| case | expected | exit | traceback | verdict | message |\n|---|---|---|---|---|---|")
    for name, expect, rc, tb, verdict, msg in results:
        print(f"| {name} | {expect} | {rc} | {'yes' if tb else 'no'} | {verdict} | {msg.replace('|', '/')} |")
    counts = {v: sum(r[4] == v for r in results) for v in ("ok", "weak", "bad")}
    print(f"\n{len(results)} cases: {counts['ok']} ok, {counts['weak']} weak, {counts['bad']} bad")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
