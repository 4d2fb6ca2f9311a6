"""inference/merge_lora.py and langadapt/loading.py (adapter chain): merged logits equal adapter logits, for every
adapter kind, tied and untied heads, grown vocabularies and chains; the merged folder loads with transformers alone."""

import json
import os

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from _sft_helpers import (  # noqa: F401 (one_torch_thread is an autouse fixture)
    adapter_tensors, instruction_records, load_script, make_adapter, make_extended_tokenizer, one_torch_thread,
    pretrain_argv, sft_argv, write_dataset,
)
import tiny
from langadapt.loading import grow_embeddings, load_with_adapters
from langadapt.cli import UsageError
from langadapt.args.inference import MergeArguments
from langadapt.merge import merge_adapters
from langadapt.portable import vocab_size

merge_lora = load_script("inference/merge_lora.py")

PROMPTS = ["دل می‌رود ز دستم صاحب‌دلان خدا را", "The rose garden at night.", "عشق و ساقی و باده"]


@pytest.fixture(scope="module")
def ext_tok_dir(tmp_path_factory, bpe_base_dir):
    return make_extended_tokenizer(bpe_base_dir, str(tmp_path_factory.mktemp("ext_tok")))


def logits(model, tokenizer):
    with torch.no_grad():
        return [model(**tokenizer(p, return_tensors="pt")).logits for p in PROMPTS]


def max_diff(a, b):
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("mode", ["lora", "new_rows"])
def test_merged_logits_match_adapter_logits(tmp_path, tiny_model_dir, tiny_tied_model_dir, ext_tok_dir, tied,
                                            mode):
    base = tiny_tied_model_dir if tied else tiny_model_dir
    adapter = make_adapter(base, ext_tok_dir, str(tmp_path / "adapter"), mode=mode)
    out = str(tmp_path / "merged")
    report = merge_lora.main(["--base_model", base, "--lora_model", adapter, "--output_dir", out])
    assert report.passed and report.max_abs_diff < 1e-4 and report.check_prompts == 4
    # the adapter is not a no-op, so the check compares something
    ref, tok = load_with_adapters(base, [adapter], merge_last=False)
    plain = AutoModelForCausalLM.from_pretrained(base)
    grow_embeddings(plain, 1016)  # the base with the new rows at their initial value, no adapter
    merged = AutoModelForCausalLM.from_pretrained(out)  # transformers alone, no peft, no langadapt
    merged_tok = AutoTokenizer.from_pretrained(out)
    # 1012 tokens + 4 reserved ones padding the tokenizer to the table (langadapt.portable.pad_with_reserved)
    assert len(merged_tok) == len(tok) == 1016 and vocab_size(merged_tok) == 1012
    assert merged.get_input_embeddings().weight.shape[0] == 1016  # 1012 tokens padded to a multiple of 8
    assert merged.config.tie_word_embeddings == tied
    got, want = logits(merged, merged_tok), logits(ref, tok)
    assert max_diff(got, want) < 1e-4
    assert max_diff(got, logits(plain, tok)) > 1e-3


def test_merge_writes_exact_files_and_shards(tmp_path, tiny_model_dir, ext_tok_dir):
    adapter = make_adapter(tiny_model_dir, ext_tok_dir, str(tmp_path / "adapter"))
    with open(os.path.join(adapter, "langadapt_template.json"), "w") as f:
        json.dump({"template": "chat"}, f)
    with open(os.path.join(adapter, "langadapt_normalizer.json"), "w") as f:
        json.dump({"digits": "fa"}, f)
    out = str(tmp_path / "merged")
    # 60 KB shards: the 1016 x 32 float32 tables are 130 KB each, so the model spans several files
    merge_lora.main(["--base_model", tiny_model_dir, "--lora_model", adapter, "--output_dir", out,
                     "--max_shard_size", "60KB"])
    files = sorted(os.listdir(out))
    shards = [f for f in files if f.startswith("model-") and f.endswith(".safetensors")]
    assert len(shards) > 1
    assert sorted(set(files) - set(shards)) == sorted([
        "README.md", "chat_template.jinja", "config.json", "generation_config.json", "langadapt_model.json",
        "langadapt_normalizer.json", "langadapt_template.json", "merge_report.json", "model.safetensors.index.json",
        "run_args.json", "tokenizer.json", "tokenizer_config.json",
    ])
    assert json.load(open(os.path.join(out, "langadapt_template.json"))) == {"template": "chat"}
    assert json.load(open(os.path.join(out, "langadapt_normalizer.json"))) == {"digits": "fa"}
    info = json.load(open(os.path.join(out, "langadapt_model.json")))
    assert info["is_adapter"] is False and info["merged_adapters"] == [os.path.abspath(adapter)]
    assert (info["base_embedding_rows"], info["embedding_rows"], info["tokenizer_size"]) == (1000, 1016, 1012)
    report = json.load(open(os.path.join(out, "merge_report.json")))
    assert report["passed"] and report["template"] == "chat" and report["max_abs_diff"] <= report["tolerance"]
    # a second merge into the same folder needs --overwrite_output_dir
    with pytest.raises(UsageError, match="--overwrite_output_dir|--overwrite"):
        merge_lora.main(["--base_model", tiny_model_dir, "--lora_model", adapter, "--output_dir", out])


