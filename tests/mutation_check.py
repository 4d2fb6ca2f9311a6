"""Mutation check: break the wiring between the scripts and the library on purpose, and check the tests notice.

Each mutation below is one realistic slip (a resume that silently restarts, packing that leaks across examples,
inference that stops normalizing). The check copies the repository's files (tracked and untracked-but-not-ignored)
into a scratch folder, runs the targeted tests there once unmodified (they must pass), then applies each mutation
alone and runs its targeted tests again (they must fail). The working tree is never touched.

    python tests/mutation_check.py                 # every mutation (about 5-10 min on 2 cores)
    python tests/mutation_check.py --only sft_     # mutations whose name starts with sft_
    make mutation                                  # the same; also run by tests/test_mutation_check.py (slow)

Exit status 0 when every mutation is caught and the unmodified copy passes, 1 otherwise (a table says which).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class Mutation:
    """Replace ``old`` (which must occur exactly once) by ``new`` in ``path``; ``tests`` must then fail."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    why: str


PRETRAIN_RESUME = ("tests/test_pretrain_script.py::test_resume_matches_an_unbroken_run",
                   "tests/test_pretrain_script.py::test_preemption_signal_saves_at_the_next_step_and_exits_75")
SFT_RESUME = ("tests/test_sft_script.py::test_resume_matches_an_unbroken_run",)
SFT_PACKING = ("tests/test_sft_script.py::test_packing_gives_the_same_loss_as_padding",)
GENERATION_RAW = ("tests/test_generation.py::test_raw_persian_prompts_encode_like_normalized_text",
                  "tests/test_inference_cli.py::test_raw_persian_test_sets_reach_the_model_normalized",
                  "tests/test_inference_cli.py::test_interactive_normalizes_raw_persian")
PERPLEXITY_RAW = ("tests/test_perplexity.py::test_script_scores_raw_persian_as_its_normalized_text",)
LM_EVAL_RAW = ("tests/test_lm_eval.py::test_requests_are_normalized_as_training_text_was",)
SP_CROSS = ("tests/test_vocab_merge.py::test_sp_cross_merge_completes_a_base_piece_only_a_new_half_reaches",)

MUTATIONS = (
    Mutation("pretrain_restarts_instead_of_resuming", "pretrain/run_clm_pt_with_peft.py",
             "trainer.train(resume_from_checkpoint=checkpoint)", "trainer.train()", PRETRAIN_RESUME,
             "a requeued job would silently redo every step before its checkpoint"),
    Mutation("sft_restarts_instead_of_resuming", "sft/run_clm_sft_with_peft.py",
             "trainer.train(resume_from_checkpoint=checkpoint)", "trainer.train()", SFT_RESUME,
             "a requeued SFT job would silently redo every step before its checkpoint"),
    Mutation("sft_final_evaluation_with_kv_cache", "sft/run_clm_sft_with_peft.py",
             "    model.config.use_cache = False  # the final evaluation below runs on packed batches too\n", "",
             SFT_PACKING, "packed evaluation examples would attend to each other"),
    Mutation("sft_packing_accepts_use_cache", "sft/run_clm_sft_with_peft.py",
             "if data_args.packing and training_args.use_cache:", "if False:", SFT_PACKING,
             "--use_cache True would make packed training examples attend to each other"),
    Mutation("generator_stops_normalizing", "langadapt/generation.py",
             "NormalizerConfig.from_dir(\n            tokenizer.name_or_path or \".\", default=NormalizerConfig())",
             "NormalizerConfig.disabled()", GENERATION_RAW,
             "raw user text (Arabic yeh/kaf, ZWNJ) would reach the model un-normalized"),
    Mutation("perplexity_stops_normalizing", "inference/perplexity.py",
             "normalizer = NormalizerConfig.from_dir(tok_path)", "normalizer = None", PERPLEXITY_RAW,
             "held-out text would be scored un-normalized"),
    Mutation("lm_eval_stops_normalizing", "langadapt/lm_eval_tasks.py",
             "            if normalizer is not None:\n", "            if False:\n", LM_EVAL_RAW,
             "lm-eval requests would reach the model un-normalized"),
    Mutation("sp_merge_drops_cross_merges", "langadapt/vocab_merge.py",
             "cross = _cross_merges(base_merges, vocab, set(kept), sp_score)", "cross = []", SP_CROSS,
             "HF would stop at a new half where sentencepiece completes the base piece (ids disagree)"),
)


