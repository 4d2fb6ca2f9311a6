"""Parallel data preparation: readers (.tsv/.jsonl/.po), filters, layouts, translation instructions, bad input."""

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from langadapt import parallel
from langadapt.cli import UsageError
from langadapt.parallel import Pair
import _scripts  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_script(relpath):
    """Import a stage script by path (scripts are not a package)."""
    return _scripts.load_script(relpath)


prepare_parallel = _load_script("data/prepare_parallel.py")



def _has_persian(text):
    """True when ``text`` holds an Arabic-script character (the Persian side)."""
    return any("\u0600" <= ch <= "\u06ff" for ch in text)


def _write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return str(path)


def _good_pairs(n):
    """n distinct, clean, single-sentence pairs."""
    return [(f"The house number {i} is green.", f"خانهٔ شمارهٔ {i} سبز است.") for i in range(n)]


@pytest.fixture
def fixture_inputs(tmp_path):
    """A TSV, a JSONL and a .po file; 40 clean pairs plus one pair per filter (counts asserted below)."""
    good = _good_pairs(40)
    tsv_rows = ["en\tfa"] + [f"{e}\t{f}" for e, f in good[:20]]
    tsv_rows += [
        "Empty translation\t   ",  # empty
        "Only English here\tOnly English here",  # no_persian_script
        f"{'word ' * 300}\t{'کلمه ' * 300}",  # too_long (1500 characters)
        "A long English sentence that says a great deal more than its translation.\tبله",  # length_ratio
        f"{good[0][0]}\t{good[0][1]}",  # duplicate
        f"  {good[1][0].upper()}  \t{good[1][1]}",  # duplicate (case and spacing ignored on English)
    ]
    tsv = _write(tmp_path / "pairs.tsv", "\n".join(tsv_rows) + "\n")
    jsonl = _write(tmp_path / "pairs.jsonl",
                   "".join(json.dumps({"en": e, "fa": f}, ensure_ascii=False) + "\n" for e, f in good[20:35]))
    po_entries = "".join(f'msgid "{e}"\nmsgstr "{f}"\n\n' for e, f in good[35:])
    po = _write(tmp_path / "app.po", PO_HEADER + po_entries + '#, fuzzy\nmsgid "Unsure"\nmsgstr "نامطمئن"\n')
    return [tsv, jsonl, po]


PO_HEADER = ('msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n'
             '"Plural-Forms: nplurals=2; plural=(n > 1);\\n"\n\n')


def _run(tmp_path, inputs, *extra):
    out = str(tmp_path / "out")
    prepare_parallel.main(["--input", *inputs, "--output_dir", out, *extra])
    return out


def _read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_end_to_end_files_counts_and_filters(tmp_path, fixture_inputs):
    out = _run(tmp_path, fixture_inputs)
    assert sorted(os.listdir(out)) == ["pairs.jsonl", "pretrain", "report.json", "report.md", "run_args.json", "sft"]
    report = json.load(open(os.path.join(out, "report.json"), encoding="utf-8"))
    c = report["cleaning"]
    assert c["read"] == 46 and c["kept"] == 40
    assert c["dropped"] == {"empty": 1, "no_persian_script": 1, "too_long": 1, "length_ratio": 1, "duplicate": 2}
    assert c["examples"]["empty"] == [f"{fixture_inputs[0]}:22"]  # origin is file:line (line 1 is the header)
    assert report["reading"][fixture_inputs[2]]["po_fuzzy"] == 1
    assert report["reading"][fixture_inputs[2]]["po_header"] == 1
    md = open(os.path.join(out, "report.md"), encoding="utf-8").read()
    assert "| length_ratio | 1 |" in md and "po_fuzzy=1" in md
    pairs = _read_jsonl(os.path.join(out, "pairs.jsonl"))
    assert len(pairs) == 40 and all(p["fa"] and p["en"] for p in pairs)


