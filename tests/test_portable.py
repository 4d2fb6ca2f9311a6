"""issue 13: adapter and merged folders work outside langadapt: PEFT's recipe from any directory, the trained prompt
as chat template, lineage refusals, and model cards whose snippets run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from _sft_helpers import (  # noqa: F401 (one_torch_thread is an autouse fixture)
    instruction_records, load_script, make_extended_tokenizer, one_torch_thread, perturb_trainable, pretrain_argv,
    sft_argv, write_dataset,
)
from langadapt.loading import load_with_adapters
from langadapt.args import AdaptationArguments, ModelArguments
from langadapt.cli import UsageError
from langadapt.lineage import LINEAGE_FILE, read_lineage
from langadapt.model_card import python_snippets
from langadapt.modeling import ModelInfo, prepare_model, save_model
from langadapt.portable import (
    load_with_peft, pad_multiple, pad_with_reserved, reserved_rows, resize_call, tokenizer_to_save, vocab_size,
)
from langadapt.templates import encode_prompt

PROMPTS = ["دل می‌رود ز دستم صاحب‌دلان خدا را", "The rose garden at night."]
ITEMS = [("مصراع بعدی را بنویس.", "دل می‌رود ز دستم"), ("How many words are in this line?", ""),
         ("یک بیت از حافظ بنویس.", "")]


def logits(model, tokenizer):
    with torch.no_grad():
        return [model(**tokenizer(p, return_tensors="pt")).logits[..., : len(tokenizer)] for p in PROMPTS]


def max_diff(a, b):
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def chain(tmp_path_factory, tiny_tied_model_dir, bpe_base_dir, persian_lines):
    """pretraining (LoRA) -> SFT continuing the same adapter -> merge, with the real scripts (pad to 8 rows)."""
    root = tmp_path_factory.mktemp("chain")
    tok = make_extended_tokenizer(bpe_base_dir, str(root / "tok"))
    report = {"kind": "byte_level_bpe", "base_vocab_size": 1000, "new_pieces": 12, "new_token_ids": [1000, 1012],
              "merged_vocab_size": 1012, "eval": {"fa.txt": {"base_tokens_per_word": 3.1,
                                                             "merged_tokens_per_word": 1.9}}}
    (root / "tok" / "merge_report.json").write_text(json.dumps(report), encoding="utf-8")  # as tokenizer/merge.py
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "fa.txt").write_text("\n".join(persian_lines[:300]) + "\n", encoding="utf-8")
    pt, sft, merged = str(root / "pt"), str(root / "sft"), str(root / "merged")
    load_script("pretrain/run_clm_pt_with_peft.py").main(pretrain_argv(tiny_tied_model_dir, tok, str(corpus), pt))
    data = write_dataset(str(root / "data"), instruction_records(persian_lines, 8))
    load_script("sft/run_clm_sft_with_peft.py").main(
        sft_argv(tiny_tied_model_dir, tok, data, sft, "--peft_path", pt, "--training_mode", "lora"))
    load_script("inference/merge_lora.py").main(
        ["--base_model", tiny_tied_model_dir, "--lora_model", sft, "--output_dir", merged])
    return {"base": tiny_tied_model_dir, "tok": tok, "pt": pt, "sft": sft, "merged": merged, "root": root}


def test_peft_recipe_from_another_directory_equals_the_merged_model(chain, tmp_path, monkeypatch):
    config = json.load(open(os.path.join(chain["sft"], "adapter_config.json"), encoding="utf-8"))
    assert config["base_model_name_or_path"] == os.path.abspath(chain["base"])
    info = ModelInfo.from_dir(chain["sft"])
    assert (info.tokenizer_size, info.embedding_rows) == (1012, 1016)
    assert resize_call(1012, 1016) == "model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=8)"
    monkeypatch.chdir(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(chain["sft"])
    peft_model = load_with_peft(config["base_model_name_or_path"], chain["sft"], len(tokenizer), 1016)
    merged = AutoModelForCausalLM.from_pretrained(chain["merged"])
    assert max_diff(logits(peft_model, tokenizer), logits(merged, tokenizer)) < 1e-4


@pytest.mark.parametrize("folder", ["pt", "sft", "merged"])
def test_saved_tokenizers_are_padded_to_the_table_with_reserved_tokens(chain, folder):
    """len(tokenizer) == rows in every folder a table padded past the tokenizer is saved in; text gets the ids of
    the tokenizer stage's folder, and langadapt still counts 1012 tokens."""
    tokenizer = AutoTokenizer.from_pretrained(chain[folder])
    plain = AutoTokenizer.from_pretrained(chain["tok"])
    assert (len(plain), len(tokenizer), vocab_size(tokenizer), vocab_size(plain)) == (1012, 1016, 1012, 1012)
    assert tokenizer.convert_ids_to_tokens([1012, 1015]) == ["<|langadapt_reserved_0|>", "<|langadapt_reserved_3|>"]
    for text in [*PROMPTS, *ITEMS[0]]:
        assert tokenizer(text)["input_ids"] == plain(text)["input_ids"]
    assert tokenizer.decode(tokenizer("سلام")["input_ids"] + [1013], skip_special_tokens=True) == \
        plain.decode(plain("سلام")["input_ids"], skip_special_tokens=True)
    info = ModelInfo.from_dir(chain[folder])
    assert (info.tokenizer_size, info.embedding_rows) == (1012, 1016)


