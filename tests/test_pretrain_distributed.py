"""Multi-process runs of the pretraining stage on CPU: torchrun DDP (gloo) and DeepSpeed ZeRO-2/3 under torchrun.

Slow (process start-up, and DeepSpeed compiles its CPU communication op on first use), so marked ``slow``.
"""

import json
import os
import socket
import subprocess
import sys

import pytest

from _pretrain_helpers import base_argv, extend_tokenizer, write_corpus
from _resume_helpers import carries_mark, count_loss_lines, mark_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "pretrain", "run_clm_pt_with_peft.py")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ext_dir(tmp_path_factory, bpe_base_dir, persian_lines):
    return extend_tokenizer(bpe_base_dir, persian_lines[:3000], str(tmp_path_factory.mktemp("ext")), n_new=100)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, persian_lines):
    return write_corpus(str(tmp_path_factory.mktemp("corpus")), persian_lines, n=600)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(argv, timeout=900):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           SCRIPT, *argv]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout)
    assert r.returncode == 0, r.stderr[-4000:]
    return r


def check_output(out, mode):
    info = json.load(open(os.path.join(out, "langadapt_model.json")))
    assert info["training_mode"] == mode and info["embedding_rows"] == 1152
    results = json.load(open(os.path.join(out, "all_results.json")))
    assert results["train_loss"] > 0 and "eval_perplexity" in results
    run_args = json.load(open(os.path.join(out, "run_args.json")))
    # 2 processes x batch 2 x block 32
    assert run_args["resolved"]["tokens_per_step"] == 128


def test_torchrun_two_processes_gloo(tiny_model_dir, ext_dir, corpus, tmp_path):
    out = str(tmp_path / "ddp")
    torchrun(base_argv(tiny_model_dir, ext_dir, corpus, out, "--training_mode", "lora", "--ddp_backend", "gloo",
                       "--eval_strategy", "steps", "--eval_steps", "2", "--sample_max_new_tokens", "2"))
    check_output(out, "lora")
    samples = [json.loads(x) for x in open(os.path.join(out, "samples.jsonl"), encoding="utf-8")]
    assert len(samples) == 5  # written once (rank 0), default prompts


def test_deepspeed_zero2_on_cpu_under_torchrun(tiny_model_dir, ext_dir, corpus, tmp_path):
    out = str(tmp_path / "zero2")
    torchrun(base_argv(tiny_model_dir, ext_dir, corpus, out, "--training_mode", "lora",
                       "--deepspeed", os.path.join(REPO, "configs", "deepspeed", "zero2.json")))
    check_output(out, "lora")
    assert os.path.isfile(os.path.join(out, "adapter_model.safetensors"))


def test_deepspeed_zero3_with_resized_embeddings(tiny_model_dir, ext_dir, corpus, tmp_path):
    """ZeRO-3 partitions parameters at load time; resize and sub-token init must gather them."""
    from transformers import AutoModelForCausalLM

    out = str(tmp_path / "zero3")
    torchrun(base_argv(tiny_model_dir, ext_dir, corpus, out, "--training_mode", "full",
                       "--eval_strategy", "steps", "--eval_steps", "2", "--sample_max_new_tokens", "2",
                       "--deepspeed", os.path.join(REPO, "configs", "deepspeed", "zero3.json")))
    check_output(out, "full")
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.get_input_embeddings().weight.shape == (1152, 32)
    # New rows got the sub-token mean (gathered, written on rank 0, re-partitioned), then 2 small Adam steps
    # (lr 1e-3) moved them by at most ~2e-3 per element.
    from langadapt.args import AdaptationArguments, ModelArguments
    from langadapt.modeling import prepare_model

    want = prepare_model(ModelArguments(model_name_or_path=tiny_model_dir, tokenizer_name_or_path=ext_dir),
                         AdaptationArguments(training_mode="full")).model.get_input_embeddings().weight
    got = model.get_input_embeddings().weight
    assert (got[1000:1100] - want[1000:1100]).abs().max() < 5e-3
    assert got[1000:1100].abs().sum() > 0


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(entry))
    return kids


def test_preemption_signal_to_one_rank_stops_every_rank_at_the_same_step(tiny_model_dir, ext_dir, corpus, tmp_path):
    """SIGUSR1 to one of two DDP workers (torchrun ignoring it, as slurm/common.sh runs it): the ranks agree on the
    step, one checkpoint of that step is saved, the workers exit 75; a rerun resumes from it and finishes."""
    import re
    import signal
    import time

    out = str(tmp_path / "ddp_preempt")
    argv = base_argv(tiny_model_dir, ext_dir, corpus, out, "--training_mode", "lora", "--ddp_backend", "gloo",
                     "--max_steps", "400", "--save_strategy", "steps", "--save_steps", "1000",
                     "--validation_split_percentage", "0")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    log_path = tmp_path / "torchrun.log"
    cmd = ["bash", "-c", 'trap "" USR1; exec "$@"', "torchrun", sys.executable, "-m", "torch.distributed.run",
           "--nproc_per_node", "2", "--master_port", str(free_port()), SCRIPT, *argv]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 300
        while log_path.read_text(errors="replace").count("'loss'") < 3:
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.1)
        workers = _children(proc.pid)
        assert len(workers) == 2, workers
        os.kill(max(workers), signal.SIGUSR1)  # one rank only
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log_path.read_text(errors="replace")
    assert proc.returncode != 0 and "exitcode  : 75" in text, text[-3000:]
    checkpoints = [n for n in os.listdir(out) if n.startswith("checkpoint-")]
    assert len(checkpoints) == 1, checkpoints
    step = int(checkpoints[0].split("-")[1])
    assert 3 <= step < 400
    # One rank received the signal; both stopped at the same step (each logs it: a warning).
    assert text.count("SIGUSR1 received") == 1, text[-3000:]
    assert re.findall(r"preempted: saving checkpoint-(\d+)", text) == [str(step)] * 2
    mark_checkpoint(os.path.join(out, checkpoints[0]))
    r = torchrun(argv)
    state = json.load(open(os.path.join(out, "trainer_state.json")))
    assert state["global_step"] == 400
    # The rerun computed only the steps after the checkpoint (one loss line each, from rank 0), from its state.
    assert count_loss_lines(r.stdout + r.stderr) == 400 - step and carries_mark(out)
    assert json.load(open(os.path.join(out, "run_args.json")))["resolved"]["resumed_from"].endswith(checkpoints[0])
