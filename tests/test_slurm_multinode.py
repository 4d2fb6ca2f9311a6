"""The training launchers across two Slurm nodes (tests/slurm/start_two_nodes.sh), tiny model, CPU, gloo.

* ``slurm/pretrain.sbatch`` with ``--nodes=2`` (one torchrun per node, rendezvous on the first node) gives the same
  loss curve, step count, tokens per step and adapter as a one-node run with the same global batch (one process,
  twice the gradient accumulation).
* SIGUSR1 to the two-node job: both nodes stop at the same step, one checkpoint is written, the job requeues, and the
  resumed two-node run ends in the same state as the unbroken one.
* ``slurm/sft.sbatch`` with ``--nodes=2`` matches its one-node run likewise.
* A node killed mid-run: the job stops within a bound (no hang), and the requeued job resumes on both nodes from the
  last complete checkpoint and ends in the unbroken run's state.

Each test uses OMP_NUM_THREADS=1 and one core per node; marked slow and slurm. They skip (with the reason) only when a
two-node cluster cannot run here, unless LANGADAPT_REQUIRE_SLURM=1.
"""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from _slurm_helpers import REPO_ROOT
from _slurm_multinode_helpers import two_nodes  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

PRETRAIN = os.path.join(REPO_ROOT, "slurm", "pretrain.sbatch")
SFT = os.path.join(REPO_ROOT, "slurm", "sft.sbatch")
# Long enough (40 optimizer steps) that a signal or a kill lands mid-run; no dropout, so runs with different
# process counts draw no different random numbers; no held-out split (nothing to evaluate at the end).
TRAINING = {"BLOCK_SIZE": "128", "PER_DEVICE_TRAIN_BATCH_SIZE": "4", "MAX_STEPS": "40", "EVAL_STRATEGY": "no",
            "SAVE_STEPS": "1000", "SAVE_TOTAL_LIMIT": "10", "LOGGING_STEPS": "1", "LORA_RANK": "4", "LORA_ALPHA": "8",
            "LORA_DROPOUT": "0", "ACTIVATION_CHECKPOINTING": "false", "REPORT_TO": "none",
            "PAD_VOCAB_TO_MULTIPLE_OF": "8", "WARMUP_STEPS": "0", "VALIDATION_SPLIT_PERCENTAGE": "0",
            "OMP_NUM_THREADS": "1"}
