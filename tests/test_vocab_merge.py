"""tokenizer/merge.py, langadapt.vocab_merge and langadapt.vocab_report: the merge invariants of issue 2."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as sp_pb2
from transformers import AutoTokenizer

from _tokenizer_helpers import (
    STRESS_EN,
    STRESS_FA,
    assert_nothing_written,
    expect_usage_error,
    extract_vocab,
    merge,
    split_corpus,
    write_lines,
)
from langadapt.normalize import NormalizerConfig, normalize
from langadapt.vocab import byte_level_to_bytes, bytes_in_scripts, text_in_scripts
from langadapt.vocab_merge import float32, new_piece_scores, sp_merge_floor

ARABIC = ("Arabic",)
KINDS = ("sentencepiece", "byte_level_bpe")


@pytest.fixture(scope="module")
def texts(tmp_path_factory, persian_lines, english_lines) -> dict:
    """Train / held-out Persian files and a held-out English file."""
    d = tmp_path_factory.mktemp("texts")
    fa_train, fa_held = split_corpus(persian_lines)
    _, en_held = split_corpus(english_lines)
    return {
        "fa_train": write_lines(str(d / "fa_train.txt"), fa_train[:4000]),
        "fa_eval": write_lines(str(d / "fa_eval.txt"), fa_held[:400]),
        "en_eval": write_lines(str(d / "en_eval.txt"), en_held),
        "fa_held": fa_held[:400], "en_held": en_held,
    }


@pytest.fixture(scope="module")
def bases(sp_base_dir, bpe_base_dir) -> dict:
    return {"sentencepiece": sp_base_dir, "byte_level_bpe": bpe_base_dir}


@pytest.fixture(scope="module")
def extras(tmp_path_factory, texts, bases) -> dict:
    """Add-ons trained with the base's settings, one per kind."""
    out = {}
    for kind, base in bases.items():
        d = str(tmp_path_factory.mktemp(f"extra_{kind}") / "extra")
        extract_vocab.main(["--train_file", texts["fa_train"], "--vocab_size", "1200", "--base_tokenizer", base,
                            "--output_dir", d, "--num_threads", "1"])
        out[kind] = d
    return out


@pytest.fixture(scope="module")
def merged(tmp_path_factory, texts, bases, extras) -> dict:
    """Merged tokenizer folders and their reports, one per kind."""
    out = {}
    for kind, base in bases.items():
        d = str(tmp_path_factory.mktemp(f"merged_{kind}") / "tok")
        report = merge.main(["--base_tokenizer", base, "--extra_model", extras[kind], "--output_dir", d,
                             "--eval_file", texts["fa_eval"], "--eval_file", texts["en_eval"]])
        out[kind] = (d, report)
    return out


def _proto(path: str):
    proto = sp_pb2.ModelProto()
    with open(path, "rb") as f:
        proto.ParseFromString(f.read())
    return proto


def _ids(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False)


