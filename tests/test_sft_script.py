"""sft/run_clm_sft_with_peft.py end to end on a tiny model: files written, continuing the pretraining adapter,
resume, packing, bad input."""

import json
import math
import os

import pytest
import torch

from _sft_helpers import (  # noqa: F401 (one_torch_thread is an autouse fixture)
    adapter_tensors, instruction_records, load_script, make_extended_tokenizer, one_torch_thread, pretrain_argv,
    sft_argv, write_dataset,
)
from _resume_helpers import carries_mark, logged_steps, mark_checkpoint, step_recording_callback
from langadapt.cli import UsageError

sft = load_script("sft/run_clm_sft_with_peft.py")


@pytest.fixture(scope="module")
def ext_tok_dir(tmp_path_factory, bpe_base_dir):
    return make_extended_tokenizer(bpe_base_dir, str(tmp_path_factory.mktemp("ext_tok")))


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory, persian_lines):
    root = tmp_path_factory.mktemp("sft_data")
    train = write_dataset(str(root / "train"), instruction_records(persian_lines, 24))
    dev = write_dataset(str(root / "dev"), instruction_records(persian_lines[200:], 4), split_jsonl=False)
    return train, os.path.join(dev, "part1.json")


@pytest.fixture(scope="module")
def pt_adapter(tmp_path_factory, tiny_model_dir, ext_tok_dir, persian_lines):
    """A LoRA + embeddings adapter written by the pretraining script itself."""
    pretrain = load_script("pretrain/run_clm_pt_with_peft.py")
    root = tmp_path_factory.mktemp("pt")
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "fa.txt").write_text("\n".join(persian_lines[:400]) + "\n", encoding="utf-8")
    out = str(root / "out")
    pretrain.main(pretrain_argv(tiny_model_dir, ext_tok_dir, str(corpus), out))
    return out


def test_smoke_continues_pretraining_adapter_and_writes_exact_files(tmp_path, tiny_model_dir, ext_tok_dir,
                                                                   sft_data, pt_adapter):
    train, dev = sft_data
    out = str(tmp_path / "sft")
    metrics = sft.main(sft_argv(
        tiny_model_dir, ext_tok_dir, train, out, "--peft_path", pt_adapter, "--training_mode", "lora",
        "--validation_file", dev, "--eval_strategy", "steps", "--eval_steps", "2", "--report_to", "tensorboard",
        "--sample_max_new_tokens", "4", "--template", "alpaca",
    ))
    assert sorted(os.listdir(out)) == sorted([
        "README.md", "adapter_config.json", "adapter_model.safetensors", "all_results.json", "chat_template.jinja",
        "langadapt_lineage.json", "langadapt_model.json", "langadapt_normalizer.json", "langadapt_template.json",
        "langadapt_tokenizer.json",
        "run_args.json", "runs", "samples.jsonl", "tokenizer.json", "tokenizer_config.json", "trainer_state.json",
        "training_args.bin",
    ])
    results = json.load(open(os.path.join(out, "all_results.json")))
    assert math.isfinite(results["train_loss"]) and math.isfinite(results["eval_loss"])
    # --max_seq_length 256 cuts a few long examples and drops one whose prompt alone is longer: counted, not hidden
    assert results["train_examples"] == 24 and results["eval_examples"] == 4
    assert results["train_kept"] + results["train_dropped_prompt_too_long"] == 24 and results["train_truncated"] > 0
    assert metrics["train_label_tokens"] < metrics["train_tokens"]
    info = json.load(open(os.path.join(out, "langadapt_model.json")))
    pt_info = json.load(open(os.path.join(pt_adapter, "langadapt_model.json")))
    # the same adapter trained further: no parent to re-apply, same table
    assert info["is_adapter"] and info["training_mode"] == "lora" and info["parent_adapters"] == []
    assert info["embedding_rows"] == pt_info["embedding_rows"] > info["base_embedding_rows"]
    assert json.load(open(os.path.join(out, "langadapt_template.json"))) == {"template": "alpaca"}
    run_args = json.load(open(os.path.join(out, "run_args.json")))
    assert run_args["data"]["template"] == "alpaca" and run_args["resolved"]["max_seq_length"] == 256
    samples = [json.loads(line) for line in open(os.path.join(out, "samples.jsonl"), encoding="utf-8")]
    assert samples and samples[0]["prompt"].endswith("### Response:\n")
    # it trained: every LoRA tensor moved away from the pretraining adapter's values
    before, after = adapter_tensors(pt_adapter), adapter_tensors(out)
    assert set(before) == set(after)
    lora = [k for k in before if "lora_" in k]
    assert lora and all(not torch.equal(before[k], after[k]) for k in lora)
    assert os.listdir(os.path.join(out, "runs"))  # TensorBoard event files


