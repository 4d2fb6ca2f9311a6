"""The adaptation study's pieces (langadapt/study.py) and, marked slow, a two-arm study end to end on the tiny model."""

import json
import math
import os

import pytest

from _scripts import load_script
from langadapt import study
from langadapt.errors import InputError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write_study(path, text, heldout, recipe, study_dir, arms, **extra):
    import yaml

    spec = {"recipe": recipe, "study_dir": study_dir, "default_arm": next(iter(arms)), "text": text,
            "heldout": heldout, "arms": arms, **extra}
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return str(path)


@pytest.fixture
def texts(tmp_path, persian_lines, english_lines):
    fa = tmp_path / "fa.jsonl"
    fa.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in persian_lines[:200]),
                  encoding="utf-8")
    en = tmp_path / "en.jsonl"
    en.write_text("".join(json.dumps({"text": t}) + "\n" for t in english_lines[:100]), encoding="utf-8")
    return str(fa), str(en)


def test_bundled_study_parses_and_names_the_issue_arms():
    st = study.load_study(os.path.join(REPO, "configs", "studies", "adaptation.yaml"), root=REPO)
    assert st.default_arm == "extend"
    assert {"no_extension", "extend", "extend_subtoken_mean", "extend_hf_default", "extend_mean", "extend_embedding_lr",
            "two_phase", "full"} <= set(st.arms)
    assert os.path.isfile(st.recipe) and set(st.heldout) == {"fa", "en"}
    two = study.arm_overrides(st, st.arms["two_phase"])
    text = os.path.abspath(os.path.join(st.study_dir, "text"))
    assert two["ROWS_DATASET_DIR"] == f"{text}/half1" and two["PRETRAIN_DATASET_DIR"] == f"{text}/half2"
    for prefix in ("ROWS", "PRETRAIN"):  # one epoch over its text, curves on, for every stage
        assert two[f"{prefix}_NUM_TRAIN_EPOCHS"] == "1" and two[f"{prefix}_MAX_STEPS"] == "-1"
        assert two[f"{prefix}_BPB_EVAL_STEPS"] == str(st.curve_every_steps)
    ext = study.arm_overrides(st, st.arms["extend"])
    assert ext["PRETRAIN_DATASET_DIR"] == f"{text}/all" and ext["RUN_DIR"].endswith("arms/extend")
    assert study.arm_overrides(st, st.arms["no_extension"])["TOKENIZER_TRAIN_FILE"] == ""


def test_bad_study_files_name_the_problem(tmp_path, texts):
    with pytest.raises(InputError, match="does not exist"):
        study.load_study(str(tmp_path / "none.yaml"))
    p = _write_study(tmp_path / "s.yaml", {texts[0]: 100}, {"fa": texts[0]}, "r.env", "out",
                     {"a": {}, "B-x": {}})
    with pytest.raises(InputError, match="arm name 'B-x'"):
        study.load_study(p)
    p = _write_study(tmp_path / "s.yaml", {texts[0]: 100}, {"fa": texts[0]}, "r.env", "out", {"a": {}},
                     default_arm="zzz")
    with pytest.raises(InputError, match="default_arm"):
        study.load_study(p)


def test_text_budget_is_whole_documents_split_in_halves(tmp_path, texts):
    fa, en = texts
    p = _write_study(tmp_path / "s.yaml", {fa: 3000, en: 500}, {"fa": fa}, "r.env", str(tmp_path / "st"),
                     {"a": {}})
    st = study.load_study(p)
    m = study.prepare_text(st)
    docs = [json.loads(x)["text"] for x in open(fa, encoding="utf-8")]
    kept = study.first_documents(fa, 3000)
    assert kept == docs[:len(kept)] and sum(map(len, kept)) <= 3000 < sum(map(len, docs[:len(kept) + 1]))
    assert m["per_source"]["all"]["fa"] == sum(map(len, kept))
    # the halves partition the same documents in order
    read = lambda part: [json.loads(x)["text"] for x in open(tmp_path / "st" / "text" / part / "fa.jsonl",
                                                             encoding="utf-8")]
    assert read("half1") + read("half2") == read("all") == kept
    assert abs(m["per_source"]["half1"]["fa"] - m["per_source"]["half2"]["fa"]) < max(map(len, kept)) * 2
    assert m["chars"]["all"] == m["per_source"]["all"]["fa"] + m["per_source"]["all"]["en"]
    assert study.prepare_text(st) == m  # reused


def _arm(final, curve, en=1.0, wps=10.0):
    return {"fa_bpb": curve, "fa_bpb_wall": [[i, b] for i, (_, b) in enumerate(curve)], "fa_bpb_final": final,
            "fa_bpb_step0": curve[0][1], "en_bpb_final": en, "en_bpb_base": 1.0, "fa_words_per_s": wps,
            "fa_tokens_per_word": 1.3, "train_tokens": 1000, "wall_s": 10.0, "peak_rss_mb": 900.0, "scores": {}}


def test_verdict_names_winners_margins_and_noise(tmp_path):
    result = {"default_arm": "extend", "text_chars": 5000, "base": {"fa_bpb": 2.0, "en_bpb": 1.0,
                                                                     "fa_words_per_s": 4.0},
              "arms": {"extend": _arm(1.50, [[0, 2.1], [100, 1.53], [200, 1.51], [300, 1.50]], en=1.01, wps=9.0),
                       "other": _arm(1.40, [[0, 2.3], [100, 1.42], [200, 1.41], [300, 1.40]], en=1.05, wps=3.0)}}
    lines = "\n".join(study.verdict(result))
    assert "**final Persian bits/byte**: `other` (1.4), ahead of `extend` (1.5)" in lines
    assert "above the noise" in lines  # gap 0.1 > spread 0.03 of the last three points
    assert "the default `extend`: 1.5" in lines
    assert "English bits/byte of `extend` vs the base model: +1.0%" in lines and "PASS" in lines
    assert "2.25x" in lines  # words/s vs base
    md = study.write_outputs(result, str(tmp_path))
    saved = json.loads((tmp_path / "study.json").read_text())
    assert saved == result and "## Verdict" in md
    for chart in ("fa_bpb_vs_chars", "fa_bpb_vs_wall", "en_bpb_change", "words_per_s"):
        assert (tmp_path / f"{chart}.png").stat().st_size > 1000 and f"({chart}.png)" in md


