"""SFT data: reading Alpaca records, masking exactly the prompt, truncation, packing, one template for training
and inference."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from _sft_helpers import instruction_records, one_torch_thread, write_dataset  # noqa: F401 (autouse fixture)
from langadapt.args.sft import SFTDataArguments
from langadapt.cli import UsageError
from langadapt.normalize import NormalizerConfig
from langadapt.sft_data import (
    IGNORE_INDEX, PaddingCollator, SFTRecord, make_collator, read_sft_records, tokenize_records,
)
from langadapt.templates import encode_prompt, response_suffix


@pytest.fixture(scope="module")
def bpe_tok(bpe_base_dir):
    return AutoTokenizer.from_pretrained(bpe_base_dir)


@pytest.fixture(scope="module")
def sp_tok(sp_base_dir):
    return AutoTokenizer.from_pretrained(sp_base_dir)


def test_read_json_and_jsonl_with_int_outputs_and_normalization(tmp_path, persian_lines):
    records = instruction_records(persian_lines, 6)
    records[0]["instruction"] = "مصراع بعدي را بنويس."  # Arabic yeh: must come out as Persian yeh
    write_dataset(str(tmp_path), records)
    got = read_sft_records(str(tmp_path), normalizer=NormalizerConfig())
    assert len(got) == 6
    assert got[0].instruction == "مصراع بعدی را بنویس."
    assert got[2].output == str(records[2]["output"]) and isinstance(records[2]["output"], int)
    assert got[1].input == "" and got[0].input == records[0]["input"]
    assert got[0].where.endswith("part1.json: record 0")
    assert got[3].where.endswith("part2.jsonl:1")
    # without a normalizer the text is kept as written
    assert read_sft_records(str(tmp_path))[0].instruction == records[0]["instruction"]


@pytest.mark.parametrize(
    "content, name, message",
    [
        ('{"instruction": "a", "output": "b"}', "x.json", r"x.json: the top-level JSON value is a dict; a .json file must hold a list of objects"),
        ('[{"instruction": "a", "output": "b"}, {"instruction": "c"}]', "x.json",
         r"x.json: record 1: missing 'output'"),
        ('{"instruction": "a", "output": "b"}\n{"output": "b"}\n', "x.jsonl",
         r"x.jsonl:2: missing 'instruction'"),
        ('["just text"]', "x.json", r"x.json: record 0: expected an object"),
        ('[{"instruction": "a", "output": ["b"]}]', "x.json", r"record 0: 'output' must be text or a number"),
        ('[{"instruction": "a", "output": "b"},', "x.json", r"x.json:1: not valid JSON"),
        ("[]", "x.json", r"hold no records"),
    ],
)
def test_bad_records_name_file_and_index(tmp_path, content, name, message):
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(UsageError, match=message):
        read_sft_records(str(tmp_path))


def test_missing_inputs_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        read_sft_records(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="--validation_file: .* does not exist"):
        SFTDataArguments(dataset_dir=str(tmp_path), validation_file=str(tmp_path / "dev.json"))
    with pytest.raises(ValueError, match="--dataset_dir is required"):
        SFTDataArguments()


@pytest.mark.parametrize("tok_name, template", [("bpe_tok", "alpaca"), ("sp_tok", "alpaca"), ("bpe_tok", "chat"),
                                               ("sp_tok", "none")])
def test_labels_mask_exactly_the_prompt(request, persian_lines, tok_name, template):
    tok = request.getfixturevalue(tok_name)
    records = [SFTRecord(r["instruction"], r.get("input", ""), str(r["output"]), f"r{i}")
               for i, r in enumerate(instruction_records(persian_lines, 6))]
    examples, stats = tokenize_records(records, tok, template, max_seq_length=4096)
    assert stats.kept == 6 and stats.truncated == 0
    for rec, ex in zip(records, examples):
        prompt = encode_prompt(rec.instruction, rec.input, template, tok)
        n = len(prompt)
        assert ex["input_ids"][:n] == prompt  # the prompt inference will feed, token for token
        assert ex["labels"][:n] == [IGNORE_INDEX] * n
        assert ex["labels"][n:] == ex["input_ids"][n:]  # every response token (and EOS) is trained on
        assert IGNORE_INDEX not in ex["labels"][n:]
        assert ex["labels"][-1] == tok.eos_token_id
        response = tok.decode(ex["input_ids"][n:], skip_special_tokens=True)
        assert rec.output in response
    assert stats.label_tokens == sum(sum(t != IGNORE_INDEX for t in e["labels"]) for e in examples)


def test_int_output_trained_as_text(bpe_tok):
    (ex,), _ = tokenize_records([SFTRecord("Label the sentiment.", "I love it", "0", "r0")], bpe_tok, "alpaca", 512)
    trained = [t for t in ex["labels"] if t != IGNORE_INDEX]
    assert trained == bpe_tok("0", add_special_tokens=False)["input_ids"] + [bpe_tok.eos_token_id]


def test_chat_template_response_closes_the_turn(bpe_tok):
    assert response_suffix("chat", bpe_tok) == "<|im_end|>\n"
    assert response_suffix("alpaca", bpe_tok) == ""
    (ex,), _ = tokenize_records([SFTRecord("سلام", "", "درود", "r0")], bpe_tok, "chat", 512)
    text = bpe_tok.decode([t for t in ex["labels"] if t != IGNORE_INDEX])
    assert text == "درود<|im_end|>\n<|endoftext|>"


def test_truncation_counted_and_drop_option(bpe_tok, caplog):
    long = SFTRecord("Repeat.", "", "word " * 200, "r0")
    short = SFTRecord("Say yes.", "", "yes", "r1")
    huge_prompt = SFTRecord("word " * 300, "", "x", "r2")
    examples, stats = tokenize_records([long, short, huge_prompt], bpe_tok, "none", 64)
    assert (stats.kept, stats.truncated, stats.dropped_prompt_too_long) == (2, 1, 1)
    assert len(examples[0]["input_ids"]) == 64 and examples[0]["labels"][-1] != bpe_tok.eos_token_id
    assert "1 cut at the end" in caplog.text
    examples, stats = tokenize_records([long, short, huge_prompt], bpe_tok, "none", 64, drop_long=True)
    assert (stats.kept, stats.dropped_long, stats.truncated) == (1, 2, 0)
    with pytest.raises(UsageError, match="every example is longer than --max_seq_length 8"):
        tokenize_records([long], bpe_tok, "alpaca", 8)


def test_padding_collator():
    batch = PaddingCollator(pad_token_id=7, pad_to_multiple_of=4)(
        [{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]}, {"input_ids": [4], "labels": [4]}]
    )
    assert batch["input_ids"].tolist() == [[1, 2, 3, 7], [4, 7, 7, 7]]
    assert batch["labels"].tolist() == [[-100, 2, 3, -100], [4, -100, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packing_has_no_cross_contamination(tiny_model_dir, bpe_tok, persian_lines, attn):
    """Logits and loss of a packed batch equal those of each example alone."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation=attn).eval()
    records = [SFTRecord(r["instruction"], r.get("input", ""), str(r["output"]), "")
               for r in instruction_records(persian_lines, 3)]
    examples, _ = tokenize_records(records, bpe_tok, "alpaca", 512)
    packed = make_collator(bpe_tok, packing=True)(examples)
    assert "attention_mask" not in packed and packed["input_ids"].shape[0] == 1
    padded = make_collator(bpe_tok, packing=False)(examples)
    with torch.no_grad():
        # use_cache=False as in training (the SFT script turns the KV cache off): with a cache, transformers does
        # not read packed position ids as example boundaries
        packed_logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"],
                              use_cache=False).logits[0]
        start = 0
        for ex in examples:
            n = len(ex["input_ids"])
            alone = model(input_ids=torch.tensor([ex["input_ids"]])).logits[0]
            torch.testing.assert_close(packed_logits[start:start + n], alone, atol=1e-5, rtol=1e-4)
            start += n
        loss_packed = model(**packed, use_cache=False).loss
        loss_padded = model(**padded).loss
    # both average over the same response tokens (the first label of each packed example is a prompt token)
    torch.testing.assert_close(loss_packed, loss_padded, atol=1e-5, rtol=1e-4)


