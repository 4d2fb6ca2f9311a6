"""inference/inference.py end to end on a tiny model: files written, resume after a kill, failures, REPL, bad input."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys

import pytest

from _inference_helpers import (REPO_ROOT, bundled, load_script, one_thread, read_jsonl,  # noqa: F401 - fixture
                                write_json_list, write_jsonl)
from langadapt.cli import UsageError
from langadapt.generation import HFGenerator
from langadapt.normalize import normalize
from langadapt.templates import save_template_name
from tiny import RAW_PERSIAN

pytestmark = pytest.mark.usefixtures("one_thread")
inference = load_script("inference/inference.py")


@pytest.fixture
def data_dir(tmp_path):
    """Two languages, a classification file (.json) and a generation file (.jsonl); 22 examples."""
    d = tmp_path / "data"
    write_json_list(d / "fa" / "sentiment.json", bundled("fa", "sentiment", 10))
    write_jsonl(d / "en" / "translation_en_fa.jsonl", bundled("en", "translation_en_fa", 12))
    return str(d)


def run(model, data_dir, pred_dir, *extra):
    return inference.main(["--base_model", model, "--data_dir", data_dir, "--predictions_dir", str(pred_dir),
                           "--batch_size", "4", "--max_new_tokens", "8", *extra])


def test_writes_one_prediction_file_per_test_file(tiny_model_dir, data_dir, tmp_path):
    pred = tmp_path / "pred"
    run(tiny_model_dir, data_dir, pred)
    assert sorted(os.listdir(pred)) == ["en", "fa", "run_args.json"]
    fa = read_jsonl(pred / "fa" / "sentiment.jsonl")
    assert [r["id"] for r in fa] == list(range(10))  # id order, though generated longest first
    assert all(set(r) == {"id", "instruction", "input", "prediction", "gold"} for r in fa)
    src = bundled("fa", "sentiment", 10)
    assert [(r["instruction"], r["input"], r["gold"]) for r in fa] == [
        (s["instruction"], s["input"], s["output"]) for s in src]
    assert len(read_jsonl(pred / "en" / "translation_en_fa.jsonl")) == 12
    args = json.load(open(pred / "run_args.json"))
    assert args["resolved"]["template"] == "alpaca" and args["inference"]["max_new_tokens"] == 8


def test_kill_and_rerun_keeps_finished_records_and_completes(tiny_model_dir, data_dir, tmp_path, monkeypatch):
    full = tmp_path / "full"
    run(tiny_model_dir, data_dir, full)

    # Crash on the third batch (of the first file), after two batches were flushed; the kill also cut a line.
    calls = {"n": 0}
    real = HFGenerator.generate

    def crashing(self, prompts, max_new_tokens):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, prompts, max_new_tokens)

    pred = tmp_path / "pred"
    monkeypatch.setattr(HFGenerator, "generate", crashing)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_model_dir, data_dir, pred)
    monkeypatch.setattr(HFGenerator, "generate", real)
    path = pred / "en" / "translation_en_fa.jsonl"
    before = path.read_text(encoding="utf-8").splitlines()
    assert len(before) == 8  # two batches of 4, nothing of the third
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"id": 11, "instruction": "Trans')

    generated = []
    monkeypatch.setattr(HFGenerator, "generate",
                        lambda self, p, m: generated.extend(p) or real(self, p, m))
    run(tiny_model_dir, data_dir, pred)
    after = read_jsonl(path)
    assert [r["id"] for r in after] == list(range(12))  # complete, no duplicate
    assert set(before) <= set(path.read_text(encoding="utf-8").splitlines())  # finished records kept as written
    assert len(generated) == 4 + 10  # only the rest of this file, then the other file
    for name in ("en/translation_en_fa.jsonl", "fa/sentiment.jsonl"):
        assert read_jsonl(pred / name) == read_jsonl(full / name)  # same as an unbroken run


def test_failed_examples_are_recorded_and_the_run_fails(tiny_model_dir, tmp_path):
    """A prompt longer than the model's context (512 positions) fails alone; the others are answered."""
    recs = bundled("en", "sentiment", 5)
    recs[2] = {**recs[2], "input": " ".join(["word"] * 700)}
    data = tmp_path / "data"
    write_json_list(data / "sentiment.json", recs)
    pred = tmp_path / "pred"
    with pytest.raises(SystemExit, match="1 examples failed"):
        run(tiny_model_dir, str(data), pred)
    out = {r["id"]: r for r in read_jsonl(pred / "sentiment.jsonl")}
    assert sorted(out) == [0, 1, 2, 3, 4]
    assert "context is 512 tokens" in out[2]["error"] and out[2]["prediction"] is None
    assert all("error" not in out[i] for i in (0, 1, 3, 4))

    # Input fixed, rerun: only the failed example is generated again, and the file ends clean.
    write_json_list(data / "sentiment.json", bundled("en", "sentiment", 5))
    run(tiny_model_dir, str(data), pred)
    final = read_jsonl(pred / "sentiment.jsonl")
    assert [r["id"] for r in final] == [0, 1, 2, 3, 4] and not any("error" in r for r in final)
    assert [final[i] for i in (0, 1, 3, 4)] == [out[i] for i in (0, 1, 3, 4)]

    # A test file whose finished records changed is another test set: refused, nothing overwritten.
    changed = bundled("en", "sentiment", 5)
    changed[0] = {**changed[0], "input": "Something else."}
    write_json_list(data / "sentiment.json", changed)
    with pytest.raises(UsageError, match=r"sentiment\.jsonl:1: record id 0 does not match"):
        run(tiny_model_dir, str(data), pred)
    assert read_jsonl(pred / "sentiment.jsonl") == final