@pytest.mark.parametrize("kind", KINDS)
def test_folder_contract_and_loading(kind, bases, merged):
    d, report = merged[kind]
    base = AutoTokenizer.from_pretrained(bases[kind])
    tok = AutoTokenizer.from_pretrained(d)
    expected = {"tokenizer.json", "tokenizer_config.json", "langadapt_tokenizer.json", "langadapt_normalizer.json",
                "merge_report.json", "merge_report.md", "merge_report.png"}
    if kind == "sentencepiece":
        expected.add("tokenizer.model")
    assert expected <= set(os.listdir(d))
    with open(os.path.join(d, "langadapt_tokenizer.json"), encoding="utf-8") as f:
        meta = json.load(f)
    assert meta == {"base_tokenizer": os.path.abspath(bases[kind]), "base_vocab_size": len(base),
                    "vocab_size": len(tok), "new_token_ids": [len(base), len(tok)], "kind": kind}
    assert len(tok) > len(base) + 200
    assert NormalizerConfig.from_dir(d) == NormalizerConfig()
    assert (tok.bos_token, tok.eos_token, tok.unk_token) == (base.bos_token, base.eos_token, base.unk_token)
    assert tok.chat_template == base.chat_template
    with open(os.path.join(d, "merge_report.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("kind", KINDS)
def test_base_ids_and_pieces_unchanged(kind, bases, merged):
    d, _ = merged[kind]
    base = AutoTokenizer.from_pretrained(bases[kind])
    tok = AutoTokenizer.from_pretrained(d)
    base_vocab, vocab = base.get_vocab(), tok.get_vocab()
    assert all(vocab[piece] == i for piece, i in base_vocab.items())
    assert {i: t.content for i, t in base.added_tokens_decoder.items()} == \
        {i: t.content for i, t in tok.added_tokens_decoder.items() if i < len(base)}
    if kind == "sentencepiece":
        b, m = _proto(os.path.join(bases[kind], "tokenizer.model")), _proto(os.path.join(d, "tokenizer.model"))
        triples = [(p.piece, p.score, p.type) for p in m.pieces]
        assert [(p.piece, p.score, p.type) for p in b.pieces] == triples[:len(b.pieces)]
        assert m.trainer_spec.vocab_size == len(m.pieces) == len(tok)
    else:
        with open(os.path.join(bases[kind], "tokenizer.json"), encoding="utf-8") as f:
            b = json.load(f)
        with open(os.path.join(d, "tokenizer.json"), encoding="utf-8") as f:
            m = json.load(f)
        n = len(b["model"]["merges"])
        assert m["model"]["merges"][:n] == b["model"]["merges"]  # every base merge keeps its rank
        assert m["pre_tokenizer"] == b["pre_tokenizer"] and m["decoder"] == b["decoder"]
        have = set(b["model"]["vocab"])
        for pair in m["model"]["merges"][n:]:  # appended merges: both halves exist (or were just added)
            left, right = pair if isinstance(pair, list) else pair.split(" ", 1)
            assert left in have and right in have
            have.add(left + right)


@pytest.mark.parametrize("kind", KINDS)
def test_english_segmentation_unchanged(kind, bases, merged, english_lines):
    base = AutoTokenizer.from_pretrained(bases[kind])
    tok = AutoTokenizer.from_pretrained(merged[kind][0])
    probes = list(english_lines) + STRESS_EN + ["1234567890 ,.;:!? ()[]{} -- __init__", "ÀÉÎÕÜ ß ø"]
    changed = [x for x in probes if _ids(base, x) != _ids(tok, x)]
    assert changed == []


@pytest.mark.parametrize("kind", KINDS)
def test_new_pieces_are_target_script_only(kind, merged):
    d, report = merged[kind]
    tok = AutoTokenizer.from_pretrained(d)
    lo, hi = report["new_token_ids"]
    pieces = tok.convert_ids_to_tokens(list(range(lo, hi)))
    if kind == "sentencepiece":
        assert all(text_in_scripts(p, ARABIC) for p in pieces)
    else:
        assert all(bytes_in_scripts(byte_level_to_bytes(p), ARABIC) for p in pieces)
    text = "".join(tok.convert_tokens_to_string([p]) for p in pieces)
    assert not any(c.isascii() and not c.isspace() for c in text)  # no Latin, digit or punctuation pieces


@pytest.mark.parametrize("kind", KINDS)
def test_persian_fewer_tokens_and_exact_round_trip(kind, bases, merged, texts):
    base = AutoTokenizer.from_pretrained(bases[kind])
    tok = AutoTokenizer.from_pretrained(merged[kind][0])
    lines = texts["fa_held"] + STRESS_FA
    assert sum("\u200c" in x for x in lines) > 20  # ZWNJ really is exercised
    words = sum(len(x.split()) for x in lines)
    base_tpw = sum(len(_ids(base, x)) for x in lines) / words
    tpw = sum(len(_ids(tok, x)) for x in lines) / words
    assert tpw < 0.5 * base_tpw
    for x in lines + texts["en_held"][:300] + STRESS_EN:
        assert tok.decode(_ids(tok, x)) == x
    zwnj_ids = _ids(tok, "می\u200cخواهم")
    assert "\u200c" in tok.decode(zwnj_ids) and len(zwnj_ids) < len(_ids(base, "می\u200cخواهم"))


def test_sp_hf_agrees_with_sentencepiece_on_every_string(merged, texts, english_lines):
    d, _ = merged["sentencepiece"]
    sp = spm.SentencePieceProcessor(model_file=os.path.join(d, "tokenizer.model"))
    tok = AutoTokenizer.from_pretrained(d)
    probes = texts["fa_held"] + STRESS_FA + list(english_lines) + STRESS_EN
    assert [x for x in probes if sp.encode(x) != _ids(tok, x)] == []
    assert all(sp.decode(sp.encode(x)) == x for x in probes)


def test_sp_saved_tokenizer_json_matches_a_fresh_conversion(merged, texts, tmp_path):
    """The tokenizer.json we save is what transformers builds from our tokenizer.model, string for string."""
    d, _ = merged["sentencepiece"]
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    shutil.copy(os.path.join(d, "tokenizer.model"), fresh)
    (fresh / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer", "legacy": False}))
    a, b = AutoTokenizer.from_pretrained(d), AutoTokenizer.from_pretrained(str(fresh))
    assert a.get_vocab() == b.get_vocab()
    assert all(_ids(a, x) == _ids(b, x) for x in texts["fa_held"] + STRESS_FA + STRESS_EN)


def test_sp_scores_below_lowest_merge_decreasing(merged, bases):
    d, report = merged["sentencepiece"]
    base = _proto(os.path.join(bases["sentencepiece"], "tokenizer.model"))
    m = _proto(os.path.join(d, "tokenizer.model"))
    floor = sp_merge_floor(base)
    new = [p.score for p in m.pieces[len(base.pieces):]]
    assert new[0] < floor and all(a > b for a, b in zip(new, new[1:]))
    assert report["merge"]["details"]["base_merge_score_floor"] == floor


def test_sp_whitespace_pieces_at_minus_1e9_do_not_set_the_floor(tmp_path, bases, extras, texts):
    """Llama-2 scores its whitespace runs -1e9; new scores must stay above them (float32 spacing there is 64)."""
    base = _proto(os.path.join(bases["sentencepiece"], "tokenizer.model"))
    real_floor = sp_merge_floor(base)
    for n in (2, 4, 8):
        if "▁" * n not in {p.piece for p in base.pieces}:
            base.pieces.append(sp_pb2.ModelProto.SentencePiece(piece="▁" * n, score=-1e9, type=1))
    base.trainer_spec.vocab_size = len(base.pieces)
    assert sp_merge_floor(base) == real_floor
    llama_like = tmp_path / "llama_like"
    llama_like.mkdir()
    (llama_like / "tokenizer.model").write_bytes(base.SerializeToString())
    shutil.copy(os.path.join(bases["sentencepiece"], "tokenizer_config.json"), llama_like)
    out = str(tmp_path / "merged")
    merge.main(["--base_tokenizer", str(llama_like), "--extra_model", extras["sentencepiece"], "--output_dir", out,
                "--max_new_pieces", "300"])
    m = _proto(os.path.join(out, "tokenizer.model"))
    new = [p.score for p in m.pieces[len(base.pieces):]]
    assert len(new) == 300 and -1e8 < new[-1] < new[0] < real_floor
    assert len({float32(s) for s in new}) == 300
    sp = spm.SentencePieceProcessor(model_file=os.path.join(out, "tokenizer.model"))
    tok = AutoTokenizer.from_pretrained(out)
    probes = texts["fa_held"][:200] + STRESS_FA + STRESS_EN
    assert [x for x in probes if sp.encode(x) != _ids(tok, x)] == []


def test_sp_base_that_already_has_persian_pieces(tmp_path, texts, english_lines):
    """Like Llama-2, a base with a few Persian pieces: new pieces can be halves of base pieces (cross merges),
    and HF must still agree with sentencepiece."""
    import tiny

    fa_train = open(texts["fa_train"], encoding="utf-8").read().split("\n")
    base = tiny.train_sp_tokenizer(list(english_lines) + fa_train[:600], str(tmp_path / "base"), vocab_size=1500)
    extra, out = str(tmp_path / "extra"), str(tmp_path / "out")
    extract_vocab.main(["--train_file", texts["fa_train"], "--vocab_size", "1200", "--base_tokenizer", base,
                        "--output_dir", extra, "--num_threads", "1"])
    report = merge.main(["--base_tokenizer", base, "--extra_model", extra, "--output_dir", out,
                         "--eval_file", texts["fa_eval"], "--eval_file", texts["en_eval"]])
    assert report["merge"]["details"]["cross_merges"] > 0 and report["merge"]["dropped"]["in_base"] > 50
    assert report["hf_sp_disagreements"] == 0 and report["changed_base_script_lines"] == 0
    sp = spm.SentencePieceProcessor(model_file=os.path.join(out, "tokenizer.model"))
    tok = AutoTokenizer.from_pretrained(out)
    probes = fa_train[:1500] + STRESS_FA
    assert [x for x in probes if sp.encode(x) != _ids(tok, x)] == []
    fresh = tmp_path / "fresh"  # what transformers converts from our tokenizer.model alone agrees too
    fresh.mkdir()
    shutil.copy(os.path.join(out, "tokenizer.model"), fresh)
    (fresh / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer", "legacy": False}))
    converted = AutoTokenizer.from_pretrained(str(fresh))
    assert [x for x in probes if _ids(converted, x) != _ids(tok, x)] == []


def test_new_piece_scores_unit():
    assert new_piece_scores(-31740.0, 3) == [-31741.0, -31742.0, -31743.0]
    assert new_piece_scores(-2.5, 2) == [-4.0, -5.0]
    from langadapt.cli import UsageError

    with pytest.raises(UsageError):
        new_piece_scores(-1e8 + 10, 100)  # would reach the never-merge range


@pytest.mark.parametrize("kind", KINDS)
def test_max_new_pieces(kind, tmp_path, bases, extras, texts):
    out = str(tmp_path / "tok")
    report = merge.main(["--base_tokenizer", bases[kind], "--extra_model", extras[kind], "--output_dir", out,
                         "--max_new_pieces", "150", "--eval_file", texts["fa_eval"]])
    tok = AutoTokenizer.from_pretrained(out)
    base = AutoTokenizer.from_pretrained(bases[kind])
    assert report["new_pieces"] == len(tok) - len(base) == 150
    assert report["merge"]["dropped"]["max_new_pieces"] > 0
    assert report["roundtrip_failures"] == 0
    if kind == "sentencepiece":
        assert report["hf_sp_disagreements"] == 0


@pytest.mark.parametrize("kind", KINDS)
def test_report_matches_a_recount(kind, bases, merged, texts):
    d, report = merged[kind]
    with open(os.path.join(d, "merge_report.json"), encoding="utf-8") as f:
        assert json.load(f) == json.loads(json.dumps(report))
    base = AutoTokenizer.from_pretrained(bases[kind])
    tok = AutoTokenizer.from_pretrained(d)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(d, "tokenizer.model")) if kind == "sentencepiece" else None
    lo, hi = report["new_token_ids"]
    assert (report["base_vocab_size"], report["merged_vocab_size"], report["new_pieces"]) == \
        (len(base), len(tok), len(tok) - len(base))
    used_all = set()
    for name in ("fa_eval", "en_eval"):
        with open(texts[name], encoding="utf-8") as f:
            lines = [normalize(x.rstrip("\n")) for x in f if x.strip()]
        s = report["eval"][texts[name]]
        words = sum(len(x.split()) for x in lines)
        b = [_ids(base, x) for x in lines]
        m = [_ids(tok, x) for x in lines]
        used = {i for ids in m for i in ids if lo <= i < hi}
        used_all |= used
        assert s["lines"] == len(lines) and s["words"] == words
        assert s["base_tokens"] == sum(map(len, b)) and s["merged_tokens"] == sum(map(len, m))
        assert s["merged_tokens_per_word"] == pytest.approx(sum(map(len, m)) / words)
        assert s["base_bytes_per_token"] == pytest.approx(sum(len(x.encode()) for x in lines) / sum(map(len, b)))
        assert s["new_pieces_used"] == len(used)
        assert s["changed_lines"] == sum(x != y for x, y in zip(b, m))
        assert s["roundtrip_failures"] == sum(tok.decode(y) != x for x, y in zip(lines, m)) == 0
        if sp is not None:
            assert s["hf_sp_disagreements"] == sum(sp.encode(x) != y for x, y in zip(lines, m)) == 0
        else:
            assert s["hf_sp_disagreements"] is None
    en = report["eval"][texts["en_eval"]]
    assert en["changed_lines"] == en["base_script_lines_changed"] == 0 and en["base_script_lines"] == en["lines"]
    fa = report["eval"][texts["fa_eval"]]
    assert fa["merged_tokens_per_word"] < fa["base_tokens_per_word"]
    assert report["new_pieces_used"] == len(used_all)
    assert report["new_pieces_used_share"] == pytest.approx(len(used_all) / (hi - lo))
    md = open(os.path.join(d, "merge_report.md"), encoding="utf-8").read()
    assert f"{fa['merged_tokens_per_word']:.3f}" in md and str(report["merged_vocab_size"]) in md


@pytest.mark.parametrize("kind", KINDS)
def test_new_ids_follow_added_tokens(kind, tmp_path, bases, extras, texts):
    """A base whose HF tokenizer has a token beyond its model vocabulary (a <pad> added at the end): it keeps its
    id and new pieces start after it."""
    base_dir = str(tmp_path / "base_with_pad")
    shutil.copytree(bases[kind], base_dir)
    base = AutoTokenizer.from_pretrained(base_dir)
    base.add_special_tokens({"pad_token": "<pad_extra>"})
    base.save_pretrained(base_dir)
    base = AutoTokenizer.from_pretrained(base_dir)
    pad_id = base.convert_tokens_to_ids("<pad_extra>")
    assert pad_id == len(base) - 1
    out = str(tmp_path / "tok")
    report = merge.main(["--base_tokenizer", base_dir, "--extra_model", extras[kind], "--output_dir", out,
                         "--max_new_pieces", "200", "--eval_file", texts["fa_eval"]])
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.convert_tokens_to_ids("<pad_extra>") == pad_id and tok.pad_token == "<pad_extra>"
    assert report["new_token_ids"] == [pad_id + 1, len(tok)]
    assert _ids(tok, "a<pad_extra>b") == _ids(base, "a<pad_extra>b")
    if kind == "sentencepiece":
        assert report["hf_sp_disagreements"] == 0


def test_unigram_addon_and_scripts_any(tmp_path, bases, texts, english_lines):
    """A unigram add-on (the seed paper's) merges too, dropping the pieces BPE can never form; with English text in
    the add-on corpus, --scripts any admits Latin pieces and the default keeps them out."""
    mixed = write_lines(str(tmp_path / "mixed.txt"), open(texts["fa_train"], encoding="utf-8").read().split("\n")[:2000]
                        + list(english_lines[:1000]))
    extra = str(tmp_path / "extra")
    extract_vocab.main(["--train_file", mixed, "--vocab_size", "1500", "--base_tokenizer", bases["sentencepiece"],
                        "--output_dir", extra, "--model_type", "unigram", "--num_threads", "1"])
    out_default, out_any = str(tmp_path / "default"), str(tmp_path / "any")
    r1 = merge.main(["--base_tokenizer", bases["sentencepiece"], "--extra_model", extra, "--output_dir", out_default,
                     "--eval_file", texts["fa_eval"]])
    r2 = merge.main(["--base_tokenizer", bases["sentencepiece"], "--extra_model", extra, "--output_dir", out_any,
                     "--scripts", "any", "--eval_file", texts["fa_eval"]])
    assert r1["merge"]["dropped"]["other_script"] > 0 and r1["merge"]["dropped"]["unreachable"] > 0
    assert r1["hf_sp_disagreements"] == 0
    tok = AutoTokenizer.from_pretrained(out_any)
    lo, hi = r2["new_token_ids"]
    assert any(any("a" <= c <= "z" for c in p) for p in tok.convert_ids_to_tokens(list(range(lo, hi))))


# ---------------------------------------------------------------------------------------------------- bad input


def test_bad_inputs(tmp_path, capsys, bases, extras, texts, english_lines):
    out = str(tmp_path / "out")
    sp_base, bpe_base = bases["sentencepiece"], bases["byte_level_bpe"]

    def run(*argv, fragments):
        expect_usage_error(merge.main, list(argv), capsys, *fragments)
        assert_nothing_written(out)

    empty = tmp_path / "empty_base"
    empty.mkdir()
    run("--base_tokenizer", str(empty), "--extra_model", extras["sentencepiece"], "--output_dir", out,
        fragments=("--base_tokenizer", "empty_base", "holds no tokenizer"))
    wordpiece = tmp_path / "wp"
    wordpiece.mkdir()
    from tokenizers import Tokenizer, models

    Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]")).save(str(wordpiece / "tokenizer.json"))
    run("--base_tokenizer", str(wordpiece), "--extra_model", extras["sentencepiece"], "--output_dir", out,
        fragments=("--base_tokenizer", "WordPiece", "supported"))
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"\x00\x01not a model at all" * 10)
    run("--base_tokenizer", sp_base, "--extra_model", str(junk), "--output_dir", out,
        fragments=("--extra_model", "junk.model", "not a SentencePiece model"))
    not_bpe = tmp_path / "wordpiece.json"
    shutil.copy(wordpiece / "tokenizer.json", not_bpe)
    run("--base_tokenizer", bpe_base, "--extra_model", str(not_bpe), "--output_dir", out,
        fragments=("--extra_model", "wordpiece.json", "not a BPE tokenizer"))
    run("--base_tokenizer", sp_base, "--extra_model", extras["byte_level_bpe"], "--output_dir", out,
        fragments=("--extra_model", "byte_level_bpe add-on but the base is sentencepiece", "--base_tokenizer"))
    run("--base_tokenizer", sp_base, "--extra_model", str(tmp_path / "missing.model"), "--output_dir", out,
        fragments=("--extra_model", "missing.model", "does not exist"))
    run("--base_tokenizer", sp_base, "--extra_model", extras["sentencepiece"], "--output_dir", out,
        "--scripts", "Klingon", fragments=("--scripts", "Klingon"))
    run("--base_tokenizer", sp_base, "--extra_model", extras["sentencepiece"], "--output_dir", out,
        "--eval_file", str(tmp_path / "nope.txt"), fragments=("--eval_file", "nope.txt"))
    run("--base_tokenizer", sp_base, "--extra_model", extras["sentencepiece"], "--output_dir", out,
        "--max_new_pieces", "0", fragments=("--max_new_pieces",))
    import tiny

    unigram = tiny.train_sp_tokenizer(english_lines[:800], str(tmp_path / "unigram_base"), vocab_size=500,
                                      model_type="unigram")
    run("--base_tokenizer", unigram, "--extra_model", extras["sentencepiece"], "--output_dir", out,
        fragments=("--base_tokenizer", "not BPE", "supported"))
    bad_eval = tmp_path / "bad.txt"
    bad_eval.write_bytes("خوب\n".encode("cp1256"))
    run("--base_tokenizer", sp_base, "--extra_model", extras["sentencepiece"], "--output_dir", out,
        "--eval_file", str(bad_eval), fragments=("bad.txt:1", "UTF-8"))  # found late: the folder is still not left


def test_existing_output_refused_unless_overwrite(tmp_path, capsys, bases, extras):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("x")
    argv = ["--base_tokenizer", bases["byte_level_bpe"], "--extra_model", extras["byte_level_bpe"],
            "--output_dir", str(out), "--max_new_pieces", "50"]
    expect_usage_error(merge.main, argv, capsys, "--output_dir", "not empty", "--overwrite")
    assert os.listdir(out) == ["old.txt"]
    merge.main([*argv, "--overwrite"])
    assert "tokenizer.json" in os.listdir(out) and "old.txt" not in os.listdir(out)


@pytest.mark.parametrize("kind", KINDS)
def test_merged_tokenizer_json_normalizes_raw_persian(merged, texts, bases, kind):
    """issue 13: a plain AutoTokenizer on raw text (Arabic yeh/kaf, kashida, bidi marks) gives langadapt's ids, and
    English text still segments exactly as the base tokenizer does."""
    from langadapt.hf_normalizer import has_normalizer

    out, _ = merged[kind]
    assert has_normalizer(out)
    tok, base = AutoTokenizer.from_pretrained(out), AutoTokenizer.from_pretrained(bases[kind])
    for line in texts["fa_held"][:100]:
        # (not before the first character: see hf_normalizer.NOT_EXPRESSIBLE on SentencePiece's leading "▁")
        raw = line[0] + line[1:].replace("ا", "ـا", 1).replace(" ", " \u200f", 1)
        raw = raw.replace("ی", "ي").replace("ک", "ك")
        assert tok(raw)["input_ids"] == tok(normalize(raw))["input_ids"]
        assert normalize(raw) == normalize(line)
    for line in texts["en_held"][:300]:
        assert tok(line)["input_ids"] == base(line)["input_ids"]


def test_sp_cross_merge_completes_a_base_piece_only_a_new_half_reaches(tmp_path, sp_base_dir):
    """A base whose Persian piece ``▁کتاب`` is blocked in its own segmentation: ``اب`` outranks ``تا``, so the base
    stops at [▁ک, ت, اب] (▁کتاب comes only from ▁کتا + ب, which that order never reaches). The add-on's ``▁کت`` then
    joins ▁ک + ت, and sentencepiece completes ▁کت + اب = ▁کتاب at the base piece's own score. The HF merges must
    hold that cross merge (new half + base half -> base piece) to agree with sentencepiece."""
    from langadapt.vocab_merge import merge_sentencepiece

    base = _proto(os.path.join(sp_base_dir, "tokenizer.model"))
    have = {p.piece for p in base.pieces}
    top = max(p.score for p in base.pieces)
    # Merged pieces above every base score, in this priority: اب, ▁ک, تا, ▁کتا, ▁کتاب; their letters as
    # characters (below every merge, as sentencepiece stores them).
    added = [("اب", top + 5), ("▁ک", top + 4), ("تا", top + 3), ("▁کتا", top + 2), ("▁کتاب", top + 1)]
    low = min(p.score for p in base.pieces)
    added += [(ch, low - 1 - i) for i, ch in enumerate("کتاب")]
    assert not {piece for piece, _ in added} & have and "تاب" not in have and "▁کت" not in have
    for piece, score in added:
        base.pieces.append(sp_pb2.ModelProto.SentencePiece(piece=piece, score=score, type=1))
    base.trainer_spec.vocab_size = len(base.pieces)
    base_dir = tmp_path / "base"
    base_dir.mkdir()
    (base_dir / "tokenizer.model").write_bytes(base.SerializeToString())
    (base_dir / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer",
                                                                 "legacy": False}))
    word = "کتاب"
    sp_base = spm.SentencePieceProcessor(model_file=str(base_dir / "tokenizer.model"))
    assert sp_base.encode(word, out_type=str) == ["▁ک", "ت", "اب"]  # blocked in the base

    extra = sp_pb2.ModelProto()  # the base plus ▁کت: every other piece is dropped as already in the base
    extra.CopyFrom(base)
    extra.pieces.append(sp_pb2.ModelProto.SentencePiece(piece="▁کت", score=low - 10, type=1))
    extra.trainer_spec.vocab_size = len(extra.pieces)
    (tmp_path / "extra.model").write_bytes(extra.SerializeToString())

    out = tmp_path / "merged"
    out.mkdir()
    result = merge_sentencepiece(str(base_dir), str(tmp_path / "extra.model"), str(out), ("Arabic",))
    assert result.new_pieces == ["▁کت"]
    sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    assert sp.encode(word, out_type=str) == ["▁کتاب"]  # the new half completes the base piece
    tok = AutoTokenizer.from_pretrained(str(out))
    for text in (word, f"{word} خوب", f"این {word} است", "کت", "کتا", "تاب"):
        assert _ids(tok, text) == sp.encode(text), text
    assert result.details["cross_merges"] >= 1