def test_training_and_inference_prompts_come_from_one_place(tiny_model_dir, sp_tok, bpe_tok):
    """The inference generator feeds exactly the prompt tokens SFT masked, for the same record."""
    from langadapt.evaldata import Example
    from langadapt.generation import HFGenerator

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    norm = NormalizerConfig()
    record = {"instruction": "این جمله را ترجمه كن.", "input": "The rose is red.", "output": "گل سرخ است."}
    for tok, template in ((sp_tok, "alpaca"), (bpe_tok, "chat"), (bpe_tok, "alpaca")):
        gen = HFGenerator(model, tok, template, normalizer=norm)
        ex = Example(id=0, instruction=record["instruction"], input=record["input"])
        infer_ids = gen.encode([gen.prompt(ex)])["input_ids"][0]
        from langadapt.normalize import normalize

        rec = SFTRecord(normalize(record["instruction"], norm), normalize(record["input"], norm),
                        record["output"], "r0")
        (ex,), _ = tokenize_records([rec], tok, template, 512)
        n_prompt = ex["labels"].index(next(t for t in ex["labels"] if t != IGNORE_INDEX))
        assert ex["input_ids"][:n_prompt] == list(infer_ids), template


def test_sft_args_json_config(tmp_path):
    from langadapt.cli import parse_args

    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"dataset_dir": str(tmp_path), "template": "chat", "packing": True}))
    (args,) = parse_args((SFTDataArguments,), [str(cfg)])
    assert args.template == "chat" and args.packing and args.dataset_paths == [str(tmp_path)]
    with pytest.raises(SystemExit):  # argparse rejects a template that is not one of the choices
        parse_args((SFTDataArguments,), ["--dataset_dir", str(tmp_path), "--template", "vicuna"])