def test_template_comes_from_the_model_folder(tiny_model_dir, data_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    save_template_name(str(model), "none")
    pred = tmp_path / "pred"
    run(str(model), data_dir, pred)
    assert json.load(open(pred / "run_args.json"))["resolved"]["template"] == "none"
    run(str(model), data_dir, tmp_path / "p2", "--template", "alpaca")
    assert json.load(open(tmp_path / "p2" / "run_args.json"))["resolved"]["template"] == "alpaca"


def test_loglik_scoring_answers_with_a_gold_label(tiny_model_dir, data_dir, tmp_path):
    pred = tmp_path / "pred"
    run(tiny_model_dir, data_dir, pred, "--scoring", "loglik")
    labels = {r["output"] for r in bundled("fa", "sentiment", 10)}
    assert {r["prediction"] for r in read_jsonl(pred / "fa" / "sentiment.jsonl")} <= labels
    score = load_script("inference/score.py")
    scores = score.main(["--predictions_dir", str(pred)])
    assert scores["fa/sentiment"]["unparsed_count"] == 0


def test_lora_chain_is_passed_in_order(tiny_model_dir, data_dir, tmp_path, monkeypatch):
    import langadapt.loading

    seen = {}
    real = langadapt.loading.load_with_adapters

    def spy(base, adapters, tokenizer_path, dtype, **kwargs):
        seen.update(base=base, adapters=adapters, tokenizer_path=tokenizer_path)
        return real(base, [], tokenizer_path, dtype, **kwargs)

    monkeypatch.setattr(langadapt.loading, "load_with_adapters", spy)
    run(tiny_model_dir, data_dir, tmp_path / "pred", "--lora_model", "/x/pt, /x/sft", "--tokenizer_path",
        tiny_model_dir)
    assert seen == {"base": tiny_model_dir, "adapters": ["/x/pt", "/x/sft"], "tokenizer_path": tiny_model_dir}


def test_interactive_answers_each_line_with_the_template(tiny_model_dir, monkeypatch, capsys):
    lines_in = "Translate to Persian: hello\n\nسلام، حالت چطور است؟\nquit\nignored\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines_in))
    inference.main(["--base_model", tiny_model_dir, "--interactive", "--max_new_tokens", "6"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gen = HFGenerator(AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(
        tiny_model_dir), "alpaca")
    assert lines[1] == gen.generate([gen.prompt("سلام، حالت چطور است؟")], 6)[0]


def _record_prompt_ids(monkeypatch) -> list[list[int]]:
    """Every prompt the generator tokenizes for the model, as token ids (unpadded)."""
    seen = []
    real = HFGenerator.encode

    def spy(self, prompts, **kwargs):
        seen.extend(real(self, prompts)["input_ids"])
        return real(self, prompts, **kwargs)

    monkeypatch.setattr(HFGenerator, "encode", spy)
    return seen


@pytest.mark.parametrize("scoring", ["generate", "loglik"])
def test_raw_persian_test_sets_reach_the_model_normalized(tiny_model_dir, tmp_path, monkeypatch, scoring):
    """Test files of raw Persian (Arabic yeh/kaf, presentation forms, stray ZWNJs) give the model exactly the ids of
    the normalized files, and the same predictions."""
    clean = normalize(RAW_PERSIAN)
    for name, text in (("raw", RAW_PERSIAN), ("clean", clean)):
        write_jsonl(tmp_path / name / "fa" / "sentiment.jsonl",
                    [{"instruction": text, "input": text, "output": "positive"},
                     {"instruction": "احساس این جمله را بگو.", "input": text, "output": "negative"}])
    seen = _record_prompt_ids(monkeypatch)
    run(tiny_model_dir, str(tmp_path / "raw"), tmp_path / "pred_raw", "--scoring", scoring)
    raw_ids, seen[:] = list(seen), []
    run(tiny_model_dir, str(tmp_path / "clean"), tmp_path / "pred_clean", "--scoring", scoring)
    assert raw_ids and raw_ids == seen
    predictions = [[r["prediction"] for r in read_jsonl(tmp_path / d / "fa" / "sentiment.jsonl")]
                   for d in ("pred_raw", "pred_clean")]
    assert predictions[0] == predictions[1]


def test_interactive_normalizes_raw_persian(tiny_model_dir, monkeypatch, capsys):
    clean = normalize(RAW_PERSIAN)
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{RAW_PERSIAN}\n{clean}\n"))
    seen = _record_prompt_ids(monkeypatch)
    inference.main(["--base_model", tiny_model_dir, "--interactive", "--max_new_tokens", "6"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0] == lines[1]
    assert len(seen) == 2 and seen[0] == seen[1]


@pytest.mark.slow
def test_interactive_as_a_script_with_piped_stdin(tiny_model_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "inference/inference.py", "--base_model", tiny_model_dir,
                           "--interactive", "--max_new_tokens", "4"], input="Say hi.\nسلام\n", text=True,
                          capture_output=True, cwd=REPO_ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gen = HFGenerator(AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(
        tiny_model_dir), "alpaca")
    assert proc.stdout.splitlines() == [gen.generate([gen.prompt(line)], 4)[0] for line in ("Say hi.", "سلام")]


@pytest.mark.parametrize("name, content, message", [
    ("a.json", "{not json", r"a\.json:1: not valid JSON"),
    ("a.json", '{"instruction": "x"}', r"a\.json: the top-level JSON value is a dict"),
    ("a.json", '[{"instruction": "x"}, {"input": "y"}]', r"a\.json: record 1: \"instruction\" must be"),
    ("a.json", '[{"instruction": "x", "input": 3}]', r"a\.json: record 0: \"input\" must be a string"),
    ("a.json", '[{"instruction": "x", "output": {"a": 1}}]', r"record 0: \"output\" \(the gold answer\)"),
    ("a.jsonl", '{"instruction": "x"}\n[1, 2]\n', r"a\.jsonl:2: expected a JSON object"),
    ("a.jsonl", '{"instruction": "x"}\n{"instruction": \n', r"a\.jsonl:2: not valid JSON"),
    ("a.json", "[]", r"a\.json: holds no records"),
])
def test_bad_test_files_name_file_and_record(tmp_path, name, content, message):
    d = tmp_path / "data"
    d.mkdir()
    (d / name).write_text(content, encoding="utf-8")
    with pytest.raises(UsageError, match=message):
        run("/no/model/needed", str(d), tmp_path / "pred")
    assert not (tmp_path / "pred").exists()  # nothing written


def test_bad_flags(tmp_path, tiny_model_dir):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="holds no .json/.jsonl files"):
        run(tiny_model_dir, str(tmp_path / "empty"), tmp_path / "pred")
    with pytest.raises(UsageError, match="either --data_dir"):
        inference.main(["--base_model", tiny_model_dir])
    with pytest.raises(UsageError, match="--predictions_dir is required"):
        inference.main(["--base_model", tiny_model_dir, "--data_dir", str(tmp_path)])
    with pytest.raises(UsageError, match="--template: unknown template 'vicuna'"):
        inference.main(["--base_model", tiny_model_dir, "--interactive", "--template", "vicuna"])


def test_vllm_backend_fails_clearly_when_unavailable(tiny_model_dir, data_dir, tmp_path):
    with pytest.raises(UsageError, match="--backend vllm"):
        run(tiny_model_dir, data_dir, tmp_path / "pred", "--backend", "vllm")
    with pytest.raises(UsageError, match="merged models only"):
        run(tiny_model_dir, data_dir, tmp_path / "pred", "--backend", "vllm", "--lora_model", "a")
