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


# One flag vocabulary: the run_clm name of each concept and its seed/older names, in every script that takes it.
VOCABULARY = {
    "model": ("--model_name_or_path", "--base_model"),
    "tokenizer": ("--tokenizer_name_or_path", "--tokenizer_path"),
    "adapter": ("--peft_path", "--lora_model"),
    "overwrite": ("--overwrite_output_dir", "--overwrite"),
}
SCRIPTS = {
    "pretrain/run_clm_pt_with_peft.py": ("model", "tokenizer", "adapter", "overwrite"),
    "sft/run_clm_sft_with_peft.py": ("model", "tokenizer", "adapter", "overwrite"),
    "inference/inference.py": ("model", "tokenizer", "adapter"),
    "inference/lm_eval.py": ("model", "tokenizer", "adapter", "overwrite"),
    "inference/perplexity.py": ("model", "tokenizer", "adapter", "overwrite"),
    "inference/merge_lora.py": ("model", "tokenizer", "adapter", "overwrite"),
    "inference/score.py": ("overwrite",),
    "tokenizer/extract_vocab.py": ("overwrite",),
    "tokenizer/merge.py": ("overwrite",),
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_script_speaks_one_flag_vocabulary(script, capsys):
    from _scripts import load_script

    module = load_script(script)
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    options = set(capsys.readouterr().out.replace(",", " ").split())
    for concept in SCRIPTS[script]:
        missing = [flag for flag in VOCABULARY[concept] if flag not in options]
        assert not missing, f"{script} lacks {missing} ({concept})"


def test_comma_lists_accept_spaces_and_repeats():
    from dataclasses import dataclass, field

    from langadapt.cli import COMMA_LIST, COMMA_SPLIT_LIST, parse_args

    @dataclass
    class Args:
        names: str | None = field(default=None, metadata={**COMMA_LIST})
        files: list[str] = field(default_factory=lambda: ["default.txt"], metadata={**COMMA_SPLIT_LIST})

    for argv in (["--names", "a,b", "--files", "x,y"], ["--names", "a", "b", "--files", "x", "y"],
                 ["--names", "a", "--names", "b", "--files", "x", "--files", "y"]):
        (args,) = parse_args((Args,), argv)
        assert (args.names, args.files) == ("a,b", ["x", "y"]), argv
    (args,) = parse_args((Args,), [])
    assert (args.names, args.files) == (None, ["default.txt"])