def test_auto_peft_model_on_a_padded_adapter_equals_the_merged_model(chain, tmp_path, monkeypatch):
    """PEFT's one-call recipe from another directory on the default padded table (the table is padded, the
    tokenizer is padded with it)."""
    from peft import AutoPeftModelForCausalLM

    monkeypatch.chdir(tmp_path)
    model = AutoPeftModelForCausalLM.from_pretrained(chain["sft"])
    tokenizer = AutoTokenizer.from_pretrained(chain["sft"])
    assert model.get_input_embeddings().weight.shape[0] == 1016
    merged = AutoModelForCausalLM.from_pretrained(chain["merged"])
    assert max_diff(logits(model, tokenizer), logits(merged, tokenizer)) < 1e-4


def test_pad_with_reserved_skips_taken_names_and_is_idempotent(bpe_base_dir):
    tokenizer = AutoTokenizer.from_pretrained(bpe_base_dir)
    base = len(tokenizer)
    tokenizer.add_tokens(["<|langadapt_reserved_1|>"])  # a user token with a reserved name stays a real token
    size = len(tokenizer)
    assert vocab_size(tokenizer) == size
    assert pad_with_reserved(tokenizer, size + 3, base_rows=base) == 3
    assert len(tokenizer) == size + 3 and vocab_size(tokenizer) == size
    assert tokenizer.convert_ids_to_tokens(list(range(size, size + 3))) == [
        "<|langadapt_reserved_0|>", "<|langadapt_reserved_2|>", "<|langadapt_reserved_3|>"]
    assert pad_with_reserved(tokenizer, size + 3, base_rows=base) == 0 and len(tokenizer) == size + 3
    # A table the base already had (spare rows, e.g. Qwen) is not padded: PEFT's recipes never resize it.
    other = AutoTokenizer.from_pretrained(bpe_base_dir)
    assert reserved_rows(len(other), len(other) + 8, base_rows=len(other) + 8) == 0
    assert tokenizer_to_save(other, len(other) + 8, len(other) + 8) is other
    padded = tokenizer_to_save(other, len(other) + 8, len(other))
    assert len(padded) == len(other) + 8 and len(other) == base


def test_a_padded_tokenizer_with_another_multiple_is_refused(chain):
    """Training on a saved folder's tokenizer (padded to 1016) with a multiple giving fewer rows would save a
    tokenizer bigger than its table."""
    with pytest.raises(UsageError) as e:
        prepare_model(ModelArguments(model_name_or_path=chain["base"], tokenizer_name_or_path=chain["merged"]),
                      AdaptationArguments(training_mode="lora", lora_rank=4, lora_alpha=8, lora_dropout=0.0,
                                          pad_vocab_to_multiple_of=1))
    assert "--pad_vocab_to_multiple_of 1" in str(e.value) and chain["merged"] in str(e.value)
    same = prepare_model(ModelArguments(model_name_or_path=chain["base"], tokenizer_name_or_path=chain["merged"]),
                         AdaptationArguments(training_mode="lora", lora_rank=4, lora_alpha=8, lora_dropout=0.0,
                                             pad_vocab_to_multiple_of=8))
    assert (same.info.tokenizer_size, same.info.embedding_rows) == (1012, 1016)


def test_auto_peft_model_loads_an_unpadded_adapter_from_anywhere(tmp_path, tiny_model_dir, bpe_base_dir,
                                                                monkeypatch):
    """With rows == len(tokenizer) AutoPeftModelForCausalLM needs nothing else: the base path is absolute even when
    training was given a relative one."""
    from peft import AutoPeftModelForCausalLM

    tok = make_extended_tokenizer(bpe_base_dir, str(tmp_path / "tok"))
    os.symlink(tiny_model_dir, tmp_path / "base")
    monkeypatch.chdir(tmp_path)
    prepared = prepare_model(ModelArguments(model_name_or_path="base", tokenizer_name_or_path="tok"),
                             AdaptationArguments(training_mode="lora", embedding_init="mean", lora_rank=4,
                                                 lora_alpha=8, lora_dropout=0.0, pad_vocab_to_multiple_of=1))
    perturb_trainable(prepared.model)
    save_model(prepared.model, prepared.tokenizer, "adapter", prepared.info)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    adapter = str(tmp_path / "adapter")
    model = AutoPeftModelForCausalLM.from_pretrained(adapter)
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    reference, _ = load_with_adapters(str(tmp_path / "base"), [adapter])
    assert max_diff(logits(model, tokenizer), logits(reference, tokenizer)) < 1e-4
    assert pad_multiple(len(tokenizer), 1012) == 1


