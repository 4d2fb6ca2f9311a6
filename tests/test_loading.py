"""langadapt.loading: the one loader (tokenizer pad rule, dtype rule, adapter-chain rows, table growth) and the
rank helper and error rendering the script layer relies on."""

import os

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import _scripts
from _pretrain_helpers import extend_tokenizer
from langadapt import cli, dist
from langadapt.args import AdaptationArguments, ModelArguments
from langadapt.embeddings import resize_and_init
from langadapt.errors import InputError
from langadapt.loading import (
    adapter_rows, check_adapter_rows, embedding_rows, load_base_model, load_tokenizer, load_with_adapters,
    saved_embedding_rows, torch_dtype,
)
from langadapt.metadata import ModelInfo
from langadapt.modeling import prepare_model


@pytest.fixture(scope="module")
def ext_bpe_dir(tmp_path_factory, bpe_base_dir, persian_lines):
    return extend_tokenizer(bpe_base_dir, persian_lines[:2000], str(tmp_path_factory.mktemp("ext_bpe")), n_new=60)


# ------------------------------------------------------------------------------------------------ tokenizer


def test_a_tokenizer_without_pad_pads_with_eos(bpe_base_dir, tmp_path):
    tok = AutoTokenizer.from_pretrained(bpe_base_dir)
    tok.pad_token = None
    tok.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path).pad_token is None
    loaded = load_tokenizer(str(tmp_path))
    assert loaded.pad_token == loaded.eos_token == "<|endoftext|>"


def test_a_tokenizer_without_pad_or_eos_is_refused(bpe_base_dir, tmp_path):
    tok = AutoTokenizer.from_pretrained(bpe_base_dir)
    tok.pad_token = None
    tok.eos_token = None
    tok.save_pretrained(tmp_path)
    with pytest.raises(InputError, match="neither a pad nor an EOS token") as e:
        load_tokenizer(str(tmp_path), arg="base_tokenizer_name_or_path")
    assert e.value.arg == "base_tokenizer_name_or_path" and e.value.value == str(tmp_path)


def test_a_missing_folder_names_the_argument(tmp_path):
    with pytest.raises(InputError) as e:
        load_tokenizer(str(tmp_path / "nope"))
    assert e.value.arg == "tokenizer_name_or_path"
    assert e.value.render().startswith("--tokenizer_name_or_path: ")
    with pytest.raises(InputError) as e:
        load_base_model(str(tmp_path / "nope"), arg="base_model")
    assert e.value.arg == "base_model" and e.value.value == str(tmp_path / "nope")


# ---------------------------------------------------------------------------------------------------- dtype


def test_dtype_rule():
    assert torch_dtype(None) is torch.float32 and torch_dtype("float32") is torch.float32
    assert torch_dtype("bfloat16") is torch.bfloat16 and torch_dtype(torch.float16) is torch.float16
    assert torch_dtype("auto") == "auto"
    with pytest.raises(InputError) as e:
        torch_dtype("fp8")
    assert e.value.arg == "torch_dtype" and e.value.value == "fp8"


def test_auto_is_the_checkpoints_dtype_and_the_default_is_float32(tiny_model_dir, tmp_path):
    AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16).save_pretrained(tmp_path)
    for name, want in ((None, torch.float32), ("auto", torch.bfloat16), ("float16", torch.float16)):
        model = load_base_model(str(tmp_path), dtype=name)
        assert next(model.parameters()).dtype == want, name
    model, _ = load_with_adapters(str(tmp_path), [], tiny_model_dir, "auto")  # the chain loader, same rule
    assert next(model.parameters()).dtype == torch.bfloat16


# ---------------------------------------------------------------------------------------- adapter-chain rows