def test_layouts_in_the_asked_ratios(tmp_path, fixture_inputs):
    out = _run(tmp_path, fixture_inputs, "--layouts", "en_fa=0.5,fa_en=0.3,interleaved=0.2")
    docs = _read_jsonl(os.path.join(out, "pretrain", "parallel.jsonl"))
    assert Counter(d["layout"] for d in docs) == {"en_fa": 20, "fa_en": 12, "interleaved": 8}
    for d in docs:
        first, second = d["text"].split("\n")
        # en_fa and (single-sentence) interleaved start with English; fa_en starts with Persian.
        starts_persian = _has_persian(first)
        assert starts_persian == (d["layout"] == "fa_en")
        assert starts_persian != _has_persian(second)


def test_only_one_layout(tmp_path, fixture_inputs):
    out = _run(tmp_path, fixture_inputs, "--layouts", "fa_en=1")
    docs = _read_jsonl(os.path.join(out, "pretrain", "parallel.jsonl"))
    assert {d["layout"] for d in docs} == {"fa_en"}


def test_interleaving_sentence_by_sentence_and_fallback():
    pair = Pair("One. Two! Three?", "یک. دو! سه؟", "x")
    text, used = parallel.layout_document(pair, "interleaved")
    assert used == "interleaved" and text.split("\n") == ["One.", "یک.", "Two!", "دو!", "Three?", "سه؟"]
    text, used = parallel.layout_document(Pair("One. Two.", "یک و دو.", "x"), "interleaved")
    assert used == "en_fa" and text == "One. Two.\nیک و دو."


def test_translation_instructions_both_directions_and_wordings(tmp_path, fixture_inputs):
    out = _run(tmp_path, fixture_inputs, "--instruction_fa_ratio", "0.25")
    examples = json.load(open(os.path.join(out, "sft", "translation.json"), encoding="utf-8"))
    assert len(examples) == 80 and all(set(e) == {"instruction", "input", "output"} for e in examples)
    pairs = {(p["en"], p["fa"]) for p in _read_jsonl(os.path.join(out, "pairs.jsonl"))}
    en_fa = [e for e in examples if (e["input"], e["output"]) in pairs]
    fa_en = [e for e in examples if (e["output"], e["input"]) in pairs]
    assert len(en_fa) == len(fa_en) == 40
    for group in (en_fa, fa_en):
        persian_worded = [e for e in group if _has_persian(e["instruction"])]
        assert len(persian_worded) == 10  # exactly 25% per direction
    assert all("Persian" in e["instruction"] or "فارسی" in e["instruction"] for e in examples)
    report = json.load(open(os.path.join(out, "report.json"), encoding="utf-8"))
    assert report["sft"]["counts"] == {"en_fa/en": 30, "en_fa/fa": 10, "fa_en/en": 30, "fa_en/fa": 10}


def test_jsonl_sft_format_and_one_direction(tmp_path, fixture_inputs):
    out = _run(tmp_path, fixture_inputs, "--sft_format", "jsonl", "--directions", "fa_en")
    examples = _read_jsonl(os.path.join(out, "sft", "translation.jsonl"))
    assert len(examples) == 40
    assert all(_has_persian(e["input"]) for e in examples)


def test_persian_side_is_normalized(tmp_path):
    # Arabic yeh/kaf (U+064A, U+0643), a kashida and a bidi mark in the input; Persian forms in the output.
    tsv = _write(tmp_path / "a.tsv", "The book is here.\t\u200fكتاب اينجا ا\u0640ست.\n")
    out = _run(tmp_path, [tsv])
    (pair,) = _read_jsonl(os.path.join(out, "pairs.jsonl"))
    assert pair["fa"] == "کتاب اینجا است."


def test_normalizer_config_from_tokenizer_dir(tmp_path):
    from langadapt.normalize import NormalizerConfig

    tok_dir = tmp_path / "tok"
    tok_dir.mkdir()
    NormalizerConfig(digits="fa").save(str(tok_dir))
    tsv = _write(tmp_path / "a.tsv", "Room 12 is open.\tاتاق 12 باز است.\n")
    out = _run(tmp_path, [tsv], "--normalizer_dir", str(tok_dir))
    (pair,) = _read_jsonl(os.path.join(out, "pairs.jsonl"))
    assert pair["fa"] == "اتاق ۱۲ باز است." and pair["en"] == "Room 12 is open."


def test_repeated_input_flags_accumulate(tmp_path, fixture_inputs):
    out = str(tmp_path / "out")
    prepare_parallel.main(["--input", fixture_inputs[1], "--output_dir", out, "--input", fixture_inputs[2]])
    report = json.load(open(os.path.join(out, "report.json"), encoding="utf-8"))
    assert set(report["reading"]) == set(fixture_inputs[1:])