# Global batch: 4 sequences x 2 accumulation x 2 nodes = 4 x 4 x 1 node = 16 sequences of 128 tokens per step.
TWO_NODES_ACCUMULATION, ONE_NODE_ACCUMULATION = "2", "4"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_model_dir, persian_lines) -> dict[str, str]:
    """Persian text (enough that 40 steps of 16 x 128 tokens stay in the first epoch) and instruction data."""
    root = tmp_path_factory.mktemp("multinode_inputs")
    (root / "fa").mkdir()
    (root / "fa" / "fa.txt").write_text("\n".join(persian_lines[:3000]) + "\n", encoding="utf-8")
    records = []
    for name in ("sentiment", "translation_fa_en"):
        with open(os.path.join(REPO_ROOT, "data", "demo", f"{name}.jsonl"), encoding="utf-8") as f:
            records += [json.loads(line) for line in f if line.strip()][:12]
    (root / "sft").mkdir()
    (root / "sft" / "train.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return {"model": tiny_model_dir, "fa_dir": str(root / "fa"), "sft_dir": str(root / "sft")}


def _submit(cluster, script: str, nodes: int, env: dict[str, str], tmp_path) -> str:
    return cluster.submit([f"--nodes={nodes}", script], env=env, log_dir=str(tmp_path / "logs"))


def _log(cluster, job: str) -> str:
    path = cluster.show(job).get("StdOut", "")
    # A killed process can cut a character in half: read leniently.
    return open(path, encoding="utf-8", errors="replace").read() if os.path.isfile(path) else ""


def _completed(cluster, job: str, timeout: float = 420) -> dict[str, str]:
    info = cluster.wait(job, timeout=timeout)
    assert info["JobState"] == "COMPLETED" and cluster.exit_code(info) == 0, cluster.log_tail(info, 120)
    return info


def _state(folder) -> dict:
    return json.load(open(os.path.join(folder, "trainer_state.json"), encoding="utf-8"))


def _losses(folder) -> list[tuple[int, float]]:
    return [(e["step"], e["loss"]) for e in _state(folder)["log_history"] if "loss" in e]


def _adapter(folder) -> dict:
    from safetensors.torch import load_file

    return load_file(os.path.join(folder, "adapter_model.safetensors"))


def _assert_same_training(got, want, loss_tol: float, weight_tol: float) -> None:
    """Same steps, loss at every logged step within ``loss_tol``, adapter tensors within ``weight_tol``."""
    got_losses, want_losses = _losses(got), _losses(want)
    assert [s for s, _ in got_losses] == [s for s, _ in want_losses]
    for (step, a), (_, b) in zip(got_losses, want_losses):
        assert a == pytest.approx(b, abs=loss_tol), f"step {step}: {a} vs {b}"
    a, b = _adapter(got), _adapter(want)
    assert a.keys() == b.keys()
    for name in b:
        assert (a[name] - b[name]).abs().max().item() < weight_tol, name


def _pretrain_env(inputs, out, cache, accumulation: str, **extra) -> dict[str, str]:
    return {**TRAINING, "GRADIENT_ACCUMULATION_STEPS": accumulation, "MODEL_NAME_OR_PATH": inputs["model"],
            "DATASET_DIR": inputs["fa_dir"], "OUTPUT_DIR": str(out), "DATA_CACHE_DIR": str(cache), **extra}


@pytest.fixture(scope="module")
def unbroken(two_nodes, inputs, tmp_path_factory):  # noqa: F811
    """The reference runs, submitted together: pretraining on two nodes and on one node with the same global batch."""
    root = tmp_path_factory.mktemp("multinode_unbroken")
    runs = {"two": root / "two_nodes", "one": root / "one_node"}
    jobs = {
        "two": _submit(two_nodes, PRETRAIN, 2, _pretrain_env(inputs, runs["two"], root / "cache_two",
                                                             TWO_NODES_ACCUMULATION), root),
        "one": _submit(two_nodes, PRETRAIN, 1, _pretrain_env(inputs, runs["one"], root / "cache_one",
                                                             ONE_NODE_ACCUMULATION), root),
    }
    for job in jobs.values():
        _completed(two_nodes, job)
    return {"runs": runs, "jobs": jobs}


def test_pretrain_on_two_nodes_equals_one_node_with_the_same_global_batch(two_nodes, unbroken):  # noqa: F811
    two, one = unbroken["runs"]["two"], unbroken["runs"]["one"]
    log = _log(two_nodes, unbroken["jobs"]["two"])
    # Topology from Slurm: one torchrun per node, rendezvous at the first node of the list, each node's lines labelled.
    assert "nodes=2 nodelist=la2n[1-2]" in log and "MASTER_ADDR=la2n1" in log, log[:3000]
    assert "--nnodes=2 --nproc_per_node=1" in log and "--rdzv_endpoint=la2n1:" in log
    assert re.search(r"^ *0: ", log, flags=re.M) and re.search(r"^ *1: ", log, flags=re.M), "srun --label per node"
    # Only global rank 0 wrote the outputs, once, and says where it ran; the world was two processes.
    run_args = json.load(open(two / "run_args.json", encoding="utf-8"))
    assert run_args["run"]["host"] in two_nodes.nodes
    one_args = json.load(open(one / "run_args.json", encoding="utf-8"))
    # Same tokens: the same tokens per optimizer step and the same number of steps.
    assert run_args["resolved"]["tokens_per_step"] == one_args["resolved"]["tokens_per_step"] == 16 * 128
    assert _state(two)["global_step"] == _state(one)["global_step"] == 40
    # Same curve: the two setups sum the same 16 sequences per step in a different order (float rounding only).
    _assert_same_training(two, one, loss_tol=1e-4, weight_tol=1e-4)


def _wait_for_steps(cluster, job: str, steps: int, timeout: float = 300) -> int:
    """Poll the job log until the Trainer (LOGGING_STEPS=1) has logged ``steps`` losses; returns the count seen."""
    deadline = time.monotonic() + timeout
    while True:
        info = cluster.show(job)
        assert info.get("JobState") in ("PENDING", "RUNNING"), cluster.log_tail(info)
        done = _log(cluster, job).count("'loss'")
        if done >= steps:
            return done
        assert time.monotonic() < deadline, f"no {steps} logged steps after {timeout:.0f}s\n" + cluster.log_tail(info)
        time.sleep(0.2)


def _release(cluster, job: str) -> None:
    """Start a requeued job now rather than after Slurm's ~120 s hold (not in the second of the requeue: slurmd refuses
    a credential made in the second the old one was revoked)."""
    time.sleep(2)
    cluster.run(["scontrol", "update", f"JobId={job}", "StartTime=now"])


def test_usr1_on_two_nodes_saves_once_requeues_and_resumes_to_the_unbroken_state(
        two_nodes, inputs, unbroken, tmp_path):  # noqa: F811
    out = tmp_path / "preempted"
    job = _submit(two_nodes, PRETRAIN, 2, _pretrain_env(inputs, out, tmp_path / "cache", TWO_NODES_ACCUMULATION),
                  tmp_path)
    steps_done = _wait_for_steps(two_nodes, job, 3)
    two_nodes.run(["scancel", "--signal=USR1", "--batch", job])
    info = two_nodes.wait(job, timeout=120, states={"PENDING", "REQUEUED", "COMPLETED", "FAILED"})
    assert info["JobState"] != "COMPLETED", "the job finished before the signal took effect; make it longer"
    info = two_nodes.wait(job, timeout=60, states={"PENDING"})
    assert info["Restarts"] == "1", info
    # Both nodes stopped at the same step (the forwarded signal reaches every node's processes; the ranks agree on
    # the step), and exactly one checkpoint was written.
    checkpoints = sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint-"))
    assert len(checkpoints) == 1, checkpoints
    saved = int(checkpoints[0].split("-")[1])
    assert steps_done <= saved < 40, (steps_done, saved)
    log = _log(two_nodes, job)
    assert "forwarding it to the training processes" in log
    assert f"preempted: saving checkpoint-{saved} at step {saved}" in log, log[-3000:]
    _release(two_nodes, job)

    _completed(two_nodes, job)
    log = _log(two_nodes, job)
    assert "SLURM_RESTART_COUNT=0" in log and "SLURM_RESTART_COUNT=1" in log and "requeueing job" in log
    run_args = json.load(open(out / "run_args.json", encoding="utf-8"))
    assert str(run_args["resolved"]["resumed_from"]).endswith(f"checkpoint-{saved}"), run_args["resolved"]
    assert _state(out)["global_step"] == 40
    _assert_same_training(out, unbroken["runs"]["two"], loss_tol=1e-5, weight_tol=1e-5)


def test_sft_on_two_nodes_equals_one_node_with_the_same_global_batch(two_nodes, inputs, tmp_path):  # noqa: F811
    settings = {**TRAINING, "MAX_STEPS": "4", "PER_DEVICE_TRAIN_BATCH_SIZE": "2", "MAX_SEQ_LENGTH": "384",
                "MODEL_NAME_OR_PATH": inputs["model"], "DATASET_DIR": inputs["sft_dir"]}
    del settings["BLOCK_SIZE"], settings["VALIDATION_SPLIT_PERCENTAGE"]  # pretraining-only variables
    # Global batch: 2 examples x 1 accumulation x 2 nodes = 2 x 2 x 1 node = 4 examples per step.
    two = _submit(two_nodes, SFT, 2, {**settings, "GRADIENT_ACCUMULATION_STEPS": "1",
                                      "OUTPUT_DIR": str(tmp_path / "two_nodes")}, tmp_path)
    one = _submit(two_nodes, SFT, 1, {**settings, "GRADIENT_ACCUMULATION_STEPS": "2",
                                      "OUTPUT_DIR": str(tmp_path / "one_node")}, tmp_path)
    for job in (two, one):
        _completed(two_nodes, job)
    assert "--nnodes=2" in _log(two_nodes, two)
    assert _state(tmp_path / "two_nodes")["global_step"] == _state(tmp_path / "one_node")["global_step"] == 4
    # Examples differ in length: the loss is a mean over all response tokens of the global batch in both setups.
    _assert_same_training(tmp_path / "two_nodes", tmp_path / "one_node", loss_tol=1e-4, weight_tol=1e-4)


def test_a_killed_node_fails_the_job_fast_and_the_requeued_job_resumes_from_the_last_complete_checkpoint(
        two_nodes, inputs, unbroken, tmp_path):  # noqa: F811
    out = tmp_path / "crashed"
    job = _submit(two_nodes, PRETRAIN, 2, _pretrain_env(inputs, out, tmp_path / "cache", TWO_NODES_ACCUMULATION,
                                                        SAVE_STEPS="5"), tmp_path)
    from langadapt.training import complete_checkpoints
    try:
        deadline = time.monotonic() + 300
        while not complete_checkpoints(str(out)):
            info = two_nodes.show(job)
            assert info.get("JobState") in ("PENDING", "RUNNING"), two_nodes.log_tail(info)
            assert time.monotonic() < deadline, "no complete checkpoint after 300 s\n" + two_nodes.log_tail(info)
            time.sleep(0.2)
        # Held first, so that once Slurm requeues it (a NODE_FAIL job with --requeue) it waits for the test to bring
        # the node back instead of starting on a node Slurm has not yet noticed is dead.
        two_nodes.run(["scontrol", "hold", job])
        assert two_nodes.kill_node("la2n2") > 0
        # No hang: the surviving node's processes see their peer's connections close and stop, and Slurm declares the
        # silent node down after SlurmdTimeout=10 s and ends the job's first run. Both within this bound.
        deadline = time.monotonic() + 120
        while True:
            info = two_nodes.show(job)
            if info.get("Restarts") == "1" or info.get("JobState") in ("FAILED", "NODE_FAIL", "COMPLETED"):
                break
            assert time.monotonic() < deadline, "job still running 120 s after its node was killed\n" + \
                two_nodes.log_tail(info)
            time.sleep(0.5)
        assert info["JobState"] != "COMPLETED", "the job finished before the kill; make it longer"
        # gloo on the surviving node: "Connection closed by peer" or "Connection reset by peer", by timing.
        assert re.search(r"\[rank\d+\]: RuntimeError: .*Connection (closed|reset) by peer", _log(two_nodes, job)), \
            "the surviving rank stops on the lost peer"
        last = complete_checkpoints(str(out))[-1]
        last_step = int(last.rsplit("-", 1)[1])
        assert 5 <= last_step < 40 and last_step % 5 == 0, last
        # A checkpoint the kill left half-written (no trainer_state.json) must be skipped on resume.
        partial = out / f"checkpoint-{last_step + 5}"
        if not partial.exists():
            partial.mkdir()
            (partial / "adapter_model.safetensors").write_bytes(b"cut off")

        two_nodes.restart_node("la2n2")
        two_nodes.wait_messages_delivered()
        if two_nodes.show(job)["JobState"] != "PENDING":  # not requeued by Slurm itself: requeue it, as a user would
            two_nodes.run(["scontrol", "requeue", job])
        two_nodes.wait(job, timeout=60, states={"PENDING"})
        two_nodes.run(["scontrol", "release", job], check=False)  # fails harmlessly when the requeue dropped the hold
        _release(two_nodes, job)
        _completed(two_nodes, job)
        run_args = json.load(open(out / "run_args.json", encoding="utf-8"))
        assert run_args["resolved"]["resumed_from"] == last, run_args["resolved"]
        assert _state(out)["global_step"] == 40
        _assert_same_training(out, unbroken["runs"]["two"], loss_tol=1e-5, weight_tol=1e-5)
    finally:  # whatever happened, leave the cluster as the next test expects it: both nodes up, no job
        two_nodes.restart_node("la2n2")
        two_nodes.run(["scancel", job], check=False)


def test_deepspeed_zero2_across_two_nodes_matches_ddp(two_nodes, inputs, unbroken, tmp_path):  # noqa: F811
    """ZeRO-2 partitions optimizer state and gradients over the two nodes' processes; the training is the same as
    plain DDP's up to float rounding (both clip gradients at 1.0 and average them over the same 16 sequences)."""
    out = tmp_path / "zero2"
    zero2 = os.path.join(REPO_ROOT, "configs", "deepspeed", "zero2.json")
    job = _submit(two_nodes, PRETRAIN, 2, _pretrain_env(inputs, out, tmp_path / "cache", TWO_NODES_ACCUMULATION,
                                                        DEEPSPEED_CONFIG=zero2), tmp_path)
    _completed(two_nodes, job)
    log = _log(two_nodes, job)
    assert "--nnodes=2" in log and f"--deepspeed {zero2}" in log
    run_args = json.load(open(out / "run_args.json", encoding="utf-8"))
    assert run_args["resolved"]["tokens_per_step"] == 16 * 128
    assert _state(out)["global_step"] == 40
    _assert_same_training(out, unbroken["runs"]["two"], loss_tol=1e-3, weight_tol=1e-3)