@pytest.mark.slow
def test_two_arm_study_on_the_tiny_model(tmp_path, tiny_model_dir, texts, persian_lines, english_lines):
    """Two arms (a merged tokenizer vs the base one) through run_study.py --local: both read the same text, the
    study.json has the issue's schema, and a rerun runs nothing."""
    fa, en = texts
    (tmp_path / "ho").mkdir()
    (tmp_path / "ho" / "fa.txt").write_text("\n".join(persian_lines[-12:]) + "\n", encoding="utf-8")
    (tmp_path / "ho" / "en.txt").write_text("\n".join(english_lines[-12:]) + "\n", encoding="utf-8")
    tiny = {"BLOCK_SIZE": "32", "PER_DEVICE_TRAIN_BATCH_SIZE": "4", "EVAL_STRATEGY": "no", "SAVE_STEPS": "1000",
            "LOGGING_STEPS": "1", "LORA_RANK": "4", "LORA_ALPHA": "8", "ACTIVATION_CHECKPOINTING": "false",
            "REPORT_TO": "none", "PAD_VOCAB_TO_MULTIPLE_OF": "8", "WARMUP_STEPS": "0", "LEARNING_RATE": "1e-3",
            "PREPROCESSING_NUM_WORKERS": "1", "TRAINING_MODE": "lora"}
    recipe = tmp_path / "tiny.env"
    recipe.write_text("".join(f"{k}={json.dumps(v)}\n" for k, v in {
        "RUN_DIR": str(tmp_path / "unused"), "BASE_MODEL": tiny_model_dir, "STAGES": "pretrain",
        "PRETRAIN_KIND": "pretrain", "PRETRAIN_DATASET_DIR": str(tmp_path), "EVAL_DATA_DIR": "none",
        "EVAL_PERPLEXITY_MAX_WORDS": "100", "TOKENIZER_VOCAB_SIZE": "400", "TOKENIZER_NUM_THREADS": "1",
        **{f"PRETRAIN_{k}": v for k, v in tiny.items()}}.items()), encoding="utf-8")
    p = _write_study(tmp_path / "s.yaml", {fa: 4000, en: 1000}, {"fa": str(tmp_path / "ho" / "fa.txt"),
                                                                  "en": str(tmp_path / "ho" / "en.txt")},
                     str(recipe), str(tmp_path / "st"),
                     {"extend": {"set": {"TOKENIZER_TRAIN_FILE": fa}}, "no_extension": {}},
                     curve_every_steps=3, curve_max_words=60, speed={"prompts": 2, "new_tokens": 4})
    run_study = load_script("demo/run_study.py")
    result = run_study.main(["--study", p, "--local"])
    assert set(result["arms"]) == {"extend", "no_extension"} and result["default_arm"] == "extend"
    keys = {"fa_bpb", "fa_bpb_final", "fa_bpb_step0", "en_bpb_final", "en_bpb_base", "fa_words_per_s",
            "fa_tokens_per_word", "train_tokens", "wall_s", "peak_rss_mb", "scores"}
    for name, a in result["arms"].items():
        assert keys <= set(a), name
        assert all(math.isfinite(a[k]) and a[k] > 0 for k in keys - {"scores", "fa_bpb"}), (name, a)
        assert a["fa_bpb"][0][0] == 0 and a["fa_bpb"][-1][0] == result["text_chars"]
    ext, base = result["arms"]["extend"], result["arms"]["no_extension"]
    # identical text: the same dataset folder and the same characters; the smaller vocabulary needs more tokens
    ra = [json.load(open(tmp_path / "st" / "arms" / a / "pretrain" / "run_args.json")) for a in ("extend",
                                                                                                 "no_extension")]
    assert ra[0]["data"]["dataset_dir"] == ra[1]["data"]["dataset_dir"]
    assert ext["train_tokens"] < base["train_tokens"] and ext["fa_tokens_per_word"] < base["fa_tokens_per_word"]
    assert {"fa_bpb", "en_bpb", "fa_words_per_s"} <= set(result["base"])

    def ppl(arm, name):  # Persian bits/byte of one evaluation of an arm, on the whole held-out file
        with open(tmp_path / "st" / "arms" / arm / "perplexity" / name / "perplexity.json", encoding="utf-8") as f:
            return json.load(f)["files"]["fa"]["bpb"]

    # step 0 is scored on the same held-out text as the final point: the arm's initial rows, or the base model
    assert ext["fa_bpb_step0"] == ppl("extend", "base_merged") and ext["fa_bpb_final"] == ppl("extend", "pretrain")
    assert base["fa_bpb_step0"] == ppl("no_extension", "base") == result["base"]["fa_bpb"]
    for f in ("study.md", "study.json", "fa_bpb_vs_chars.png"):
        assert (tmp_path / "st" / f).is_file()
    before = os.path.getmtime(tmp_path / "st" / "arms" / "extend" / study.ARM_DONE)
    again = run_study.main(["--study", p, "--local"])
    assert again["arms"] == result["arms"]
    assert os.path.getmtime(tmp_path / "st" / "arms" / "extend" / study.ARM_DONE) == before
