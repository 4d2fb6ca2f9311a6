"""langadapt.cli: how a stage script ends (exit status, output flushed, the torch.distributed process group)."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch.distributed as dist

from langadapt.cli import EXIT_USAGE, UsageError, end_distributed, run_main


@pytest.fixture
def one_rank_group(tmp_path):
    """A real gloo process group of one rank (a file store, no ports), destroyed after the test if still there."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def test_end_distributed_destroys_the_group(one_rank_group):
    assert dist.is_initialized()
    end_distributed()
    assert not dist.is_initialized()
    end_distributed()  # nothing to do: no error


def test_run_main_without_a_process_group_exits_as_usual(capsys):
    assert run_main(lambda argv: None, []) is None  # returns: the interpreter exits 0 as usual

    def bad(argv):
        raise UsageError("--flag: bad value")

    with pytest.raises(SystemExit) as exit_info:
        run_main(bad, [])
    assert exit_info.value.code == EXIT_USAGE
    assert "error: --flag: bad value" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda argv: sys.exit(75), [])
    assert exit_info.value.code == 75


# A distributed worker: one gloo rank, one collective, then main ends as ENDING says. Its atexit handler records
# whether the group still existed when it ran (so: whether run_main destroyed it first).
WORKER = """
import atexit, os, sys
import torch, torch.distributed as dist
from langadapt.cli import UsageError, run_main

dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)

def record():
    with open(sys.argv[2], "w") as f:
        f.write("group alive" if dist.is_initialized() else "group destroyed")

def main(argv):
    atexit.register(record)
    dist.all_reduce(torch.ones(4))
    sys.stdout.write("last words without a newline")  # block-buffered on a pipe: lost unless flushed
    ending = os.environ["ENDING"]
    if ending == "preempted":
        raise SystemExit(75)
    if ending == "usage":
        raise UsageError("--dataset_dir: no such folder")

run_main(main)
"""


@pytest.mark.parametrize("ending, status, group", [
    ("return", 0, "group destroyed"),
    ("preempted", 75, "group alive"),  # exit_if_preempted's barrier already synchronised the ranks
    ("usage", EXIT_USAGE, "group alive"),  # a failing rank must not destroy (another may be in a collective)
])
def test_distributed_worker_exits_with_its_status_after_atexit_handlers(tmp_path, ending, status, group):
    """The status is the stage's (never a shutdown abort), atexit handlers still run, and stdout is flushed."""
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    marker = tmp_path / "atexit.txt"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"} | {"ENDING": ending}
    r = subprocess.run([sys.executable, str(script), str(tmp_path / "store"), str(marker)], capture_output=True,
                       text=True, timeout=120, env=env)
    assert r.returncode == status, r.stderr[-2000:]
    assert marker.read_text() == group
    assert "last words without a newline" in r.stdout
    if ending == "usage":
        assert "error: --dataset_dir: no such folder" in r.stderr