def test_adapter_rows_come_from_the_info_file_else_the_saved_table(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    rows = embedding_rows(model)
    resize_and_init(model, rows + 5, init="mean", pad_to_multiple_of=8)
    assert embedding_rows(model) == rows + 8  # rows + 5 padded to a multiple of 8 (rows is one already)
    grown = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"], modules_to_save=["embed_tokens",
                                                                                               "lm_head"]))
    grown.save_pretrained(tmp_path / "grown", save_embedding_layers=False)
    plain = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), LoraConfig(r=2,
                                                                                          target_modules=["q_proj"]))
    plain.save_pretrained(tmp_path / "plain")
    assert saved_embedding_rows(str(tmp_path / "grown")) == rows + 8
    assert saved_embedding_rows(str(tmp_path / "plain")) is None
    assert adapter_rows(str(tmp_path / "grown")) == rows + 8
    info = ModelInfo(tiny_model_dir, rows, rows + 5, rows + 8, "lora", "mean", True)
    info.save(str(tmp_path / "plain"))
    assert adapter_rows(str(tmp_path / "plain")) == rows + 8  # the info file wins over the weights

    # Loading grows the base to the adapter's table before PEFT loads it.
    loaded, _ = load_with_adapters(tiny_model_dir, [str(tmp_path / "grown")])
    assert embedding_rows(loaded) == rows + 8
    # An adapter for another base is refused, naming the argument it came from.
    with pytest.raises(InputError, match="trained on a model with") as e:
        check_adapter_rows("A", info, rows + 1, arg="lora_model")
    assert e.value.arg == "lora_model" and e.value.render().startswith("--lora_model: ")


def test_resize_and_init_takes_a_row_count(tiny_model_dir, bpe_base_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with pytest.raises(TypeError, match="number of token ids"):
        resize_and_init(model, AutoTokenizer.from_pretrained(bpe_base_dir), init="mean")
    with pytest.raises(ValueError, match="new and the base tokenizer"):
        resize_and_init(model, embedding_rows(model) + 1, init="subtoken_mean", pad_to_multiple_of=1)


# ------------------------------------------------------------------------------------------- table growth


def test_perplexity_grows_the_table_exactly_as_training_does(tiny_model_dir, ext_bpe_dir, tmp_path):
    trained = prepare_model(ModelArguments(model_name_or_path=tiny_model_dir, tokenizer_name_or_path=ext_bpe_dir),
                            AdaptationArguments(training_mode="full", embedding_init="subtoken_mean",
                                                pad_vocab_to_multiple_of=1))
    script = _scripts.load_script("inference/perplexity.py")
    args = script.PerplexityArguments(model_name_or_path=tiny_model_dir, tokenizer_name_or_path=ext_bpe_dir,
                                      eval_files="x", output_dir=str(tmp_path), embedding_init="subtoken_mean")
    model, tokenizer, tok_path, report = script.load_model(args)
    assert tok_path == ext_bpe_dir and len(tokenizer) == len(trained.tokenizer)
    assert report.to_dict() == trained.resize.to_dict()
    assert report.first_new_id < report.tokenizer_size == report.embedding_rows
    assert torch.equal(model.get_input_embeddings().weight, trained.model.get_input_embeddings().weight)
    assert torch.equal(model.get_output_embeddings().weight, trained.model.get_output_embeddings().weight)


# ------------------------------------------------------------------------------------ rank and error output


def test_rank_and_world_size_come_from_the_launcher(monkeypatch):
    for var in ("RANK", "SLURM_PROCID", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "LOCAL_RANK", "SLURM_LOCALID",
                "MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "WORLD_SIZE", "SLURM_NTASKS", "PMI_SIZE",
                "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert (dist.rank(), dist.local_rank(), dist.world_size(), dist.is_main_process()) == (0, 0, 1, True)
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert (dist.rank(), dist.world_size(), dist.is_main_process()) == (3, 4, False)
    monkeypatch.setenv("RANK", "1")  # torchrun's variables win over Slurm's
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert (dist.rank(), dist.local_rank(), dist.world_size()) == (1, 1, 2)
    assert cli.process_rank() == 1


def test_run_main_renders_the_argument_of_an_input_error(capsys):
    assert cli.UsageError is InputError

    def main(argv):
        raise InputError("7 is not a block size", arg="block_size", value=7)

    with pytest.raises(SystemExit) as e:
        cli.run_main(main, [])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip() == "error: --block_size: 7 is not a block size"