# ------------------------------------------------------------------------------------------------------------ .po


PO_EDGE_CASES = PO_HEADER + r'''# translator comment
#. extracted comment
#: django/forms/fields.py:10
#, python-format
msgid "Hello %(name)s"
msgstr "سلام %(name)s"

msgctxt "month name"
msgid "May"
msgstr "مه"

msgctxt "verb"
msgid "May"
msgstr "ممکن است"

msgid ""
"A long message "
"on two lines."
msgstr ""
"پیامی بلند "
"در دو خط."

msgid "Say \"yes\"\tor\\no\n"
msgstr "بگو \"بله\"\tیا\\نه\n"

msgid "Octal \101 and hex \x42"
msgstr "هشت\101 و \x42"

#, python-format
msgid "%(count)d item"
msgid_plural "%(count)d items"
msgstr[0] "%(count)d مورد"
msgstr[1] "%(count)d مورد‌ها"

#, fuzzy, python-format
#| msgid "Old text"
msgid "New text"
msgstr "متن تازه"

msgid "Not translated yet"
msgstr ""

#~ msgid "Removed"
#~ msgstr "حذف شده"
'''


def test_po_parser_edge_cases(tmp_path):
    path = _write(tmp_path / "edge.po", PO_EDGE_CASES)
    entries = parallel.parse_po(path)
    by_id = {(e.msgctxt, e.msgid): e for e in entries}
    assert by_id[("month name", "May")].msgstr == {0: "مه"}
    assert by_id[("verb", "May")].msgstr == {0: "ممکن است"}
    assert by_id[(None, "A long message on two lines.")].msgstr == {0: "پیامی بلند در دو خط."}
    assert by_id[(None, 'Say "yes"\tor\\no\n')].msgstr[0] == 'بگو "بله"\tیا\\نه\n'
    assert by_id[(None, "Octal A and hex B")].msgstr[0] == "هشتA و B"
    plural = by_id[(None, "%(count)d item")]
    assert plural.msgid_plural == "%(count)d items" and set(plural.msgstr) == {0, 1}
    assert by_id[(None, "New text")].fuzzy and "python-format" in by_id[(None, "New text")].flags
    assert by_id[(None, "Removed")].obsolete
    assert by_id[(None, "Hello %(name)s")].lineno == 10  # the msgid line, after the comments

    stats = Counter()
    pairs = parallel.po_pairs(path, stats)
    assert stats["po_fuzzy"] == 1 and stats["po_untranslated"] == 1 and stats["po_obsolete"] == 1
    assert stats["po_header"] == 1 and stats["po_plural"] == 1 and stats["po_with_context"] == 2
    got = {(p.en, p.fa) for p in pairs}
    assert ("%(count)d items", "%(count)d مورد‌ها") in got and ("%(count)d item", "%(count)d مورد") in got
    assert not any(p.en in ("New text", "Removed", "Not translated yet") for p in pairs)
    assert len(pairs) == 8


@pytest.mark.parametrize("body, line, fragment", [
    ('msgid "unterminated\nmsgstr "x"\n', 1, "double quotes"),
    ('"orphan string"\n', 1, "outside an entry"),
    ('msgid "a"\nmsgstr "ب"\nmsgfoo "c"\n', 3, "cannot parse"),
    ('msgid "a"\nmsgid "b"\nmsgstr "ب"\n', 1, "no msgstr"),
    ('msgid "a"\nmsgstr[0] "ب"\n', 2, "msgid_plural"),
    ('msgid "a"\nmsgid_plural "as"\nmsgstr "ب"\n', 3, "needs msgstr"),
    ('msgid "a \\q"\nmsgstr "ب"\n', 1, "unknown escape"),
    ('msgid "a"\nmsgstr "b"c"\n', 2, "unescaped double quote"),
    ('msgid ""\nmsgstr "Content-Type: text/plain; charset=ISO-8859-6\\n"\n', 1, "msgconv"),
])
def test_po_that_does_not_parse_names_file_and_line(tmp_path, body, line, fragment):
    path = _write(tmp_path / "bad.po", body)
    with pytest.raises(UsageError, match=fragment) as e:
        parallel.parse_po(path)
    assert f"{path}:{line}:" in str(e.value)


