"""The launchers on a real single-node Slurm (started by tests/slurm/start_slurm.sh), on the tiny model.

* The whole chain through ``slurm/pipeline.sh``: tokenizer -> pretrain -> merge -> sft -> merge, inference + scoring +
  perplexity for the base model and after each stage, the final table and report. Every launcher runs under sbatch.
* A failing stage cancels everything that depends on it (afterok + --kill-on-invalid-dep).
* Preemption: a pretraining job sent SIGUSR1 (what ``#SBATCH --signal=B:USR1@300`` delivers) forwards it to its
  training processes, which save a checkpoint at the step they reached and exit; the job requeues itself, resumes
  from that step with SLURM_RESTART_COUNT=1, and ends in the same state as an uninterrupted job.
* ``pipeline.sh --local`` (no Slurm; what the demo runs) and its rerun, which skips finished steps.

The Slurm tests are marked ``slurm``; they skip (with the reason) only when Slurm cannot be installed here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

from _resume_helpers import carries_mark, count_loss_lines, mark_checkpoint
from _slurm_helpers import REPO_ROOT, TEST_SBATCH_ARGS, slurm  # noqa: F401  (slurm is a fixture)

pytestmark = pytest.mark.slow

# Tiny-model settings shared by the tests: 2 optimizer steps, no mid-run evaluation, fp32 on CPU.
TINY_TRAINING = {"BLOCK_SIZE": "64", "PER_DEVICE_TRAIN_BATCH_SIZE": "2", "GRADIENT_ACCUMULATION_STEPS": "1",
                 "MAX_STEPS": "2", "EVAL_STRATEGY": "no", "SAVE_STEPS": "2", "LOGGING_STEPS": "1",
                 "LORA_RANK": "4", "LORA_ALPHA": "8", "ACTIVATION_CHECKPOINTING": "false", "REPORT_TO": "none",
                 "PAD_VOCAB_TO_MULTIPLE_OF": "8", "WARMUP_STEPS": "0"}


def _write_json_records(path: str, records: list[dict]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(records, f, ensure_ascii=False)


def _first_records(path: str, n: int) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        if path.endswith(".jsonl"):
            return [json.loads(line) for line in f if line.strip()][:n]
        return json.load(f)[:n]


@pytest.fixture(scope="module")
def tiny_inputs(tmp_path_factory, tiny_model_dir, persian_lines, english_lines) -> dict[str, str]:
    """Persian text, instruction data, two tiny test sets and held-out text, all from the repo's real data."""
    root = tmp_path_factory.mktemp("slurm_inputs")
    paths = {"model": tiny_model_dir, "root": str(root)}
    os.makedirs(root / "fa")
    (root / "fa" / "fa.txt").write_text("\n".join(persian_lines[:300]) + "\n", encoding="utf-8")
    paths["fa_dir"] = str(root / "fa")
    (root / "heldout").mkdir()
    (root / "heldout" / "fa.txt").write_text("\n".join(persian_lines[-20:]) + "\n", encoding="utf-8")
    (root / "heldout" / "en.txt").write_text("\n".join(english_lines[-20:]) + "\n", encoding="utf-8")
    paths["ppl_files"] = f"{root}/heldout/fa.txt,{root}/heldout/en.txt"
    sft = []
    for name in ("sentiment", "translation_fa_en"):
        sft += _first_records(os.path.join(REPO_ROOT, "data", "demo", f"{name}.jsonl"), 8)
    _write_json_records(str(root / "sft" / "train.json"), sft)
    paths["sft_dir"] = str(root / "sft")
    # Two small test sets, one per language, so the table has task x language columns.
    _write_json_records(str(root / "testset" / "fa" / "sentiment.json"),
                        _first_records(os.path.join(REPO_ROOT, "data", "testset", "fa", "sentiment.json"), 3))
    _write_json_records(str(root / "testset" / "en" / "translation_en_fa.json"),
                        _first_records(os.path.join(REPO_ROOT, "data", "testset", "en", "translation_en_fa.json"), 2))
    paths["testset"] = str(root / "testset")
    return paths


def _recipe(path, lines: dict[str, str]) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for key, value in lines.items():
            f.write(f"{key}={json.dumps(value)}\n")  # a JSON string is a valid double-quoted bash string here
    return str(path)


def _stage_vars(prefix: str, values: dict[str, str]) -> dict[str, str]:
    return {f"{prefix}_{k}": v for k, v in values.items()}