def test_chain_of_adapters_parents_first(tmp_path, tiny_model_dir, ext_tok_dir):
    """An adapter trained on top of a merged parent records it; one path or the explicit chain give one model."""
    parent = make_adapter(tiny_model_dir, ext_tok_dir, str(tmp_path / "pt"), mode="lora", seed=1)
    child = make_adapter(tiny_model_dir, ext_tok_dir, str(tmp_path / "sft"), mode="new_rows", seed=2,
                         peft_path=parent)
    assert json.load(open(os.path.join(child, "langadapt_model.json")))["parent_adapters"] == \
        [os.path.abspath(parent)]
    one, tok = load_with_adapters(tiny_model_dir, [child])
    both, _ = load_with_adapters(tiny_model_dir, [parent, child])
    parent_only, _ = load_with_adapters(tiny_model_dir, [parent])
    assert max_diff(logits(one, tok), logits(both, tok)) == 0
    assert max_diff(logits(one, tok), logits(parent_only, tok)) > 1e-3
    report = merge_adapters(MergeArguments(model_name_or_path=tiny_model_dir, peft_path=child,
                                           output_dir=str(tmp_path / "merged")))
    assert report.adapters == [os.path.abspath(parent), child] and report.passed
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged"))
    assert max_diff(logits(merged, tok), logits(both, tok)) < 1e-4


def test_new_adapter_on_a_merged_model(tmp_path, tiny_model_dir, ext_tok_dir, persian_lines):
    """Deployment flow: merge the pretraining adapter, instruction-tune a new adapter on it, merge again."""
    sft = load_script("sft/run_clm_sft_with_peft.py")
    pt = make_adapter(tiny_model_dir, ext_tok_dir, str(tmp_path / "pt"), mode="lora")
    merged_pt = str(tmp_path / "merged_pt")
    merge_lora.main(["--base_model", tiny_model_dir, "--lora_model", pt, "--output_dir", merged_pt])
    data = write_dataset(str(tmp_path / "data"), instruction_records(persian_lines, 8))
    sft_out = str(tmp_path / "sft")
    sft.main(sft_argv(merged_pt, merged_pt, data, sft_out, "--training_mode", "lora"))
    info = json.load(open(os.path.join(sft_out, "langadapt_model.json")))
    # the merged model already has the grown table: nothing new to add, no modules_to_save needed
    assert info["base_embedding_rows"] == info["embedding_rows"] == 1016 and info["parent_adapters"] == []
    final = str(tmp_path / "final")
    report = merge_lora.main(["--base_model", merged_pt, "--lora_model", sft_out, "--output_dir", final])
    assert report.passed and report.max_abs_diff < 1e-4
    assert os.path.isfile(os.path.join(final, "langadapt_normalizer.json"))


def test_adapter_of_another_vocabulary_is_refused(tmp_path, tiny_model_dir, ext_tok_dir):
    adapter = make_adapter(tiny_model_dir, ext_tok_dir, str(tmp_path / "adapter"))
    other = tiny.make_tiny_llama(ext_tok_dir, str(tmp_path / "other_base"))  # 1012 rows: neither 1000 nor 1016
    out = tmp_path / "merged"
    with pytest.raises(UsageError, match=r"trained on a model with 1000 embedding rows .* has 1012"):
        merge_lora.main(["--base_model", other, "--lora_model", adapter, "--output_dir", str(out)])
    assert not out.exists()


def test_bad_paths_and_failed_check_write_nothing(tmp_path, tiny_model_dir, ext_tok_dir):
    out = tmp_path / "merged"
    with pytest.raises(UsageError, match="--peft_path: .*nope does not exist"):
        merge_lora.main(["--base_model", tiny_model_dir, "--lora_model", str(tmp_path / "nope"),
                         "--output_dir", str(out)])
    with pytest.raises(UsageError, match="it is not a PEFT adapter folder"):
        merge_lora.main(["--base_model", tiny_model_dir, "--lora_model", ext_tok_dir, "--output_dir", str(out)])
    with pytest.raises(UsageError, match="--peft_path is required"):
        merge_lora.main(["--base_model", tiny_model_dir, "--output_dir", str(out)])
    adapter = make_adapter(tiny_model_dir, ext_tok_dir, str(tmp_path / "adapter"))
    # bfloat16 output rounds every weight: a tolerance of 1e-9 cannot hold, so nothing may be written
    with pytest.raises(UsageError, match=r"differ from the adapters' by up to .* nothing was written"):
        merge_lora.main(["--base_model", tiny_model_dir, "--lora_model", adapter, "--output_dir", str(out),
                         "--output_dtype", "bfloat16", "--tolerance", "1e-9"])
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".merged")]