# ------------------------------------------------------------------------------------------------------- bad input


def test_tsv_row_with_wrong_column_count(tmp_path):
    tsv = _write(tmp_path / "a.tsv", "Hello.\tسلام.\nBroken row without a tab\nBye.\tخداحافظ.\n")
    out = tmp_path / "out"
    with pytest.raises(UsageError, match=r"a\.tsv:2: expected 2 tab-separated columns .* found 1"):
        prepare_parallel.main(["--input", tsv, "--output_dir", str(out)])
    assert not out.exists() and os.listdir(tmp_path) == ["a.tsv"]  # nothing half-written


def test_jsonl_record_without_fields(tmp_path):
    path = _write(tmp_path / "a.jsonl", '{"en": "Hi", "fa": "سلام"}\n{"en": "Bye"}\n')
    with pytest.raises(UsageError, match=r"a\.jsonl:2: expected an object with string fields 'en' and 'fa'"):
        prepare_parallel.main(["--input", path, "--output_dir", str(tmp_path / "out")])


@pytest.mark.parametrize("rows, flags, culprit", [
    (["Only English\tOnly English", "Same again\tSame again"], [], "no_persian_script"),
    (["A sentence of some length.\tجمله‌ای با طولی معین."], ["--max_chars", "10"], "too_long"),
    (["A sentence of some length here.\tبله"], [], "length_ratio"),
    (["\tسلام", "Hi\t "], [], "empty"),
])
def test_empty_result_names_the_filter(tmp_path, rows, flags, culprit):
    tsv = _write(tmp_path / "a.tsv", "\n".join(rows) + "\n")
    with pytest.raises(UsageError, match=f"filter '{culprit}'"):
        prepare_parallel.main(["--input", tsv, "--output_dir", str(tmp_path / "out"), *flags])
    assert not (tmp_path / "out").exists()


def test_only_fuzzy_po_says_nothing_was_read(tmp_path):
    po = _write(tmp_path / "a.po", PO_HEADER + '#, fuzzy\nmsgid "Hi"\nmsgstr "سلام"\n')
    with pytest.raises(UsageError, match="no translated pairs"):
        prepare_parallel.main(["--input", po, "--output_dir", str(tmp_path / "out")])


@pytest.mark.parametrize("flags, fragment", [
    (["--layouts", "en_fa=1,diagonal=1"], "--layouts"),
    (["--layouts", "en_fa=0"], "--layouts"),
    (["--directions", "fa_de"], "--directions"),
    (["--instruction_fa_ratio", "1.5"], "--instruction_fa_ratio"),
    (["--tsv_columns", "en,de"], "--tsv_columns"),
    (["--source", "wikipedia"], "--source"),
])
def test_bad_flags(tmp_path, fixture_inputs, flags, fragment):
    with pytest.raises(UsageError) as e:
        prepare_parallel.main(["--input", *fixture_inputs, "--output_dir", str(tmp_path / "out"), *flags])
    assert e.value.render().startswith(fragment)  # what the command line prints after "error: "


def test_parse_ratios_error_carries_the_argument_and_value():
    from langadapt.errors import InputError
    from langadapt.parallel import parse_ratios

    assert parse_ratios("a=3,b=1", ("a", "b", "c")) == {"a": 0.75, "b": 0.25, "c": 0.0}
    for spec in ("a=1,z=1", "a=x", "a=-1", "a=0"):
        with pytest.raises(InputError) as e:
            parse_ratios(spec, ("a", "b"), arg="layouts")
        assert (e.value.arg, e.value.value) == ("layouts", spec) and e.value.render().startswith("--layouts: ")


def test_command_line_exit_status_and_message(tmp_path):
    tsv = _write(tmp_path / "a.tsv", "one\ttwo\tthree\n")
    proc = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "data", "prepare_parallel.py"), "--input", tsv,
                           "--output_dir", str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO_ROOT)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {tsv}:1: expected 2 tab-separated columns (en, fa), found 3; fix or remove this row")


