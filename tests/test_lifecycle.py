"""Restart-safe training folders (langadapt.lifecycle) and checks before the model loads (langadapt.preflight), end
to end on the tiny model: a failed attempt reruns as is, a mismatched resume is refused, a truncated checkpoint is
skipped, bad schedules and paths fail before anything is written, outputs honour the umask."""

import json
import os
import stat

import pytest
import torch

from _pretrain_helpers import base_argv, extend_tokenizer, write_corpus
from _scripts import load_script
from langadapt import lifecycle, preflight
from langadapt.errors import InputError

pretrain = load_script("pretrain/run_clm_pt_with_peft.py")


@pytest.fixture(scope="module")
def ext_dir(tmp_path_factory, bpe_base_dir, persian_lines):
    return extend_tokenizer(bpe_base_dir, persian_lines[:3000], str(tmp_path_factory.mktemp("ext")), n_new=100)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, persian_lines):
    return write_corpus(str(tmp_path_factory.mktemp("corpus")), persian_lines, n=300)


@pytest.fixture
def umask_002():
    previous = os.umask(0o002)
    yield
    os.umask(previous)


def read(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def modes(root):
    """{relative path: permission bits} of everything under root."""
    found = {".": stat.S_IMODE(os.stat(root).st_mode)}
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(base, name)
            found[os.path.relpath(p, root)] = stat.S_IMODE(os.stat(p).st_mode)
    return found


def test_attempt_killed_before_its_first_checkpoint_reruns_as_is(tiny_model_dir, ext_dir, corpus, tmp_path,
                                                                 umask_002):
    """Finding 1: a run killed after writing run_args.json (before any checkpoint) is rerun by the same command; the
    attempt is moved aside, not deleted. Finding 8: every output (safetensors included) honours the umask."""
    out = tmp_path / "out"
    argv = base_argv(tiny_model_dir, ext_dir, corpus, str(out), "--training_mode", "lora",
                     "--save_strategy", "steps", "--save_steps", "1")
    out.mkdir()
    (out / "run_args.json").write_text('{"training": {"learning_rate": 0.001}}')
    (out / "checkpoint-1").mkdir()  # killed while saving: no trainer_state.json
    pretrain.main(argv)
    assert (out / "adapter_model.safetensors").is_file() and (out / "all_results.json").is_file()
    assert sorted(os.listdir(tmp_path / "out.attempt-1")) == ["checkpoint-1", "run_args.json"]
    found = modes(str(out))
    assert found["adapter_model.safetensors"] == 0o664 and found["checkpoint-2/adapter_model.safetensors"] == 0o664
    assert found["."] == 0o775 and found["checkpoint-2"] == 0o775
    assert {m for m in found.values()} <= {0o664, 0o775}, found


def test_resume_with_other_settings_is_refused_and_keeps_the_record(tiny_model_dir, ext_dir, corpus, tmp_path):
    """Finding 2: a finished LoRA run with checkpoints, rerun with --training_mode full and more steps, is refused
    naming the differing flag, and its run_args.json is untouched. The same settings with more steps resume."""
    out = str(tmp_path / "out")
    pretrain.main(base_argv(tiny_model_dir, ext_dir, corpus, out, "--training_mode", "lora",
                            "--save_strategy", "steps", "--save_steps", "2"))
    record = open(os.path.join(out, "run_args.json"), "rb").read()
    with pytest.raises(InputError, match=r"--training_mode was 'lora', now 'full'") as e:
        pretrain.main(base_argv(tiny_model_dir, ext_dir, corpus, out, "--training_mode", "full",
                                "--max_steps", "3"))
    assert e.value.arg == "output_dir" and "--max_steps" not in str(e.value)
    assert open(os.path.join(out, "run_args.json"), "rb").read() == record
    pretrain.main(base_argv(tiny_model_dir, ext_dir, corpus, out, "--training_mode", "lora", "--max_steps", "3",
                            "--save_strategy", "steps", "--save_steps", "2"))
    assert read(os.path.join(out, "run_args.json"))["resolved"]["resumed_from"].endswith("checkpoint-2")
    assert read(os.path.join(out, "trainer_state.json"))["global_step"] == 3


@pytest.mark.parametrize("case", ["nothing_to_train", "negative_lr", "output_under_file", "report_to_missing"])
def test_bad_run_fails_before_the_model_loads_and_writes_nothing(case, tiny_model_dir, ext_dir, corpus, tmp_path):
    """Finding 3 (--max_steps 0 --num_train_epochs 0 trained nothing and exited 0), a negative learning rate (failed
    only after the model loaded, leaving run_args.json), an output path under a file, a missing --report_to
    integration (a traceback)."""
    out = str(tmp_path / "out")
    extra = {"nothing_to_train": ["--max_steps", "0", "--num_train_epochs", "0"],
             "negative_lr": ["--learning_rate=-1e-3"], "output_under_file": [],
             "report_to_missing": ["--report_to", "wandb"]}[case]
    expect = {"nothing_to_train": "--max_steps 0 and --num_train_epochs 0 train nothing",
              "negative_lr": "--learning_rate must be >= 0", "output_under_file": "is a file",
              "report_to_missing": "--report_to wandb: the wandb package is not installed"}[case]
    if case == "output_under_file":
        (tmp_path / "afile").write_text("x")
        out = str(tmp_path / "afile" / "out")
    if case == "report_to_missing" and preflight.importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    with pytest.raises(InputError, match=expect):
        pretrain.main(base_argv(tiny_model_dir, ext_dir, corpus, out, *extra))
    assert sorted(os.listdir(tmp_path)) == (["afile"] if case == "output_under_file" else [])


def _fake_checkpoint(path, truncated=False):
    from safetensors.torch import save_file

    os.makedirs(path)
    with open(os.path.join(path, "trainer_state.json"), "w") as f:
        json.dump({"global_step": 1}, f)
    weights = os.path.join(path, "adapter_model.safetensors")
    save_file({"w": torch.zeros(64)}, weights)
    if truncated:  # a full disk or a kill during the copy to a shared file system
        with open(weights, "r+b") as f:
            f.truncate(os.path.getsize(weights) - 100)


def test_truncated_last_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    out = tmp_path / "out"
    _fake_checkpoint(str(out / "checkpoint-2"))
    _fake_checkpoint(str(out / "checkpoint-4"), truncated=True)
    with caplog.at_level("WARNING"):
        assert lifecycle.start_or_resume(str(out), False, None, {}).endswith("checkpoint-2")
    assert "checkpoint-4: adapter_model.safetensors is truncated" in caplog.text
    with pytest.raises(InputError, match="--resume_from_checkpoint: .*truncated"):
        lifecycle.start_or_resume(str(out), False, str(out / "checkpoint-4"), {})


def test_folders_that_are_not_an_attempt_are_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("results")  # not ours: never moved
    with pytest.raises(InputError, match="holds no checkpoint to resume"):
        lifecycle.start_or_resume(str(out), False, None, {})
    (out / "keep.txt").unlink()
    (out / "all_results.json").write_text("{}")  # finished, no checkpoint
    with pytest.raises(InputError, match="holds a finished run"):
        lifecycle.start_or_resume(str(out), False, None, {})
    assert lifecycle.start_or_resume(str(out), True, None, {}) is None
    assert os.listdir(tmp_path) == ["out"]


def test_differing_arguments_compare_paths_by_target_and_ignore_length(tmp_path, monkeypatch):
    from langadapt.args import AdaptationArguments, ModelArguments

    model = tmp_path / "m"
    model.mkdir()
    recorded = {"model": {"model_name_or_path": str(model), "tokenizer_name_or_path": str(model),
                          "torch_dtype": None},
                "adaptation": {"training_mode": "lora", "lora_rank": 8},
                "training": {"max_steps": 10, "learning_rate": 1e-3}}
    monkeypatch.chdir(tmp_path)
    current = {"model": ModelArguments(model_name_or_path="m"),
               "adaptation": AdaptationArguments(training_mode="lora", lora_rank=16),
               "training": {"max_steps": 20, "learning_rate": 1e-3}}
    assert lifecycle.differing_arguments(recorded, current) == [("--lora_rank", 8, 16)]


def test_missing_or_truncated_model_is_named_before_anything_loads(tiny_model_dir, ext_dir, corpus, tmp_path):
    """Weak findings: a missing base model was reported as a tokenizer repo-id error (the tokenizer defaults to the
    model); a corrupted safetensors file gave a raw SafetensorError naming no file."""
    import shutil

    argv = base_argv(str(tmp_path / "no_model"), ext_dir, corpus, str(tmp_path / "out"))
    i = argv.index("--tokenizer_name_or_path")
    del argv[i:i + 2]
    with pytest.raises(InputError, match="--model_name_or_path: .*no_model does not exist"):
        pretrain.main(argv)
    broken = tmp_path / "broken_model"
    shutil.copytree(tiny_model_dir, broken)
    weights = next(broken.glob("*.safetensors"))
    with open(weights, "r+b") as f:
        f.truncate(os.path.getsize(weights) // 2)
    with pytest.raises(InputError, match=f"--model_name_or_path: .*{weights.name} is truncated or corrupted"):
        pretrain.main(base_argv(str(broken), ext_dir, corpus, str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()


def test_inference_checks_model_and_output_path_before_loading(tiny_model_dir, tmp_path):
    inference = load_script("inference/inference.py")
    data = tmp_path / "testset"
    data.mkdir()
    (data / "sentiment.json").write_text(json.dumps([{"instruction": "x", "output": "مثبت"}]))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(InputError, match="--predictions_dir: .*afile is a file"):
        inference.main(["--base_model", tiny_model_dir, "--data_dir", str(data), "--predictions_dir",
                        str(tmp_path / "afile" / "preds")])
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")  # cut short
    with pytest.raises(InputError, match="--lora_model: .*adapter_model.safetensors is truncated or corrupted"):
        inference.main(["--base_model", tiny_model_dir, "--lora_model", str(adapter), "--data_dir",
                        str(data), "--predictions_dir", str(tmp_path / "preds")])
    assert not (tmp_path / "preds").exists()


@pytest.mark.parametrize("err,code,fragment", [
    (OSError(28, "No space left on device", "/scratch/out/model.safetensors"), 1, "free space and rerun"),
    (OSError(30, "Read-only file system", "/ro/out"), 2, "choose a folder you can write to"),
])
def test_disk_full_or_read_only_mid_run_is_one_line_not_a_traceback(err, code, fragment, capsys):
    from langadapt.cli import run_main

    def main(argv):
        raise err

    with pytest.raises(SystemExit) as e:
        run_main(main, [])
    stderr = capsys.readouterr().err
    assert e.value.code == code and f"error: {err.filename}: {err.strerror}" in stderr and fragment in stderr
    assert "Traceback" not in stderr


def test_other_os_errors_keep_their_traceback():
    from langadapt.cli import run_main

    def main(argv):
        raise ConnectionResetError(104, "Connection reset by peer")

    with pytest.raises(ConnectionResetError):
        run_main(main, [])


def test_free_space_is_checked_against_the_size_estimate(tmp_path):
    import shutil as sh

    free = sh.disk_usage(tmp_path).free
    preflight.check_output_path(str(tmp_path / "out"), "output_dir", required_bytes=1)
    with pytest.raises(InputError, match=r"--output_dir: .* GiB free, the outputs need about"):
        preflight.check_output_path(str(tmp_path / "out" / "deeper"), "output_dir", required_bytes=free * 2)
    assert not (tmp_path / "out").exists()