def _submit_pipeline(slurm, recipe: str, tmp_path) -> dict[str, str]:
    """Run pipeline.sh (Slurm mode); return {step: job id} from the table it prints."""
    proc = slurm.run(["bash", os.path.join(REPO_ROOT, "slurm", "pipeline.sh"), recipe], cwd=str(tmp_path))
    jobs = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"^(\S+)\s+(\d+)(\s+afterok:[\d:]+)?\s*$", line)
        if m:
            jobs[m.group(1)] = m.group(2)
    assert jobs, proc.stdout + proc.stderr
    return jobs


@pytest.mark.slurm
def test_pipeline_chain_completes_with_final_table(slurm, tiny_inputs, tmp_path):
    run = tmp_path / "run"
    recipe = _recipe(tmp_path / "chain.env", {
        "RUN_DIR": str(run), "BASE_MODEL": tiny_inputs["model"], "STAGES": "pretrain sft",
        "LOG_DIR": str(tmp_path / "logs"), "SBATCH_ARGS": " ".join(TEST_SBATCH_ARGS),
        "TOKENIZER_TRAIN_FILE": tiny_inputs["fa_dir"], "TOKENIZER_VOCAB_SIZE": "1050",
        "TOKENIZER_EVAL_FILE": tiny_inputs["ppl_files"],
        "PRETRAIN_KIND": "pretrain", "PRETRAIN_DATASET_DIR": tiny_inputs["fa_dir"],
        **_stage_vars("PRETRAIN", TINY_TRAINING),
        # SFT on a new adapter over the merged pretraining model: exercises merge.sbatch inside the chain.
        "SFT_KIND": "sft", "SFT_FROM": "merged:pretrain", "SFT_DATASET_DIR": tiny_inputs["sft_dir"],
        "SFT_MAX_SEQ_LENGTH": "128",
        **_stage_vars("SFT", {k: v for k, v in TINY_TRAINING.items() if k != "BLOCK_SIZE"}),  # SFT has no block size
        "EVAL_DATA_DIR": tiny_inputs["testset"], "EVAL_MAX_NEW_TOKENS": "4", "EVAL_BATCH_SIZE": "4",
        "EVAL_PERPLEXITY_FILES": tiny_inputs["ppl_files"], "EVAL_PERPLEXITY_MAX_WORDS": "200",
        "MERGE_FINAL": "true",
    })
    jobs = _submit_pipeline(slurm, recipe, tmp_path)
    assert list(jobs) == ["tokenizer", "eval_base", "eval_base_merged", "pretrain", "eval_pretrain",
                          "merge_pretrain", "sft", "eval_sft", "merge_sft", "report"]
    for step, job in jobs.items():
        info = slurm.wait(job, timeout=420)
        assert info["JobState"] == "COMPLETED" and slurm.exit_code(info) == 0, f"{step}\n{slurm.log_tail(info)}"

    # The final table: rows base + each stage, columns task x language.
    table = json.load(open(run / "scores" / "comparison.json", encoding="utf-8"))
    markdown = (run / "scores" / "comparison.md").read_text(encoding="utf-8")
    for row in ("base", "pretrain", "sft"):
        assert re.search(rf"^\|\s*{row}\s*\|", markdown, flags=re.M), markdown
    assert len(table["columns"]) == 2, table["columns"]
    assert (run / "scores" / "comparison.png").stat().st_size > 0
    report = (run / "report.md").read_text(encoding="utf-8")
    assert "Task scores" in report and "Held-out perplexity" in report
    # Every stage's output, the merged models, perplexity per stage, and the wall times.
    assert (run / "tokenizer" / "langadapt_tokenizer.json").is_file()
    for stage in ("pretrain", "sft"):
        assert (run / stage / "adapter_model.safetensors").is_file()
        assert (run / f"{stage}_merged" / "merge_report.json").is_file()
        assert (run / "predictions" / stage / "scores.json").is_file()
    for name in ("base", "base_merged", "pretrain", "sft"):
        assert (run / "perplexity" / name / "perplexity.json").is_file(), name
    timings = json.load(open(run / "timings.json", encoding="utf-8"))
    assert set(jobs) - {"report"} <= set(timings["stages"]), timings
    # Provenance: the job id reached the stage's run_args.json; the banner logged the restart count.
    run_args = json.load(open(run / "pretrain" / "run_args.json", encoding="utf-8"))
    assert run_args["run"]["slurm_job_id"] == jobs["pretrain"]
    assert "SLURM_RESTART_COUNT=0" in open(slurm.show(jobs["pretrain"])["StdOut"], encoding="utf-8").read()


