"""Demo data: held-out split by poem, instruction data, caching/atomicity, bundled sets disjoint from the test sets."""

import glob
import json
import os

import pytest

import demo_data
from langadapt.cli import UsageError
from demo_data import DemoDataConfig, prepare_demo_data
from langadapt.normalize import normalize

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _texts(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def _records(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("demo") / "data")
    cfg = DemoDataConfig(sft_hafez_examples=40, hazm_words=50, english_replay_fraction=0.05)
    return out, cfg, prepare_demo_data(out, cfg)


def test_layout_and_counts(built):
    out, cfg, manifest = built
    for rel in ("pretrain/fa.jsonl", "pretrain/en.jsonl", "heldout/fa.jsonl", "heldout/en.jsonl",
                "sft/hafez_interpretation.jsonl", "words/fa_words.txt", "manifest.json"):
        assert os.path.getsize(os.path.join(out, rel)) > 0, rel
    counts = manifest["counts"]
    assert counts["pretrain_fa_words"] > 80_000 and 5_000 < counts["heldout_fa_words"] < 20_000
    # about 10% of the ghazals held out
    assert 0.05 < counts["heldout_fa_words"] / (counts["heldout_fa_words"] + counts["pretrain_fa_words"]) < 0.15
    assert 0 < counts["pretrain_en_words"] <= 0.05 * counts["pretrain_fa_words"] + 60
    assert counts["sft_examples"]["hafez_interpretation"] == 40
    assert len(open(os.path.join(out, "words/fa_words.txt"), encoding="utf-8").read().split()) == 50


def test_heldout_poems_never_appear_in_training_text(built):
    out, _, _ = built
    train = set(_texts(os.path.join(out, "pretrain/fa.jsonl")))
    heldout = _texts(os.path.join(out, "heldout/fa.jsonl"))
    assert heldout and not train & set(heldout)
    train_lines = {line for doc in train for line in doc.split("\n")}
    poem_lines = [line for doc in heldout for line in doc.split("\n") if len(doc.split("\n")) > 4]
    # Hafez repeats a few hemistichs across ghazals; nearly all held-out verses must be unseen.
    assert sum(line in train_lines for line in poem_lines) < 0.02 * len(poem_lines)
    en_train = set(_texts(os.path.join(out, "pretrain/en.jsonl")))
    assert not en_train & set(_texts(os.path.join(out, "heldout/en.jsonl")))
    assert not en_train & set(_texts(os.path.join(out, "heldout/en_stdlib.jsonl")))


def test_english_heldout_comes_from_a_source_the_replay_never_uses(built):
    """heldout/en.jsonl is package-description prose: no sentence of it is in the replay's source at all."""
    from corpora import english_corpus

    out, _, manifest = built
    heldout = _texts(os.path.join(out, "heldout/en.jsonl"))
    assert len(heldout) > 200 and manifest["counts"]["heldout_en_words"] > 3000
    assert not set(heldout) & set(english_corpus())
    replay_words = {w for s in _texts(os.path.join(out, "pretrain/en.jsonl")) for w in s.split()}
    assert replay_words  # the replay exists, and the held-out text still shares ordinary English words with it
    assert "transformers" in manifest["sources"]["english_heldout"]


def test_sft_pairs_come_from_training_poems_and_are_normalized(built):
    out, _, _ = built
    heldout = "\n".join(_texts(os.path.join(out, "heldout/fa.jsonl")))
    for rec in _records(os.path.join(out, "sft/hafez_interpretation.jsonl")):
        assert rec["instruction"] and rec["input"] and rec["output"]
        assert rec["input"] not in heldout
        assert normalize(rec["output"]) == rec["output"]
    stems = {os.path.basename(p)[:-6] for p in glob.glob(os.path.join(out, "sft", "*.jsonl"))}
    assert {"sentiment", "entailment", "multiple_choice", "summary", "translation_en_fa",
            "translation_fa_en"} <= stems


def test_split_is_deterministic_and_seeded():
    keys = [f"hafez:{i}" for i in range(1, 496)]
    a = [k for k in keys if demo_data.is_heldout(k, 0.1, 0)]
    assert a == [k for k in keys if demo_data.is_heldout(k, 0.1, 0)]
    assert a != [k for k in keys if demo_data.is_heldout(k, 0.1, 1)]
    assert 30 < len(a) < 70


def test_prepared_folder_is_reused_and_rebuilt_when_settings_change(tmp_path):
    out = str(tmp_path / "data")
    cfg = DemoDataConfig(sft_hafez_examples=5)
    prepare_demo_data(out, cfg)
    manifest = os.path.join(out, "manifest.json")
    stamp = os.path.getmtime(manifest)
    prepare_demo_data(out, cfg)
    assert os.path.getmtime(manifest) == stamp  # reused, not rewritten
    prepare_demo_data(out, DemoDataConfig(sft_hafez_examples=7))
    assert len(_records(os.path.join(out, "sft/hafez_interpretation.jsonl"))) == 7


def test_interrupted_run_is_redone_cleanly(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "junk.jsonl").write_text("half-written")  # a folder without manifest: unfinished
    stale = tmp_path / ".data.tmp-abc123"  # the temporary folder a killed run leaves behind
    stale.mkdir()
    prepare_demo_data(str(out), DemoDataConfig(sft_hafez_examples=5))
    assert not (out / "junk.jsonl").exists() and not stale.exists()
    assert (out / "manifest.json").is_file()


def test_failure_midway_leaves_previous_folder_untouched(tmp_path, monkeypatch):
    out = str(tmp_path / "data")
    prepare_demo_data(out, DemoDataConfig(sft_hafez_examples=5))
    before = sorted(os.listdir(out))

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(demo_data, "bundled_sets", boom)
    with pytest.raises(RuntimeError):
        prepare_demo_data(out, DemoDataConfig(sft_hafez_examples=6))
    assert sorted(os.listdir(out)) == before
    assert len(_records(os.path.join(out, "sft/hafez_interpretation.jsonl"))) == 5
    assert not glob.glob(str(tmp_path / ".data.tmp-*"))


def test_bilingual_data_from_the_bundled_pairs(tmp_path):
    """--bilingual: parallel documents for the bilingual stage and translation instructions both ways, from the
    pairs installed with django and persian-llm-reference; part of the cache key."""
    out = str(tmp_path / "data")
    manifest = prepare_demo_data(out, DemoDataConfig(sft_hafez_examples=5, bilingual=True))
    docs = _records(os.path.join(out, "bilingual", "pretrain", "parallel.jsonl"))
    sft = _records(os.path.join(out, "bilingual", "sft", "translation.jsonl"))
    counts = manifest["counts"]["bilingual"]
    assert counts["pairs_kept"] == len(docs) > 900 and counts["translation_instructions"] == len(sft) == 2 * len(docs)
    assert counts["pairs_read"] > counts["pairs_kept"]  # the filters dropped duplicates and the like
    assert {d["layout"] for d in docs} == {"en_fa", "fa_en", "interleaved"}
    assert all(any("a" <= c.lower() <= "z" for c in d["text"]) and any("\u0600" <= c <= "\u06ff" for c in d["text"])
               for d in docs)
    assert all(normalize(d["text"]) == d["text"] for d in docs)  # the demo's normalizer, as the Persian text
    assert {"django", "persian-llm-reference"} <= set(manifest["sources"])
    assert os.path.isfile(os.path.join(out, "bilingual", "report.md"))
    stamp = os.path.getmtime(os.path.join(out, "manifest.json"))
    prepare_demo_data(out, DemoDataConfig(sft_hafez_examples=5, bilingual=True))
    assert os.path.getmtime(os.path.join(out, "manifest.json")) == stamp  # reused
    prepare_demo_data(out, DemoDataConfig(sft_hafez_examples=5))
    assert not os.path.exists(os.path.join(out, "bilingual"))  # rebuilt without it


def test_missing_parallel_package_is_named(monkeypatch):
    from importlib import metadata

    real = metadata.version
    monkeypatch.setattr(metadata, "version",
                        lambda name: real("nope-not-installed") if name == "django" else real(name))
    with pytest.raises(UsageError, match=r"needs the django package.*pip install --no-deps django==5\.2\.19"):
        demo_data.fingerprint(DemoDataConfig(bilingual=True))


def test_missing_hazm_package_is_named(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "hazm" else real(name, *a))
    with pytest.raises(UsageError, match=r"'hazm' is not installed.*pip install --no-deps hazm==0\.10\.0"):
        demo_data.hazm_top_words(10)


def test_bad_settings_name_the_flag():
    with pytest.raises(ValueError, match="--heldout_fraction"):
        DemoDataConfig(heldout_fraction=1.5)
    with pytest.raises(ValueError, match="--sft_poem_lines"):
        DemoDataConfig(sft_poem_lines=0)


def test_malformed_bundled_set_names_file_and_line(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"instruction": "a", "output": "b"}\n{"instruction": "a"}\n')
    with pytest.raises(UsageError, match=r"x\.jsonl:2: needs non-empty"):
        demo_data.bundled_sets(str(tmp_path))


def _testset_records():
    recs = []
    for path in glob.glob(os.path.join(REPO, "data", "testset", "*", "*.json")):
        with open(path, encoding="utf-8") as f:
            recs += [(os.path.basename(path)[:-5], r) for r in json.load(f)]
    return recs


def _words(text):
    return set(normalize(text).replace("\n", " ").split())


def test_bundled_sets_are_disjoint_from_the_test_sets():
    """No bundled item repeats or closely paraphrases a test item (overlap of the content words of the inputs; the
    scaffold words every item of a task shares, like the option letters, do not count)."""
    tests = _testset_records()
    if not tests:
        pytest.skip("data/testset/ not present")
    bundled = demo_data.bundled_sets(demo_data.BUNDLED_DIR)
    for stem, records in bundled.items():
        inputs = [_words(t["input"]) for s, t in tests if s == stem] + [_words(r["input"]) for r in records]
        common = {w for w in set().union(*inputs) if sum(w in x for x in inputs) > 0.3 * len(inputs)}
        for rec in records:
            text = rec["input"]
            for _, t in tests:
                assert normalize(t["input"]) != text, f"{stem}: {text!r} is a test input"
                a, b = _words(text) - common, _words(t["input"]) - common
                overlap = len(a & b) / max(1, min(len(a), len(b)))
                assert overlap < 0.6 or min(len(a), len(b)) < 4, f"{stem}: {text!r} ~ test {t['input']!r}"
            if stem in ("summary",) or stem.startswith("translation"):
                assert all(normalize(str(t["output"])) != rec["output"] for _, t in tests)


def test_bundled_labels_use_the_test_sets_label_words():
    tests = _testset_records()
    if not tests:
        pytest.skip("data/testset/ not present")
    bundled = demo_data.bundled_sets(demo_data.BUNDLED_DIR)
    for stem in ("sentiment", "entailment", "multiple_choice"):
        gold = {str(t["output"]) for s, t in tests if s == stem}
        labels = {r["output"] for r in bundled[stem]}
        assert labels & gold and labels <= gold, (stem, labels, gold)


def test_prepare_script_writes_data_and_skips_model(tmp_path):
    from _scripts import load_script

    mod = load_script("data/prepare_demo_data.py")
    result = mod.main(["--output_dir", str(tmp_path), "--skip_model", "--sft_hafez_examples", "3"])
    assert result["data_dir"] == os.path.join(str(tmp_path), "demo_data")
    assert result["manifest"]["counts"]["sft_examples"]["hafez_interpretation"] == 3
    assert not os.path.exists(result["model_dir"])
