"""Argument dataclasses shared by the training stages (langadapt.args), parsed as the scripts parse them."""

import json
import os

import pytest

from langadapt.args import (
    DEFAULT_EMBEDDING_INIT,
    AdaptationArguments,
    ModelArguments,
    PretrainDataArguments,
    PretrainTrainingArguments,
    SampleArguments,
    SFTTrainingArguments,
)
from langadapt.cli import UsageError, parse_args

GROUPS = (ModelArguments, AdaptationArguments, PretrainDataArguments, SampleArguments, PretrainTrainingArguments)
REQUIRED = ["--model_name_or_path", "m", "--dataset_dir", "d", "--output_dir", "o", "--report_to", "none"]


def parse(*argv):
    return parse_args(GROUPS, [*REQUIRED, *argv])


@pytest.mark.parametrize("argv,mode", [
    ([], "lora"), (["--use_lora"], "lora"), (["--freeze_transformer"], "embeddings"),
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
    (["--trainable", "q_proj", "--training_mode", "full"], "--trainable/--modules_to_save only apply"),
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
    assert model.tokenizer_name_or_path == "m" and adapt.embedding_init == DEFAULT_EMBEDDING_INIT == "subtoken_weighted"
    assert adapt.pad_vocab_to_multiple_of == 64 and train.overwrite_output_dir is False
    assert parse_args(GROUPS, ["--model_name_or_path", "m", "--dataset_dir", "d", "--output_dir", "o"])[4].report_to \
        == ["tensorboard"]


def test_a_machine_without_accelerator_trains_distributed_on_cpu(monkeypatch):
    """On CPU the processes of a torchrun must form one gloo job: accelerate does that only with use_cpu, so it is set
    when torch sees no accelerator (and left alone when it sees one)."""
    from langadapt import args as args_module

    monkeypatch.setattr(args_module, "_has_accelerator", lambda: False)
    assert parse()[4].use_cpu is True
    monkeypatch.setattr(args_module, "_has_accelerator", lambda: True)
    assert parse()[4].use_cpu is False
    assert parse("--use_cpu")[4].use_cpu is True


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


def test_seven_b_lora_defaults_are_defined_once_in_the_dataclasses():
    """No flag given: the run a launcher with no settings gives (LoRA r=64/alpha=128, cosine, 3% warmup)."""
    _, adapt, data, _, train = parse()
    assert (adapt.training_mode, adapt.lora_rank, adapt.lora_alpha) == ("lora", 64, 128.0)
    assert (train.lr_scheduler_type.value, train.warmup_steps, train.learning_rate) == ("cosine", 0.03, 2e-4)
    assert (train.per_device_train_batch_size, train.gradient_accumulation_steps, train.num_train_epochs) == (4, 8, 1)
    assert train.activation_checkpointing is True and train.bf16 is False  # no GPU here: fp32
    assert train.eval_strategy.value == "steps" and train.ddp_find_unused_parameters is False
    sft = parse_args((SFTTrainingArguments,), ["--output_dir", "o"])[0]
    assert (sft.learning_rate, sft.num_train_epochs, sft.gradient_accumulation_steps) == (1e-4, 3, 4)
    # The seed's names of the same switches still turn them off.
    assert parse("--gradient_checkpointing", "False")[4].activation_checkpointing is False
    assert parse("--fp16", "--use_cpu")[4].bf16 is False


@pytest.mark.parametrize("alias,value,group,attr", [
    ("--base_model", "base", 0, "model_name_or_path"),
    ("--tokenizer_path", "tok", 0, "tokenizer_name_or_path"),
    ("--lora_model", "adapter", 1, "peft_path"),
    ("--evaluation_strategy", "no", 4, "eval_strategy"),
])
def test_seed_and_old_flag_names_are_aliases(alias, value, group, attr):
    got = getattr(parse(alias, value)[group], attr)
    assert getattr(got, "value", got) == value


def test_overwrite_alias_and_bare_bool():
    assert parse("--overwrite")[4].overwrite_output_dir is True
    assert parse("--overwrite_output_dir", "False")[4].overwrite_output_dir is False


@pytest.mark.parametrize("argv", [
    ["--trainable", "q_proj,v_proj"],  # canonical: comma-separated
    ["--trainable", "q_proj", "v_proj"],  # space-separated
    ["--trainable", "q_proj", "--trainable", "v_proj"],  # repeated
    ["--trainable", "q_proj, v_proj"],
])
def test_one_list_convention_accepts_the_other_spellings(argv):
    assert parse(*argv)[1].lora_target_modules == ["q_proj", "v_proj"]


def test_help_shows_the_real_default_never_none(capsys):
    with pytest.raises(SystemExit):
        parse_args(GROUPS, ["--help"])
    out = " ".join(capsys.readouterr().out.split())
    options = out[out.index("--training-mode {full,lora,embeddings,new_rows} full,"):]
    mode_help = options[:options.index("--use_lora")]
    assert "Default: lora" in mode_help and "None" not in mode_help
    assert "LoRA rank r. (default: 64)" in out and "(default: cosine)" in out


def test_yaml_config_then_command_line_overrides(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("base_model: m\ndataset_dir: d\noutput_dir: o\nmax_steps: 5\nlearning_rate: 1e-3\n"
                   "trainable: [q_proj, v_proj]\nreport_to: none\n")
    _, adapt, _, _, train = parse_args(GROUPS, [str(cfg), "--max_steps", "2"])
    assert train.max_steps == 2 and train.learning_rate == 1e-3 and adapt.trainable == "q_proj,v_proj"
    model = parse_args(GROUPS, [str(cfg)])[0]
    assert model.model_name_or_path == "m"


def test_json_config_and_bad_configs(tmp_path):
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps({"model_name_or_path": "m", "dataset_dir": "d", "output_dir": "o", "lora_rank": 16}))
    assert parse_args(GROUPS, [str(cfg), "--lora_alpha", "32"])[1].lora_rank == 16
    (tmp_path / "typo.json").write_text(json.dumps({"model_name_or_path": "m", "lora_rnak": 16}))
    with pytest.raises(UsageError, match="unknown setting 'lora_rnak'"):
        parse_args(GROUPS, [str(tmp_path / "typo.json")])
    with pytest.raises(UsageError, match="does not exist"):
        parse_args(GROUPS, [str(tmp_path / "missing.yaml")])
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(UsageError, match="mapping"):
        parse_args(GROUPS, [str(tmp_path / "list.yaml")])