def _state(folder):
    return AutoModelForCausalLM.from_pretrained(folder).state_dict()


@pytest.mark.parametrize("tied", [False, True])
def test_low_memory_merge_equals_in_memory_merge(tmp_path, tiny_model_dir, tiny_tied_model_dir, ext_tok_dir, tied):
    """Shard by shard (on a base split into several shards) gives the weights PEFT's merge gives, chain included."""
    base = str(tmp_path / "sharded_base")
    AutoModelForCausalLM.from_pretrained(tiny_tied_model_dir if tied else tiny_model_dir).save_pretrained(
        base, max_shard_size="60KB")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(base)
    assert os.path.isfile(os.path.join(base, "model.safetensors.index.json"))
    parent = make_adapter(base, ext_tok_dir, str(tmp_path / "pt"), mode="lora", seed=1)
    child = make_adapter(base, ext_tok_dir, str(tmp_path / "sft"), mode="new_rows", seed=2, peft_path=parent)
    outs = {}
    for low in (False, True):
        outs[low] = str(tmp_path / f"merged_{low}")
        report = merge_lora.main(["--base_model", base, "--lora_model", child, "--output_dir", outs[low]]
                                 + (["--low_memory"] if low else []))
        assert report.passed and report.max_abs_diff < 1e-4
    assert len([f for f in os.listdir(outs[True]) if f.endswith(".safetensors")]) > 1
    a, b = _state(outs[False]), _state(outs[True])
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-6, atol=1e-6, msg=k)
    cfg = json.load(open(os.path.join(outs[True], "config.json")))
    assert cfg["vocab_size"] == 1016 and cfg["tie_word_embeddings"] == tied


def test_low_memory_refuses_what_it_does_not_implement(tmp_path, tiny_model_dir, ext_tok_dir):
    adapter = make_adapter(tiny_model_dir, ext_tok_dir, str(tmp_path / "adapter"))
    cfg_path = os.path.join(adapter, "adapter_config.json")
    cfg = json.load(open(cfg_path))
    cfg["use_dora"] = True
    json.dump(cfg, open(cfg_path, "w"))
    with pytest.raises(UsageError, match="uses use_dora, which the shard-by-shard merge does not implement"):
        merge_lora.main(["--base_model", tiny_model_dir, "--lora_model", adapter, "--output_dir",
                         str(tmp_path / "m"), "--low_memory"])
    assert not (tmp_path / "m").exists()


def test_pretrain_then_sft_then_merge_on_a_tied_model(tmp_path, tiny_tied_model_dir, ext_tok_dir, persian_lines):
    """The bundled default's path (SmolLM2 ties its head): pretraining script -> SFT continuing the same adapter ->
    merge; the merged table is the trained one, still tied, and the logits match."""
    pretrain = load_script("pretrain/run_clm_pt_with_peft.py")
    sft = load_script("sft/run_clm_sft_with_peft.py")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "fa.txt").write_text("\n".join(persian_lines[:400]) + "\n", encoding="utf-8")
    pt, sft_out, merged = str(tmp_path / "pt"), str(tmp_path / "sft"), str(tmp_path / "merged")
    pretrain.main(pretrain_argv(tiny_tied_model_dir, ext_tok_dir, str(corpus), pt))
    data = write_dataset(str(tmp_path / "data"), instruction_records(persian_lines, 8))
    sft.main(sft_argv(tiny_tied_model_dir, ext_tok_dir, data, sft_out, "--peft_path", pt, "--training_mode", "lora"))
    report = merge_lora.main(["--base_model", tiny_tied_model_dir, "--lora_model", sft_out, "--output_dir", merged])
    assert report.passed and report.max_abs_diff < 1e-4
    model = AutoModelForCausalLM.from_pretrained(merged)
    assert model.config.tie_word_embeddings
    trained = adapter_tensors(sft_out)["base_model.model.model.embed_tokens.weight"]
    torch.testing.assert_close(model.get_input_embeddings().weight, trained, rtol=0, atol=0)
    assert not torch.equal(trained, adapter_tensors(pt)["base_model.model.model.embed_tokens.weight"])