def repo_files(root: str) -> list[str]:
    """The repository's files: tracked plus untracked-but-not-ignored (git), else everything but caches."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                             capture_output=True, check=True).stdout.decode()
        return sorted({f for f in out.split("\0") if f and os.path.isfile(os.path.join(root, f))})
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "outputs", ".pytest_cache", "__pycache__", ".cache"}
        files = []
        for d, dirs, names in os.walk(root):
            dirs[:] = [x for x in dirs if x not in skip]
            files += [os.path.relpath(os.path.join(d, n), root) for n in names]
        return sorted(files)


def copy_repo(root: str, dest: str) -> None:
    for rel in repo_files(root):
        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
        shutil.copy2(os.path.join(root, rel), os.path.join(dest, rel))


def run_tests(copy: str, tests: tuple[str, ...]) -> subprocess.CompletedProcess:
    """pytest on ``tests`` inside the copy, importing the copy's ``langadapt`` (PYTHONPATH first)."""
    env = {**os.environ, "PYTHONPATH": copy, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                          cwd=copy, env=env, capture_output=True, text=True)


def apply(copy: str, m: Mutation) -> str:
    """Apply ``m`` in the copy; returns the original text (to restore)."""
    path = os.path.join(copy, m.path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.count(m.old) != 1:
        raise SystemExit(f"mutation {m.name}: {m.old!r} occurs {text.count(m.old)} times in {m.path}, not once; "
                         "update tests/mutation_check.py to the code")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace(m.old, m.new))
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="Run only the mutations whose name starts with this.")
    args = parser.parse_args(argv)
    mutations = [m for m in MUTATIONS if m.name.startswith(args.only)]
    if not mutations:
        parser.error(f"--only {args.only!r} matches no mutation; names: {', '.join(m.name for m in MUTATIONS)}")
    rows, ok = [], True
    with tempfile.TemporaryDirectory(prefix="langadapt-mutation-") as copy:
        copy_repo(REPO_ROOT, copy)
        probe = subprocess.run([sys.executable, "-c", "import langadapt; print(langadapt.__file__)"], cwd=copy,
                               env={**os.environ, "PYTHONPATH": copy}, capture_output=True, text=True)
        if not probe.stdout.startswith(copy):
            raise SystemExit(f"the copy's langadapt is not the one imported ({probe.stdout.strip()})")
        targeted = tuple(dict.fromkeys(t for m in mutations for t in m.tests))
        start = time.monotonic()
        clean = run_tests(copy, targeted)
        rows.append(("(unmodified)", "pass" if clean.returncode == 0 else "FAIL", time.monotonic() - start))
        if clean.returncode != 0:
            ok = False
            print(clean.stdout[-4000:], clean.stderr[-2000:], sep="\n")
        for m in mutations:
            original = apply(copy, m)
            start = time.monotonic()
            try:
                result = run_tests(copy, m.tests)
            finally:
                with open(os.path.join(copy, m.path), "w", encoding="utf-8") as f:
                    f.write(original)
            caught = result.returncode == 1  # 1: tests failed; other codes are errors (collection, usage)
            ok &= caught
            rows.append((m.name, "caught" if caught else f"MISSED (pytest exit {result.returncode})",
                         time.monotonic() - start))
            if not caught:
                print(f"--- {m.name}: {m.why}\n{result.stdout[-3000:]}")
    width = max(len(r[0]) for r in rows)
    for name, status, seconds in rows:
        print(f"{name:<{width}}  {status:<10}  {seconds:6.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