@pytest.mark.parametrize("folder", ["sft", "merged"])
def test_chat_template_renders_the_trained_prompt(chain, folder):
    tokenizer = AutoTokenizer.from_pretrained(chain[folder])
    model = AutoModelForCausalLM.from_pretrained(chain["merged"])
    for instruction, inp in ITEMS:
        message = {"role": "user", "content": instruction, **({"input": inp} if inp else {})}
        rendered = tokenizer.apply_chat_template([message], add_generation_prompt=True, return_tensors="pt",
                                                 return_dict=True)
        ours = encode_prompt(instruction, inp, "alpaca", tokenizer)
        assert rendered["input_ids"][0].tolist() == ours
        greedy = [model.generate(ids, max_new_tokens=8, do_sample=False)[0, ids.shape[1]:].tolist()
                  for ids in (rendered["input_ids"], torch.tensor([ours]))]
        assert greedy[0] == greedy[1]
    assert "### Response:" in tokenizer.chat_template


def test_lineage_refuses_an_adapter_with_its_own_continuation(chain):
    sft = load_script("inference/merge_lora.py")
    lineage = read_lineage(chain["sft"])
    assert lineage.continued_from[0]["path"] == os.path.abspath(chain["pt"])
    assert lineage.continued_from[0]["id"] == read_lineage(chain["pt"]).adapter_id
    for order in (f"{chain['pt']},{chain['sft']}", f"{chain['sft']},{chain['pt']}"):
        with pytest.raises(UsageError) as e:
            sft.main(["--base_model", chain["base"], "--lora_model", order, "--output_dir",
                      str(chain["root"] / "twice")])
        assert chain["pt"] in str(e.value) and chain["sft"] in str(e.value) and "twice" in str(e.value)
    assert not os.path.exists(chain["root"] / "twice")


def test_lineage_of_an_adapter_from_an_older_version_comes_from_run_args(chain, tmp_path):
    import shutil

    old = str(tmp_path / "sft_old")
    shutil.copytree(chain["sft"], old)
    os.remove(os.path.join(old, LINEAGE_FILE))
    assert read_lineage(old).continued_from[0]["path"] == os.path.abspath(chain["pt"])
    with pytest.raises(UsageError, match="continues the adapter"):
        load_with_adapters(chain["base"], [chain["pt"], old])


def test_inference_exits_2_naming_both_folders(chain):
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "OMP_NUM_THREADS": "1"}
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(
        [sys.executable, os.path.join(repo, "inference/perplexity.py"), "--model_name_or_path", chain["base"],
         "--adapters", f"{chain['pt']},{chain['sft']}", "--eval_files", os.path.join(chain["root"], "corpus", "fa.txt"),
         "--output_dir", str(chain["root"] / "ppl")],
        capture_output=True, text=True, env={**env, "PYTHONPATH": repo}, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert chain["pt"] in proc.stderr and chain["sft"] in proc.stderr


@pytest.mark.parametrize("folder", ["sft", "pt", "merged"])
def test_model_card_snippets_run_from_another_directory(chain, folder, tmp_path):
    card = open(os.path.join(chain[folder], "README.md"), encoding="utf-8").read()
    assert card.startswith("---\n") and "base_model:" in card and "language:" in card
    assert ("library_name: peft" if folder != "merged" else "library_name: transformers") in card
    assert "| fa.txt | 3.100 | 1.900 |" in card and "extended with 12 byte_level_bpe pieces" in card
    # llama.cpp's snippet runs in tests/test_gguf_export.py
    snippets = [s for s in python_snippets(card) if "from llama_cpp import" not in s]
    assert snippets
    if folder == "sft":
        assert "model.resize_token_embeddings(len(tokenizer))" in card and "continued from the adapter" in card
        assert "AutoPeftModelForCausalLM.from_pretrained" in card and "4 reserved special tokens" in card
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # no langadapt on the path
    env["OMP_NUM_THREADS"] = "1"
    for code in snippets:
        proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.strip() is not None


@pytest.mark.parametrize("mode", ["lora", "new_rows"])
def test_peft_recipe_for_both_adapter_kinds_on_a_tied_model(mode, tmp_path, tiny_tied_model_dir, bpe_base_dir):
    """The card's recipe (resize with the padding multiple, then PeftModel.from_pretrained) rebuilds trainable-token
    adapters too, with the tied head following the new rows."""
    from _sft_helpers import make_adapter

    tok = make_extended_tokenizer(bpe_base_dir, str(tmp_path / "tok"))
    adapter = make_adapter(tiny_tied_model_dir, tok, str(tmp_path / "adapter"), mode=mode)
    info = ModelInfo.from_dir(adapter)
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    recipe = load_with_peft(tiny_tied_model_dir, adapter, len(tokenizer), info.embedding_rows)
    reference, _ = load_with_adapters(tiny_tied_model_dir, [adapter])
    assert max_diff(logits(recipe, tokenizer), logits(reference, tokenizer)) < 1e-4
