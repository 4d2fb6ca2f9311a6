"""Held-out perplexity per word and per character: definitions, windowing, batching, the script, adapters."""

import json
import math
import os
import sys

import pytest
import torch
import torch.nn.functional as F

from langadapt.cli import UsageError
from langadapt.perplexity import corpus_perplexity, document_ids, windows
import _scripts  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script():
    return _scripts.load_script("inference/perplexity.py")


@pytest.fixture(scope="module")
def model_and_tok(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def docs(persian_lines, english_lines):
    return list(persian_lines[:12]) + list(english_lines[:8])


def _recount(model, tok, docs):
    """Reference: each document in one forward pass, summed NLL of every token after the start token."""
    nll, words, chars = 0.0, 0, 0
    for d in docs:
        ids = torch.tensor([[tok.eos_token_id] + tok(d, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            logits = model(ids).logits[0, :-1]
        nll += F.cross_entropy(logits, ids[0, 1:], reduction="sum").item()
        words += len(d.split())
        chars += len(d)
    return nll, words, chars


def test_per_word_and_per_char_perplexity_equal_the_recount(model_and_tok, docs):
    model, tok = model_and_tok
    r = corpus_perplexity(model, tok, docs, block_size=512)
    nll, words, chars = _recount(model, tok, docs)
    assert r.documents == len(docs) and r.words == words and r.chars == chars
    assert r.nll == pytest.approx(nll, rel=1e-4)
    assert r.ppl_word == pytest.approx(math.exp(nll / words), rel=1e-3)
    assert r.ppl_char == pytest.approx(math.exp(nll / chars), rel=1e-3)
    assert r.ppl_token == pytest.approx(math.exp(nll / r.tokens), rel=1e-3)
    assert r.tokens == sum(len(tok(d, add_special_tokens=False)["input_ids"]) for d in docs)


def test_batching_and_windowing_do_not_change_the_total(model_and_tok, docs):
    model, tok = model_and_tok
    one = corpus_perplexity(model, tok, docs, block_size=512, batch_tokens=1)
    many = corpus_perplexity(model, tok, docs, block_size=512, batch_tokens=100_000)
    assert many.nll == pytest.approx(one.nll, rel=1e-4)
    short = corpus_perplexity(model, tok, docs, block_size=8)
    assert short.tokens == one.tokens
    assert short.nll > 0 and math.isfinite(short.nll)  # windows see less context, so it differs but stays finite


def test_windows_predict_every_token_exactly_once():
    ids = list(range(100, 123))
    got = windows(ids, 5)
    assert [t for _, t in got] == [ids[i + 1:i + 6] for i in range(0, 22, 5)]
    assert sum(len(t) for _, t in got) == len(ids) - 1
    assert all(len(x) == len(t) <= 5 for x, t in got)
    assert windows([7], 5) == []


def test_document_start_token(model_and_tok, sp_base_dir):
    from transformers import AutoTokenizer

    _, bpe = model_and_tok
    assert document_ids(bpe, "hello world")[0] == bpe.eos_token_id  # no BOS added: EOS separates documents
    sp = AutoTokenizer.from_pretrained(sp_base_dir)
    ids = document_ids(sp, "hello world")
    assert ids[0] == sp.bos_token_id and ids.count(sp.bos_token_id) == 1


def test_script_writes_perplexity_json(tiny_model_dir, persian_lines, english_lines, tmp_path):
    fa = tmp_path / "fa.jsonl"
    fa.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in persian_lines[:30]))
    en = tmp_path / "en.txt"
    en.write_text("\n".join(english_lines[:30]) + "\n")
    out = tmp_path / "ppl"
    payload = load_script().main(["--model_name_or_path", tiny_model_dir, "--eval_files", f"{fa},{en}",
                                  "--output_dir", str(out), "--max_words", "100", "--name", "base"])
    saved = json.loads((out / "perplexity.json").read_text())
    assert saved["name"] == "base" and set(saved["files"]) == {"fa", "en"}
    for r in saved["files"].values():
        assert 100 <= r["words"] < 100 + 60  # stops at the first document past the limit
        assert math.isfinite(r["ppl_word"]) and r["ppl_word"] > r["ppl_char"] > 1
    assert (out / "run_args.json").is_file()
    assert payload["files"]["fa"]["nll"] == saved["files"]["fa"]["nll"]
    with pytest.raises(UsageError, match="exists and is not empty"):
        load_script().main(["--model_name_or_path", tiny_model_dir, "--eval_files", str(fa), "--output_dir", str(out)])


def test_script_scores_raw_persian_as_its_normalized_text(tiny_model_dir, persian_lines, tmp_path):
    """Documents of raw Persian (Arabic yeh/kaf, presentation forms, stray ZWNJs) are normalized with the tokenizer
    folder's normalizer before counting and tokenizing: same NLL, words and characters as the normalized file."""
    from tiny import RAW_PERSIAN

    from langadapt.normalize import normalize

    raw_docs = [f"{RAW_PERSIAN} {line}" for line in persian_lines[:6]]
    assert all(normalize(d) != d for d in raw_docs)
    (tmp_path / "raw").mkdir()
    (tmp_path / "clean").mkdir()
    (tmp_path / "raw" / "fa.txt").write_text("\n".join(raw_docs) + "\n", encoding="utf-8")
    (tmp_path / "clean" / "fa.txt").write_text("\n".join(map(normalize, raw_docs)) + "\n", encoding="utf-8")
    got = {}
    for name in ("raw", "clean"):
        got[name] = load_script().main(["--model_name_or_path", tiny_model_dir, "--eval_files",
                                        str(tmp_path / name / "fa.txt"), "--output_dir", str(tmp_path / f"o_{name}")])
    assert got["raw"]["files"]["fa"]["nll"] == pytest.approx(got["clean"]["files"]["fa"]["nll"], abs=1e-4)
    for key in ("tokens", "words", "chars"):
        assert got["raw"]["files"]["fa"][key] == got["clean"]["files"]["fa"][key], key


def test_larger_tokenizer_is_accepted_and_its_init_recorded(tiny_model_dir, persian_lines, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.add_tokens(["حافظ", "دل", "عشق"])
    tok_dir = tmp_path / "tok"
    tok.save_pretrained(tok_dir)
    fa = tmp_path / "fa.txt"
    fa.write_text("\n".join(persian_lines[:20]) + "\n")
    payload = load_script().main(["--model_name_or_path", tiny_model_dir, "--tokenizer_name_or_path", str(tok_dir),
                                  "--eval_files", str(fa), "--output_dir", str(tmp_path / "o"),
                                  "--embedding_init", "subtoken_mean"])
    assert payload["tokenizer_size"] == len(tok) and payload["embedding_init"] == "subtoken_mean"
    assert math.isfinite(payload["files"]["fa"]["ppl_word"])


def test_adapters_are_applied(tiny_model_dir, persian_lines, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    merged = peft_model.merge_and_unload().eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    docs = list(persian_lines[:10])
    fa = tmp_path / "fa.txt"
    fa.write_text("\n".join(docs) + "\n")

    payload = load_script().main(["--model_name_or_path", tiny_model_dir, "--adapters", str(adapter),
                                  "--tokenizer_name_or_path", tiny_model_dir, "--eval_files", str(fa),
                                  "--output_dir", str(tmp_path / "o")])
    expected = corpus_perplexity(merged, tok, docs).nll
    base = corpus_perplexity(AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), tok, docs).nll
    assert payload["files"]["fa"]["nll"] == pytest.approx(expected, rel=1e-4)
    assert abs(expected - base) > 1e-3  # the adapter changed the model


def test_bad_flags_are_usage_errors(tiny_model_dir, tmp_path):
    script = load_script()
    with pytest.raises(UsageError, match="--eval_files is required"):
        script.main(["--model_name_or_path", tiny_model_dir, "--output_dir", str(tmp_path / "o")])
    with pytest.raises(UsageError, match="--eval_files: .*does not exist"):
        script.main(["--model_name_or_path", tiny_model_dir, "--eval_files", str(tmp_path / "nope.txt"),
                     "--output_dir", str(tmp_path / "o")])
    with pytest.raises(UsageError, match="--max_words must be >= 1"):
        script.main(["--model_name_or_path", tiny_model_dir, "--eval_files", "x", "--output_dir", "o",
                     "--max_words", "0"])


def test_eval_file_of_blank_lines_is_refused_before_the_model_loads(tmp_path, capsys):
    """Finding 5: a file of blank lines scored 0 tokens, exit 0, and NaN in perplexity.json. And an existing output
    folder is refused with advice naming the flag the script has (it said --overwrite, which it rejects)."""
    from langadapt.cli import run_main

    blank = tmp_path / "blank.txt"
    blank.write_text("\n   \n\n")
    out = tmp_path / "ppl"
    with pytest.raises(UsageError, match="--eval_files: .*blank.txt holds no text"):
        load_script().main(["--model_name_or_path", str(tmp_path / "no_model"), "--eval_files", str(blank),
                            "--output_dir", str(out)])
    assert not out.exists()
    (out / "x").mkdir(parents=True)
    (tmp_path / "ok.txt").write_text("متن\n")
    with pytest.raises(SystemExit) as e:
        run_main(load_script().main, ["--model_name_or_path", str(tmp_path / "no_model"), "--eval_files",
                                      str(tmp_path / "ok.txt"), "--output_dir", str(out)])
    assert e.value.code == 2 and "pass --overwrite_output_dir" in capsys.readouterr().err