def test_continuation_starts_from_the_pretraining_weights(tmp_path, tiny_model_dir, ext_tok_dir, sft_data,
                                                          pt_adapter):
    """With learning rate 0 the SFT adapter equals the pretraining adapter, tensor for tensor."""
    out = str(tmp_path / "sft_lr0")
    sft.main(sft_argv(tiny_model_dir, ext_tok_dir, sft_data[0], out, "--peft_path", pt_adapter,
                      "--training_mode", "lora", "--learning_rate", "0", "--max_steps", "1"))
    before, after = adapter_tensors(pt_adapter), adapter_tensors(out)
    lora_b = [k for k in before if "lora_B" in k]
    assert lora_b and all(before[k].abs().sum() > 0 for k in lora_b)  # a fresh adapter would have B == 0
    for k in before:
        torch.testing.assert_close(after[k], before[k], rtol=0, atol=0, msg=k)


def test_resume_matches_an_unbroken_run(tmp_path, tiny_model_dir, ext_tok_dir, sft_data, monkeypatch):
    """2 steps, then the same folder with --max_steps 4: the rerun computes steps 3 and 4 only, from checkpoint-2's
    trainer state, and ends with the losses and weights of an unbroken 4-step run."""
    common = ("--training_mode", "lora", "--lr_scheduler_type", "constant", "--save_strategy", "steps",
              "--save_steps", "2", "--per_device_train_batch_size", "2")
    unbroken = str(tmp_path / "unbroken")
    sft.main(sft_argv(tiny_model_dir, ext_tok_dir, sft_data[0], unbroken, *common, "--max_steps", "4"))
    broken = str(tmp_path / "broken")
    sft.main(sft_argv(tiny_model_dir, ext_tok_dir, sft_data[0], broken, *common, "--max_steps", "2"))
    assert os.path.isdir(os.path.join(broken, "checkpoint-2"))
    mark_checkpoint(os.path.join(broken, "checkpoint-2"))
    steps_run = []
    monkeypatch.setattr(sft, "PreemptionCallback", step_recording_callback(sft.PreemptionCallback, steps_run))
    sft.main(sft_argv(tiny_model_dir, ext_tok_dir, sft_data[0], broken, *common, "--max_steps", "4"))
    assert steps_run == [3, 4]  # a restart from step 0 would recompute 1 and 2
    assert carries_mark(broken)  # the trainer state came from checkpoint-2
    run_args = json.load(open(os.path.join(broken, "run_args.json")))
    assert run_args["resolved"]["resumed_from"].endswith("checkpoint-2")

    resumed, straight = logged_steps(broken), logged_steps(unbroken)
    assert sorted(resumed) == [1, 2, 3, 4]
    for step in (3, 4):  # the data order and the optimizer moments continue
        assert resumed[step]["loss"] == pytest.approx(straight[step]["loss"], rel=1e-4)
    a, b = adapter_tensors(unbroken), adapter_tensors(broken)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-6)


def test_packing_gives_the_same_loss_as_padding(tmp_path, tiny_model_dir, ext_tok_dir, sft_data):
    """The script with --packing (one row per batch, position ids restarting per example) and without (padded rows):
    with learning rate 0 the logged training loss of each step and the evaluation loss are equal, which holds only
    if packed examples never attend to each other (the script must train without the KV cache, see sft_data)."""
    common = ("--training_mode", "lora", "--learning_rate", "0", "--max_steps", "2", "--validation_file",
              sft_data[1], "--per_device_eval_batch_size", "4", "--eval_strategy", "steps", "--eval_steps", "2",
              "--template", "chat")
    padded, packed = str(tmp_path / "padded"), str(tmp_path / "packed")
    m_padded = sft.main(sft_argv(tiny_model_dir, ext_tok_dir, sft_data[0], padded, *common))
    m_packed = sft.main(sft_argv(tiny_model_dir, ext_tok_dir, sft_data[0], packed, *common, "--packing"))

    def logged(d):
        state = json.load(open(os.path.join(d, "trainer_state.json")))
        return ({h["step"]: h["loss"] for h in state["log_history"] if "loss" in h},
                {h["step"]: h["eval_loss"] for h in state["log_history"] if "eval_loss" in h})

    (train_padded, eval_padded), (train_packed, eval_packed) = logged(padded), logged(packed)
    assert sorted(train_packed) == sorted(train_padded) == [1, 2] and sorted(eval_packed) == [2]
    for step in (1, 2):
        assert train_packed[step] == pytest.approx(train_padded[step], abs=1e-5), step
    assert eval_packed[2] == pytest.approx(eval_padded[2], abs=1e-5)
    # The final evaluation, after training, too.
    assert m_packed["eval_loss"] == pytest.approx(m_padded["eval_loss"], abs=1e-5)
    # A KV cache would merge the packed examples: refused before anything is loaded.
    with pytest.raises(UsageError, match="--use_cache: packed examples would attend"):
        sft.main(sft_argv(tiny_model_dir, ext_tok_dir, sft_data[0], str(tmp_path / "cache"), *common, "--packing",
                          "--use_cache", "True"))
    assert not os.path.exists(tmp_path / "cache")