@pytest.mark.slurm
def test_failing_stage_cancels_the_rest_of_the_chain(slurm, tiny_inputs, tmp_path):
    run = tmp_path / "run"
    recipe = _recipe(tmp_path / "fail.env", {
        "RUN_DIR": str(run), "BASE_MODEL": tiny_inputs["model"], "STAGES": "pretrain sft",
        "LOG_DIR": str(tmp_path / "logs"), "SBATCH_ARGS": " ".join(TEST_SBATCH_ARGS), "EVAL_DATA_DIR": "none",
        # A dataset folder that is gone by the time the job starts: the launcher's banner step stops it (exit 2).
        "PRETRAIN_KIND": "pretrain", "PRETRAIN_DATASET_DIR": str(tmp_path / "gone"),
        "SFT_KIND": "sft", "SFT_DATASET_DIR": tiny_inputs["sft_dir"], "MERGE_FINAL": "true",
    })
    jobs = _submit_pipeline(slurm, recipe, tmp_path)
    assert list(jobs) == ["pretrain", "sft", "merge_sft", "report"]
    info = slurm.wait(jobs["pretrain"], timeout=120)
    assert info["JobState"] == "FAILED" and slurm.exit_code(info) == 2, slurm.log_tail(info)
    assert "DATASET_DIR" in open(info["StdOut"], encoding="utf-8").read()
    for step in ("sft", "merge_sft", "report"):
        dep = slurm.wait(jobs[step], timeout=60)
        assert dep["JobState"] == "CANCELLED", f"{step}: {dep.get('JobState')} ({dep.get('Reason')})"
    assert not (run / "sft").exists()


def _adapter_tensors(folder) -> dict:
    from safetensors.torch import load_file

    return load_file(os.path.join(folder, "adapter_model.safetensors"))


def _last_loss(folder) -> tuple[int, float]:
    state = json.load(open(os.path.join(folder, "trainer_state.json"), encoding="utf-8"))
    logged = [e for e in state["log_history"] if "loss" in e]
    return state["global_step"], logged[-1]["loss"]