def test_existing_output_dir_is_refused(tmp_path, fixture_inputs):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(UsageError, match="--overwrite"):
        prepare_parallel.main(["--input", *fixture_inputs, "--output_dir", str(out)])
    assert os.listdir(out) == ["keep.txt"]


# ------------------------------------------------------------------------------------------------ bundled sources


def test_bundled_sources_by_default(tmp_path):
    """With no input, Django's Persian catalogues and persian-llm-reference's manifest are read (offline)."""
    out = str(tmp_path / "out")
    report = prepare_parallel.main(["--output_dir", out])
    reading = report["reading"]
    assert set(reading) == {"django", "persian-llm-reference"}
    assert reading["persian-llm-reference"]["pairs_read"] == 159  # 151 en/fa objects + 8 gap-map items
    assert reading["django"]["pairs_read"] > 850 and reading["django"]["po_untranslated"] > 0
    assert report["cleaning"]["kept"] > 900
    pairs = _read_jsonl(os.path.join(out, "pairs.jsonl"))
    assert any(p["origin"].startswith("django:conf/locale/fa/LC_MESSAGES/django.po:") for p in pairs)
    assert any(p["origin"].startswith("django:contrib/admin/") for p in pairs)


def test_repeated_source_flags(tmp_path):
    out = str(tmp_path / "out")
    report = prepare_parallel.main(["--source", "persian-llm-reference", "--output_dir", out])
    assert set(report["reading"]) == {"persian-llm-reference"}
    argv = parallel.merge_repeated_flags(["--source", "django", "--x", "1", "--source", "persian-llm-reference"],
                                         ["--source"])
    assert argv == ["--x", "1", "--source", "django", "persian-llm-reference"]


def test_allocate_is_exact_and_seeded():
    import random

    labels = parallel.allocate(7, {"a": 0.5, "b": 0.5, "c": 0.0}, random.Random(0))
    assert sorted(Counter(labels).values()) == [3, 4] and "c" not in labels
    assert labels == parallel.allocate(7, {"a": 0.5, "b": 0.5, "c": 0.0}, random.Random(0))


def test_sft_stage_reads_the_translation_instructions(tmp_path, fixture_inputs):
    """The instruction file is in the format the SFT stage reads (langadapt.sft_data), both .json and .jsonl."""
    from langadapt import sft_data  # an in-repo import: a break must fail, not skip

    for fmt in ("json", "jsonl"):
        out = str(tmp_path / f"out_{fmt}")
        prepare_parallel.main(["--input", *fixture_inputs, "--output_dir", out, "--sft_format", fmt])
        records = sft_data.read_sft_records(os.path.join(out, "sft"))
        assert len(records) == 80


def test_pretraining_stage_reads_the_documents(tmp_path, fixture_inputs):
    """pretrain/ is a --dataset_dir the pretraining stage reads: one document per pair, both languages in it."""
    from langadapt.io import iter_corpus, resolve_files

    out = _run(tmp_path, fixture_inputs)
    docs = list(iter_corpus(resolve_files(os.path.join(out, "pretrain"), "--dataset_dir")))
    assert len(docs) == 40
    assert all("\n" in d and _has_persian(d) and any(ch.isascii() and ch.isalpha()
                                                                                   for ch in d) for d in docs)


# ------------------------------------------------------------------------------------- recipes (slurm/pipeline.sh)


def _pipeline_dry_run(tmp_path, recipe_text=None, recipe=None, *overrides):
    """``slurm/pipeline.sh --dry-run`` on a recipe (text written to a file, or a shipped one); returns the process."""
    base = tmp_path / "base"
    base.mkdir(exist_ok=True)
    if recipe is None:
        recipe = _write(tmp_path / "recipe.env", recipe_text)
    return subprocess.run(
        ["bash", os.path.join(REPO_ROOT, "slurm", "pipeline.sh"), "--dry-run", recipe, f"BASE_MODEL={base}",
         f"RUN_DIR={tmp_path / 'run'}", f"LOG_DIR={tmp_path / 'logs'}", "EVAL_DATA_DIR=none", *overrides],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)


_TWO_STAGES = """STAGES="pt_fa sft"
PT_FA_KIND=pretrain
PT_FA_DATASET_DIR=data/fa
SFT_KIND=sft
SFT_DATASET_DIR=data/sft
"""