def test_packing_and_length_grouping_write_the_template(tmp_path, tiny_model_dir, ext_tok_dir, sft_data):
    out = str(tmp_path / "packed")
    metrics = sft.main(sft_argv(tiny_model_dir, ext_tok_dir, sft_data[0], out, "--training_mode", "lora",
                                "--packing", "--train_sampling_strategy", "group_by_length", "--template", "chat"))
    assert math.isfinite(metrics["train_loss"])
    assert json.load(open(os.path.join(out, "langadapt_template.json"))) == {"template": "chat"}


def test_bad_input_stops_before_writing(tmp_path, tiny_model_dir, ext_tok_dir, sft_data):
    out = tmp_path / "out"
    with pytest.raises(UsageError, match=r"--validation_file: .*missing.json does not exist"):
        sft.main(sft_argv(tiny_model_dir, ext_tok_dir, sft_data[0], str(out), "--validation_file",
                          str(tmp_path / "missing.json")))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.json").write_text(json.dumps([{"instruction": "x", "output": "y"}, {"input": "z", "output": 1}]))
    with pytest.raises(UsageError, match=r"a.json: record 1: missing 'instruction'"):
        sft.main(sft_argv(tiny_model_dir, ext_tok_dir, str(bad), str(out)))
    (bad / "a.json").write_text("[]")
    with pytest.raises(UsageError, match="hold no records"):
        sft.main(sft_argv(tiny_model_dir, ext_tok_dir, str(bad), str(out)))
    assert not out.exists()


def test_adapter_of_another_vocabulary_is_refused(tmp_path, tiny_model_dir, bpe_base_dir, sft_data, pt_adapter):
    """The pretraining adapter was trained on the extended vocabulary; the base tokenizer does not fit it."""
    with pytest.raises(UsageError, match="--peft_path: the adapter .* embedding rows"):
        sft.main(sft_argv(tiny_model_dir, bpe_base_dir, sft_data[0], str(tmp_path / "o"), "--peft_path",
                          pt_adapter, "--training_mode", "lora"))
    assert not (tmp_path / "o").exists()


class _RecordingModel(torch.nn.Module):
    """Stands in for a causal LM: records the prompt ids generate() gets and returns them with one token more."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen = []

    def generate(self, input_ids, **kwargs):
        self.seen.append(input_ids[0].tolist())
        return torch.cat([input_ids, input_ids[:, -1:]], dim=1)


def test_sample_prompts_with_their_own_bos_are_not_given_a_second_one(sp_base_dir):
    """--template chat prompts already start with BOS; the SFT script turns the tokenizer's BOS off for them."""
    from transformers import AutoTokenizer

    from langadapt.templates import prompt_adds_special_tokens
    from langadapt.training import SampleGenerationCallback

    tok = AutoTokenizer.from_pretrained(sp_base_dir)
    assert tok("x")["input_ids"][0] == tok.bos_token_id  # a BOS-adding tokenizer (Llama-2 style)
    prompt = tok.bos_token + "سلام"  # what a chat template writes
    for template, bos_count in (("chat", 1), ("alpaca", 2)):
        model = _RecordingModel()
        cb = SampleGenerationCallback(tok, [prompt], "unused.jsonl", max_new_tokens=1,
                                      add_special_tokens=prompt_adds_special_tokens(template))
        cb.generate(model)
        assert model.seen[0].count(tok.bos_token_id) == bos_count, template