@pytest.mark.slurm
def test_usr1_preemption_saves_at_the_signal_step_requeues_and_resumes_to_the_same_state(slurm, tiny_inputs, tmp_path):
    # Long enough (40 steps) that the signal lands mid-run, short enough for a test. No periodic checkpoint
    # (SAVE_STEPS > MAX_STEPS): the only checkpoint is the one the signal asks for.
    settings = {**TINY_TRAINING, "MAX_STEPS": "40", "SAVE_STEPS": "1000", "BLOCK_SIZE": "128",
                "PER_DEVICE_TRAIN_BATCH_SIZE": "4", "GRADIENT_ACCUMULATION_STEPS": "4", "SAVE_TOTAL_LIMIT": "10"}
    env = {**settings, "MODEL_NAME_OR_PATH": tiny_inputs["model"], "DATASET_DIR": tiny_inputs["fa_dir"]}
    logs = str(tmp_path / "logs")
    script = os.path.join(REPO_ROOT, "slurm", "pretrain.sbatch")
    reference = slurm.submit([script], log_dir=logs, env={**env, "OUTPUT_DIR": str(tmp_path / "reference"),
                                                          "DATA_CACHE_DIR": str(tmp_path / "cache_reference")})
    out = tmp_path / "preempted"
    job = slurm.submit([script], log_dir=logs, env={**env, "OUTPUT_DIR": str(out),
                                                    "DATA_CACHE_DIR": str(tmp_path / "cache_preempted")})

    # Send the warning signal (what --signal=B:USR1@300 does before the limit) a few optimizer steps in: the
    # Trainer logs every step (LOGGING_STEPS=1), so the log's loss lines count the steps done.
    deadline = time.monotonic() + 300
    while True:
        info = slurm.show(job)
        assert info.get("JobState") in ("PENDING", "RUNNING"), slurm.log_tail(info)
        text = open(info["StdOut"], encoding="utf-8", errors="replace").read() if os.path.isfile(
            info.get("StdOut", "")) else ""
        steps_done = text.count("'loss'")
        if steps_done >= 3:
            break
        assert time.monotonic() < deadline, "no 3 logged steps after 300 s\n" + slurm.log_tail(info)
        time.sleep(0.2)
    slurm.run(["scancel", "--signal=USR1", "--batch", job])
    info = slurm.wait(job, timeout=120, states={"PENDING", "REQUEUED", "COMPLETED", "FAILED"})
    assert info["JobState"] != "COMPLETED", "the job finished before the signal took effect; make it longer"
    info = slurm.wait(job, timeout=60, states={"PENDING"})
    assert info["Restarts"] == "1", info
    # The checkpoint is the step reached when the signal came (the step in progress finishes first), not a
    # SAVE_STEPS multiple; it is the only one.
    checkpoints = sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint-"))
    assert len(checkpoints) == 1, checkpoints
    saved_step = int(checkpoints[0].split("-")[1])
    assert steps_done <= saved_step <= steps_done + 2 and saved_step < 40, (steps_done, saved_step)
    log = open(info["StdOut"], encoding="utf-8", errors="replace").read()
    assert f"preempted: saving checkpoint-{saved_step} at step {saved_step}" in log, log[-3000:]
    assert "forwarding it to the training processes" in log
    # Slurm holds a requeued batch job for about 120 s (BeginTime); release it now instead of waiting, but not in the
    # second of the requeue: slurmd refuses a job credential made in the same second the old one was revoked.
    mark_checkpoint(str(out / checkpoints[0]))  # carried into the final state only if the requeued run loads it
    time.sleep(2)
    slurm.run(["scontrol", "update", f"JobId={job}", "StartTime=now"])

    for job_id in (job, reference):
        info = slurm.wait(job_id, timeout=420)
        assert info["JobState"] == "COMPLETED" and slurm.exit_code(info) == 0, slurm.log_tail(info)
    log = open(slurm.show(job)["StdOut"], encoding="utf-8", errors="replace").read()  # a kill can cut a character
    assert "SLURM_RESTART_COUNT=0" in log and "SLURM_RESTART_COUNT=1" in log, "both runs logged, in one file"
    assert "requeueing job" in log
    # The requeued run computed only the steps after the checkpoint (the Trainer prints a loss line per step), from
    # the checkpoint's trainer state: a restart from step 0 would log 40 more and lose the mark.
    assert count_loss_lines(log.split("SLURM_RESTART_COUNT=1", 1)[1]) == 40 - saved_step
    assert carries_mark(str(out))
    run_args = json.load(open(out / "run_args.json", encoding="utf-8"))
    assert run_args["run"]["slurm_restart_count"] == "1"
    assert str(run_args["resolved"]["resumed_from"]).endswith(f"checkpoint-{saved_step}"), run_args["resolved"]

    # Same final state as the uninterrupted run: step, last logged loss, adapter weights.
    step, loss = _last_loss(out)
    ref_step, ref_loss = _last_loss(tmp_path / "reference")
    assert step == ref_step == 40
    assert loss == pytest.approx(ref_loss, abs=1e-5)
    got, want = _adapter_tensors(out), _adapter_tensors(tmp_path / "reference")
    assert got.keys() == want.keys()
    for name in want:
        assert (got[name] - want[name]).abs().max().item() < 1e-5, name


@pytest.mark.slurm
def test_sbatch_without_required_variable_fails_naming_it(slurm, tmp_path):
    """sbatch slurm/x.sbatch by hand (no pipeline): the launcher finds its checkout from the job's Command, and a
    missing required variable fails the job at once with the variable and an example named."""
    logs = str(tmp_path / "logs")
    os.makedirs(logs)
    job = slurm.submit([os.path.join(REPO_ROOT, "slurm", "report.sbatch")], env={}, log_dir=logs)
    info = slurm.wait(job, timeout=60)
    assert info["JobState"] == "FAILED"
    text = open(info["StdOut"], encoding="utf-8").read()
    assert "RUN_DIR" in text and "e.g." in text


