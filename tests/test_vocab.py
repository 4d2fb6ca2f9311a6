"""tokenizer/extract_vocab.py and the extraction half of langadapt.vocab."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from sentencepiece import sentencepiece_model_pb2 as sp_pb2

from _tokenizer_helpers import (
    REPO_ROOT,
    assert_nothing_written,
    expect_usage_error,
    extract_vocab,
    split_corpus,
    write_lines,
)
from langadapt.normalize import NormalizerConfig, normalize
from langadapt.vocab import (
    bytes_in_scripts,
    byte_level_to_bytes,
    detect_kind,
    text_in_scripts,
    validate_scripts,
)
from langadapt.cli import UsageError

ARABIC = ("Arabic",)


@pytest.fixture(scope="module")
def fa_train(tmp_path_factory, persian_lines) -> str:
    train, _ = split_corpus(persian_lines)
    return write_lines(str(tmp_path_factory.mktemp("fa") / "train.txt"), train[:3000])


def _proto(path: str):
    proto = sp_pb2.ModelProto()
    with open(path, "rb") as f:
        proto.ParseFromString(f.read())
    return proto


def test_sp_addon_copies_base_settings(tmp_path, sp_base_dir, fa_train):
    out = str(tmp_path / "extra")
    report = extract_vocab.main(["--train_file", fa_train, "--vocab_size", "700", "--base_tokenizer", sp_base_dir,
                                 "--output_dir", out, "--num_threads", "1"])
    base = _proto(os.path.join(sp_base_dir, "tokenizer.model"))
    extra = _proto(os.path.join(out, "extra.model"))
    for name in ("model_type", "byte_fallback", "split_digits", "split_by_unicode_script", "split_by_whitespace",
                 "split_by_number", "allow_whitespace_only_pieces", "treat_whitespace_as_suffix", "unk_id", "bos_id",
                 "eos_id", "pad_id"):
        assert getattr(extra.trainer_spec, name) == getattr(base.trainer_spec, name), name
    assert extra.trainer_spec.character_coverage == pytest.approx(base.trainer_spec.character_coverage)
    for name in ("name", "add_dummy_prefix", "remove_extra_whitespaces"):
        assert getattr(extra.normalizer_spec, name) == getattr(base.normalizer_spec, name), name
    assert extra.normalizer_spec.name == "identity"
    # The report agrees with a recount of the (normalized) corpus and of the model.
    with open(fa_train, encoding="utf-8") as f:
        lines = [normalize(x.rstrip("\n")) for x in f if x.strip()]
    assert report["vocab_size"] == len(extra.pieces) == 700
    assert report["corpus_lines"] == len(lines)
    assert report["corpus_chars"] == sum(map(len, lines))
    assert report["seconds"] > 0 and report["kind"] == "sentencepiece"
    with open(os.path.join(out, "extract_report.json"), encoding="utf-8") as f:
        assert json.load(f) == report
    assert NormalizerConfig.from_dir(out) == NormalizerConfig()
    assert sorted(os.listdir(out)) == ["extra.model", "extra.vocab", "extract_report.json",
                                       "langadapt_normalizer.json"]


def test_sp_addon_without_base_uses_llama2_settings_and_model_type_override(tmp_path, fa_train):
    out = str(tmp_path / "extra")
    extract_vocab.main(["--train_file", fa_train, "--vocab_size", "500", "--output_dir", out, "--model_type",
                        "unigram", "--input_sentence_size", "1000", "--num_threads", "1"])
    spec = _proto(os.path.join(out, "extra.model")).trainer_spec
    assert spec.model_type == 1  # unigram, as asked
    assert spec.byte_fallback and spec.split_digits and spec.allow_whitespace_only_pieces
    with open(os.path.join(out, "extract_report.json"), encoding="utf-8") as f:
        assert json.load(f)["trained_on_lines"] == 1000


def test_bpe_addon_uses_base_pipeline(tmp_path, bpe_base_dir, fa_train):
    out = str(tmp_path / "extra")
    report = extract_vocab.main(["--train_file", fa_train, "--vocab_size", "600", "--base_tokenizer", bpe_base_dir,
                                 "--output_dir", out])
    with open(os.path.join(bpe_base_dir, "tokenizer.json"), encoding="utf-8") as f:
        base = json.load(f)
    with open(os.path.join(out, "extra_tokenizer.json"), encoding="utf-8") as f:
        extra = json.load(f)
    assert extra["pre_tokenizer"] == base["pre_tokenizer"] and extra["normalizer"] == base["normalizer"]
    assert extra["model"]["type"] == "BPE" and len(extra["model"]["vocab"]) == report["vocab_size"] == 600
    assert len(extra["model"]["merges"]) == 600 - 256  # everything above the byte alphabet is a merge
    assert extra["added_tokens"] == []
    # Most learned tokens are Persian: the add-on really was trained on the target text.
    persian = [t for t in extra["model"]["vocab"] if len(t) > 1 and bytes_in_scripts(byte_level_to_bytes(t), ARABIC)]
    assert len(persian) > 0.9 * (600 - 256)


def test_directory_of_txt_and_jsonl_and_normalization(tmp_path, sp_base_dir):
    data = tmp_path / "data"
    data.mkdir()
    # Arabic yeh/kaf (U+064A, U+0643) must become Persian yeh/kaf before training.
    arabic_forms = ["كتاب يك روز خوب بود", "اين كار مي‌كنيم"] * 150
    write_lines(str(data / "a.txt"), arabic_forms)
    with open(data / "b.jsonl", "w", encoding="utf-8") as f:
        for line in arabic_forms:
            f.write(json.dumps({"text": line}, ensure_ascii=False) + "\n")
    out = str(tmp_path / "extra")
    report = extract_vocab.main(["--train_file", str(data), "--vocab_size", "300", "--base_tokenizer",
                                 sp_base_dir, "--output_dir", out, "--num_threads", "1"])
    assert report["corpus_lines"] == 600 and len(report["train_files"]) == 2
    pieces = "".join(p.piece for p in _proto(os.path.join(out, "extra.model")).pieces)
    assert "\u064a" not in pieces and "\u0643" not in pieces and "\u06cc" in pieces and "\u06a9" in pieces

    raw = str(tmp_path / "raw")
    extract_vocab.main(["--train_file", str(data), "--vocab_size", "300", "--base_tokenizer", sp_base_dir,
                        "--output_dir", raw, "--normalize", "false", "--num_threads", "1"])
    pieces = "".join(p.piece for p in _proto(os.path.join(raw, "extra.model")).pieces)
    assert "\u064a" in pieces and not NormalizerConfig.from_dir(raw).enabled


def test_script_filters():
    assert validate_scripts(["arabic"]) == ARABIC and validate_scripts(["any"]) == ("any",)
    with pytest.raises(UsageError, match="unknown script"):
        validate_scripts(["Klingon"])
    assert text_in_scripts("▁می\u200cروم", ARABIC)
    for piece in ("▁", "▁the", "۱۲", "،", "▁کتاب.", "ab", "▁کa"):
        assert not text_in_scripts(piece, ARABIC), piece
    alef = "ا".encode()  # b"\xd8\xa7"
    for ok in (b" " + alef, b" " + alef[:1], alef[1:], alef[1:] + alef + alef[:1], "می\u200cر".encode()):
        assert bytes_in_scripts(ok, ARABIC), ok
    for bad in (b" ", b"the", b" a" + alef, "۱".encode(), "،".encode(), alef + b".", b"\xa7\xa7\xa7\xa7", b"\xff"):
        assert not bytes_in_scripts(bad, ARABIC), bad
    assert byte_level_to_bytes("Ġا") is None or byte_level_to_bytes("ĠØ§") == b" " + alef
    assert byte_level_to_bytes("ĠØ§") == b" " + alef


# ---------------------------------------------------------------------------------------------------- bad input


def test_missing_empty_and_non_utf8_train_files(tmp_path, capsys, sp_base_dir):
    out = str(tmp_path / "out")
    common = ["--vocab_size", "300", "--base_tokenizer", sp_base_dir, "--output_dir", out]
    expect_usage_error(extract_vocab.main, ["--train_file", str(tmp_path / "nope.txt"), *common], capsys,
                       "--train_file", "nope.txt", "does not exist")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    expect_usage_error(extract_vocab.main, ["--train_file", str(empty), *common], capsys, "empty.txt", "is empty")
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n")
    expect_usage_error(extract_vocab.main, ["--train_file", str(blank), *common], capsys, "blank.txt", "no text")
    bad = tmp_path / "cp1256.txt"
    bad.write_bytes("سلام\n".encode() + "خوب\n".encode("cp1256"))
    expect_usage_error(extract_vocab.main, ["--train_file", str(bad), *common], capsys, "cp1256.txt:2", "UTF-8")
    assert_nothing_written(out)


def test_vocab_size_the_corpus_cannot_support(tmp_path, capsys, sp_base_dir, bpe_base_dir):
    small = write_lines(str(tmp_path / "small.txt"), ["سلام دنیا", "کتاب خوب است"] * 20)
    out = str(tmp_path / "out")
    err = expect_usage_error(
        extract_vocab.main,
        ["--train_file", small, "--vocab_size", "5000", "--base_tokenizer", sp_base_dir, "--output_dir", out,
         "--num_threads", "1"], capsys, "--vocab_size 5000", "at most")
    # The maximum quoted is the one sentencepiece reports, and it trains at that size.
    maximum = int(err.split("at most ")[1].split()[0])
    assert f"<= {maximum}" in err
    extract_vocab.main(["--train_file", small, "--vocab_size", str(maximum), "--base_tokenizer", sp_base_dir,
                        "--output_dir", out, "--num_threads", "1"])
    assert os.path.isfile(os.path.join(out, "extra.model"))
    out2 = str(tmp_path / "out2")
    expect_usage_error(extract_vocab.main, ["--train_file", small, "--vocab_size", "5000", "--base_tokenizer",
                                            bpe_base_dir, "--output_dir", out2], capsys, "--vocab_size", "at most")
    assert_nothing_written(out2)


def test_bad_base_folders(tmp_path, capsys, fa_train, bpe_base_dir):
    out = str(tmp_path / "out")
    common = ["--train_file", fa_train, "--vocab_size", "300", "--output_dir", out]
    nothing = tmp_path / "no_tokenizer"
    nothing.mkdir()
    (nothing / "config.json").write_text("{}")
    expect_usage_error(extract_vocab.main, [*common, "--base_tokenizer", str(nothing)], capsys,
                       "--base_tokenizer", "no_tokenizer", "holds no tokenizer")
    wordpiece = tmp_path / "wordpiece"
    _write_wordpiece(str(wordpiece))
    expect_usage_error(extract_vocab.main, [*common, "--base_tokenizer", str(wordpiece)], capsys,
                       "--base_tokenizer", "WordPiece", "supported")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "tokenizer.model").write_text("this is not a sentencepiece model")
    expect_usage_error(extract_vocab.main, [*common, "--base_tokenizer", str(corrupt)], capsys,
                       "tokenizer.model", "not a SentencePiece model")
    tiktoken_like = tmp_path / "tiktoken_like"  # Llama-3 folders may hold a tiktoken "tokenizer.model"
    shutil.copytree(bpe_base_dir, tiktoken_like)
    (tiktoken_like / "tokenizer.model").write_text("IQ== 0\nIg== 1\n")
    assert detect_kind(str(tiktoken_like)) == "byte_level_bpe"
    with pytest.raises(UsageError, match="not a folder"):
        detect_kind(str(tmp_path / "missing"))
    assert_nothing_written(out)


def _write_wordpiece(directory: str) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    os.makedirs(directory)
    tok = Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1, "##b": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(os.path.join(directory, "tokenizer.json"))


def test_existing_output_dir_refused_unless_overwrite(tmp_path, capsys, sp_base_dir, fa_train):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    argv = ["--train_file", fa_train, "--vocab_size", "300", "--base_tokenizer", sp_base_dir, "--output_dir",
            str(out), "--num_threads", "1"]
    expect_usage_error(extract_vocab.main, argv, capsys, "--output_dir", "not empty", "--overwrite")
    assert os.listdir(out) == ["keep.txt"]
    extract_vocab.main([*argv, "--overwrite"])
    assert "extra.model" in os.listdir(out) and "keep.txt" not in os.listdir(out)


def test_command_line_exit_status(tmp_path):
    """The script run as a program: status 2 and one `error:` line, no traceback."""
    proc = subprocess.run(
        [sys.executable, "tokenizer/extract_vocab.py", "--train_file", str(tmp_path / "missing.txt"),
         "--vocab_size", "100", "--output_dir", str(tmp_path / "out")],
        cwd=REPO_ROOT, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 2
    assert "error: --train_file" in proc.stderr and "Traceback" not in proc.stderr
    assert_nothing_written(str(tmp_path / "out"))


def test_corpus_without_the_target_script_is_refused(tmp_path, capsys, sp_base_dir, english_lines):
    """Finding 9: an English-only corpus (or a binary file of NUL bytes) for --language fa trained an add-on of
    English pieces; now one clear error before anything is written."""
    out = str(tmp_path / "out")
    common = ["--vocab_size", "300", "--base_tokenizer", sp_base_dir, "--output_dir", out]
    english = write_lines(str(tmp_path / "en.txt"), english_lines[:500])
    expect_usage_error(extract_vocab.main, ["--train_file", english, *common], capsys, "en.txt",
                       "no Arabic-script letter", "--language")
    nul = tmp_path / "nul.txt"
    nul.write_bytes(b"\x00" * 4096 + b"\n")
    expect_usage_error(extract_vocab.main, ["--train_file", str(nul), *common], capsys, "nul.txt", "NUL bytes")
    assert_nothing_written(out)
    # The same English text is a fine corpus for an English vocabulary.
    extract_vocab.main(["--train_file", english, "--language", "en", *common, "--vocab_size", "600"])
    assert os.path.isfile(os.path.join(out, "extract_report.json"))
