"""Argument dataclasses shared by the training stages (langadapt.args), parsed as the scripts parse them."""

import json
import os

import pytest

from langadapt.args import (
    AdaptationArguments,
    LangAdaptTrainingArguments,
    ModelArguments,
    PretrainDataArguments,
    SampleArguments,
)
from langadapt.cli import UsageError, parse_args

GROUPS = (ModelArguments, AdaptationArguments, PretrainDataArguments, SampleArguments, LangAdaptTrainingArguments)
REQUIRED = ["--model_name_or_path", "m", "--dataset_dir", "d", "--output_dir", "o", "--report_to", "none"]


def parse(*argv):
    return parse_args(GROUPS, [*REQUIRED, *argv])


@pytest.mark.parametrize("argv,mode", [
    ([], "full"), (["--use_lora"], "lora"), (["--freeze_transformer"], "embeddings"),
    (["--training_mode", "new_rows"], "new_rows"), (["--use_lora", "--training_mode", "lora"], "lora"),
])
def test_seed_booleans_map_onto_training_mode(argv, mode):
    assert parse(*argv)[1].training_mode == mode


@pytest.mark.parametrize("argv,flag", [
    (["--use_lora", "--freeze_transformer"], "--use_lora and --freeze_transformer"),
    (["--freeze_transformer", "--training_mode", "full"], "--freeze_transformer"),
    (["--pad_vocab_to_multiple_of", "0"], "--pad_vocab_to_multiple_of"),
    (["--lora_rank", "0", "--use_lora"], "--lora_rank"),
    (["--lora_dropout", "1.5", "--use_lora"], "--lora_dropout"),
    (["--trainable", "q_proj"], "--trainable/--modules_to_save only apply"),
    (["--validation_split_percentage", "80"], "--validation_split_percentage"),
    (["--block_size", "1"], "--block_size"),
    (["--sample_max_new_tokens", "-1"], "--sample_max_new_tokens"),
])
def test_bad_values_name_the_flag(argv, flag):
    with pytest.raises(UsageError, match=flag):
        parse(*argv)


def test_required_flags():
    with pytest.raises(UsageError, match="--model_name_or_path is required"):
        parse_args(GROUPS, ["--dataset_dir", "d", "--output_dir", "o"])
    with pytest.raises(UsageError, match="--dataset_dir is required"):
        parse_args(GROUPS, ["--model_name_or_path", "m", "--output_dir", "o"])


def test_lists_and_defaults():
    model, adapt, data, _, train = parse("--use_lora", "--trainable", "q_proj, v_proj", "--modules_to_save",
                                         "embed_tokens")
    assert adapt.lora_target_modules == ["q_proj", "v_proj"] and adapt.lora_modules_to_save == ["embed_tokens"]
    assert model.tokenizer_name_or_path == "m" and adapt.embedding_init == "subtoken_weighted"
    assert adapt.pad_vocab_to_multiple_of == 64 and train.overwrite_output_dir is False
    assert parse_args(GROUPS, ["--model_name_or_path", "m", "--dataset_dir", "d", "--output_dir", "o"])[4].report_to \
        == ["tensorboard"]


def test_deepspeed_file_is_checked_before_anything_runs(tmp_path, monkeypatch):
    with pytest.raises(UsageError, match="--deepspeed: .* does not exist"):
        parse("--deepspeed", str(tmp_path / "none.json"))
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(UsageError, match="not valid JSON"):
        parse("--deepspeed", str(tmp_path / "bad.json"))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    with pytest.raises(UsageError, match="distributed launcher"):
        parse("--deepspeed", os.path.join(os.path.dirname(__file__), "..", "configs", "deepspeed", "zero2.json"))


@pytest.mark.parametrize("name", ["zero2.json", "zero3.json"])
def test_shipped_deepspeed_configs_parse_with_auto_values(name):
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    path = os.path.join(os.path.dirname(__file__), "..", "configs", "deepspeed", name)
    cfg = json.load(open(path))
    assert cfg["fp16"]["enabled"] == "auto" and cfg["bf16"]["enabled"] == "auto"
    assert cfg["train_micro_batch_size_per_gpu"] == "auto"
    assert HfTrainerDeepSpeedConfig(path).get_value("zero_optimization.stage") == int(name[4])


def test_help_keeps_the_docstring_layout_and_shows_defaults(capsys):
    from dataclasses import dataclass, field

    @dataclass
    class Args:
        steps: int = field(default=7, metadata={"help": "Optimizer steps."})

    doc = "Title line.\n\n    python x.py --steps 3          # an example command\n    python x.py\n"
    with pytest.raises(SystemExit) as exit_info:
        parse_args((Args,), ["--help"], description=doc)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "\n    python x.py --steps 3          # an example command\n    python x.py\n" in out
    assert "Optimizer steps. (default: 7)" in out