def test_local_pipeline_runs_and_a_rerun_skips_finished_steps(tiny_inputs, tmp_path):
    """``pipeline.sh --local`` (what the demo uses): the same launchers with bash, one after another; run again, every
    finished step is skipped. Needs no Slurm."""
    run = tmp_path / "run"
    recipe = _recipe(tmp_path / "local.env", {
        "RUN_DIR": str(run), "BASE_MODEL": tiny_inputs["model"], "STAGES": "pretrain",
        "LOG_DIR": str(tmp_path / "logs"), "PRETRAIN_KIND": "pretrain", "PRETRAIN_DATASET_DIR": tiny_inputs["fa_dir"],
        **_stage_vars("PRETRAIN", TINY_TRAINING), "EVAL_DATA_DIR": tiny_inputs["testset"],
        "EVAL_MAX_NEW_TOKENS": "4", "MERGE_FINAL": "false",
    })
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
    cmd = ["bash", os.path.join(REPO_ROOT, "slurm", "pipeline.sh"), "--local", recipe]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    for step in ("eval_base", "pretrain", "eval_pretrain", "report"):
        assert (tmp_path / "logs" / f"la-{step}.log").is_file(), step
    assert (run / "pretrain" / "all_results.json").is_file()
    markdown = (run / "scores" / "comparison.md").read_text(encoding="utf-8")
    assert re.search(r"^\|\s*pretrain\s*\|", markdown, flags=re.M), markdown
    assert set(json.load(open(run / "timings.json"))["stages"]) == {"eval_base", "pretrain", "eval_pretrain"}

    again = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-5000:]
    for step in ("eval_base", "pretrain", "eval_pretrain"):
        assert f"step {step}: already complete" in again.stderr, step


def test_local_four_stage_recipe_gives_a_row_per_stage(tiny_inputs, tmp_path):
    """Issue 9's recipe shape on the tiny model: Persian pretraining -> bilingual pretraining (same adapter) ->
    bilingual SFT (same adapter) -> task SFT on a new adapter over the merged stage-3 model, each evaluated, with the
    bilingual data made by data/prepare_parallel.py from the bundled sources. One table row per stage."""
    parallel = tmp_path / "parallel"
    prep = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "data", "prepare_parallel.py"),
         "--output_dir", str(parallel)], capture_output=True, text=True, timeout=300)
    assert prep.returncode == 0, prep.stderr[-3000:]
    run = tmp_path / "run"
    stages = {"PT_FA": ("pretrain", tiny_inputs["fa_dir"]), "PT_BI": ("pretrain", str(parallel / "pretrain")),
              "SFT_BI": ("sft", str(parallel / "sft")), "SFT_TASK": ("sft", tiny_inputs["sft_dir"])}
    lines = {"RUN_DIR": str(run), "BASE_MODEL": tiny_inputs["model"], "STAGES": "pt_fa pt_bi sft_bi sft_task",
             "LOG_DIR": str(tmp_path / "logs"), "EVAL_DATA_DIR": tiny_inputs["testset"], "EVAL_MAX_NEW_TOKENS": "4",
             "MERGE_FINAL": "false", "SFT_TASK_FROM": "merged:sft_bi"}
    for prefix, (kind, data) in stages.items():
        lines.update({f"{prefix}_KIND": kind, f"{prefix}_DATASET_DIR": data, **_stage_vars(prefix, TINY_TRAINING)})
    for prefix in ("SFT_BI", "SFT_TASK"):  # the SFT launcher has no BLOCK_SIZE; its sequence cap is MAX_SEQ_LENGTH
        del lines[f"{prefix}_BLOCK_SIZE"]
        lines[f"{prefix}_MAX_SEQ_LENGTH"] = "384"  # the tiny English tokenizer spells Persian in bytes
    recipe = _recipe(tmp_path / "four.env", lines)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
    proc = subprocess.run(["bash", os.path.join(REPO_ROOT, "slurm", "pipeline.sh"), "--local", recipe], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    # Stages 2 and 3 kept training the adapter they started from; stage 4 started on the merged stage-3 model.
    for stage, parent in (("pt_bi", "pt_fa"), ("sft_bi", "pt_bi")):
        run_args = json.load(open(run / stage / "run_args.json", encoding="utf-8"))
        assert run_args["adaptation"]["peft_path"].rstrip("/").endswith(parent), run_args["adaptation"]
    assert (run / "sft_bi_merged" / "config.json").is_file()
    markdown = (run / "scores" / "comparison.md").read_text(encoding="utf-8")
    for row in ("base", "pt_fa", "pt_bi", "sft_bi", "sft_task"):
        assert re.search(rf"^\|\s*{row}\s*\|", markdown, flags=re.M), (row, markdown)