@pytest.mark.parametrize("from_line, missing", [
    ("SFT_FROM=pt_bi", "pt_bi"),  # no such stage
    ("SFT_FROM=merged:pt_bi", "pt_bi"),  # merging an adapter nobody trains
    ("SFT_FROM=sft", "sft"),  # itself
    ("PT_FA_FROM=sft", "sft"),  # a later stage
])
def test_recipe_stage_from_an_adapter_no_earlier_stage_produces(tmp_path, from_line, missing):
    proc = _pipeline_dry_run(tmp_path, _TWO_STAGES + from_line + "\n")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"starts from '{missing}', which no earlier stage produces" in proc.stderr
    assert from_line.split("=")[0] in proc.stderr  # names the recipe variable to fix
    assert "step " not in proc.stdout  # nothing planned or submitted


def test_recipe_with_valid_chain_is_planned(tmp_path):
    proc = _pipeline_dry_run(tmp_path, _TWO_STAGES + "SFT_FROM=pt_fa\n")
    assert proc.returncode == 0, proc.stderr
    import re

    assert re.search(r"^step sft: slurm/sft\.sbatch after \[\s*pt_fa\s*\]", proc.stdout, re.M), proc.stdout
    assert f"PEFT_PATH={tmp_path / 'run' / 'pt_fa'}" in proc.stdout


def test_paper_recipe_plans_four_chained_stages(tmp_path):
    """configs/recipes/paper.env: four stages, each continuing the previous one's adapter, an evaluation after each."""
    proc = _pipeline_dry_run(tmp_path, None, os.path.join(REPO_ROOT, "configs", "recipes", "paper.env"),
                             "TOKENIZER_TRAIN_FILE=data/fa", "PT_FA_DATASET_DIR=data/fa",
                             "SFT_TASK_DATASET_DIR=data/tasks", "EVAL_PERPLEXITY_FILES=fa.txt,en.txt")
    assert proc.returncode == 0, proc.stderr
    steps = {}
    for line in proc.stdout.splitlines():
        if line.startswith("step "):
            name = line.split()[1].rstrip(":")
            steps[name] = {"launcher": line.split()[2]}
        elif line.startswith("    ") and "=" in line:
            key, _, value = line.strip().partition("=")
            steps[name][key] = value
    run = str(tmp_path / "run")
    assert [s for s in steps if not s.startswith(("eval_", "tokenizer", "merge_", "report"))] == \
        ["pt_fa", "pt_bi", "sft_bi", "sft_task"]
    assert [steps[s]["launcher"] for s in ("pt_fa", "pt_bi", "sft_bi", "sft_task")] == \
        ["slurm/pretrain.sbatch", "slurm/pretrain.sbatch", "slurm/sft.sbatch", "slurm/sft.sbatch"]
    assert "PEFT_PATH" not in steps["pt_fa"]
    assert steps["pt_bi"]["PEFT_PATH"] == f"{run}/pt_fa"
    assert steps["sft_bi"]["PEFT_PATH"] == f"{run}/pt_bi"
    assert steps["sft_task"]["PEFT_PATH"] == f"{run}/sft_bi"
    assert steps["pt_bi"]["DATASET_DIR"] == "outputs/paper/parallel/pretrain"
    assert all(steps[s]["TOKENIZER_NAME_OR_PATH"] == f"{run}/tokenizer" for s in ("pt_fa", "sft_task"))
    assert {"eval_base", "eval_pt_fa", "eval_pt_bi", "eval_sft_bi", "eval_sft_task", "report"} <= set(steps)


def test_byte_order_mark_is_ignored(tmp_path):
    po = _write(tmp_path / "a.po", "\ufeff" + PO_HEADER + 'msgid "Yes"\nmsgstr "بله"\n')
    tsv = _write(tmp_path / "a.tsv", "\ufeffNo\tنه\n")
    jsonl = _write(tmp_path / "a.jsonl", '\ufeff{"en": "Maybe", "fa": "شاید"}\n')
    out = _run(tmp_path, [po, tsv, jsonl])
    assert {(p["en"], p["fa"]) for p in _read_jsonl(os.path.join(out, "pairs.jsonl"))} == {
        ("Yes", "بله"), ("No", "نه"), ("Maybe", "شاید")}
