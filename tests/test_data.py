"""Raw text -> blocks: normalization, EOS, packing, validation split, cache keys, mixing, streaming, bad input."""

import json
import os
import shutil
from collections import Counter
from types import SimpleNamespace

import pytest
from transformers import AutoTokenizer

from _pretrain_helpers import write_corpus
from langadapt.args import PretrainDataArguments
from langadapt.cli import UsageError
from langadapt.data import (
    PackedStream,
    collate_blocks,
    load_pretrain_data,
    mix_indices,
    pack_ids,
    parse_dataset_dirs,
    resolve_block_size,
)
from langadapt.normalize import NormalizerConfig


@pytest.fixture(scope="module")
def tok(bpe_base_dir):
    return AutoTokenizer.from_pretrained(bpe_base_dir)


def data_args(dataset_dir, **kw):
    return PretrainDataArguments(dataset_dir=dataset_dir, **kw)


def load(args, tok, tok_dir, block_size=16, normalizer=None):
    return load_pretrain_data(args, tok, normalizer or NormalizerConfig(), block_size, tokenizer_dir=tok_dir)


def test_documents_are_normalized_and_separated_by_eos(tmp_path, tok, bpe_base_dir):
    # Arabic yeh/kaf and a bidi mark: the normalizer turns them into the Persian forms before tokenizing.
    docs = ["كتاب علي\u200f", "hello world", "یک دو سه"]
    d = write_corpus(str(tmp_path / "c"), docs)
    train, _, report = load(data_args(d, validation_split_percentage=0), tok, bpe_base_dir, block_size=4)
    flat = [i for block in train[:]["input_ids"].tolist() for i in block]
    expected = []
    for doc in ["کتاب علی", "hello world", "یک دو سه"]:
        expected += tok(doc, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    n = len(expected) // 4 * 4
    assert sorted(map(tuple, train[:]["input_ids"].tolist())) == sorted(
        tuple(expected[i:i + 4]) for i in range(0, n, 4))
    assert flat.count(tok.eos_token_id) == expected[:n].count(tok.eos_token_id) >= 2
    assert report.train_blocks == n // 4


def test_pack_ids_concatenates_and_drops_only_the_tail():
    blocks = list(pack_ids(iter([[1, 2, 3], [4], [5, 6, 7, 8, 9]]), 4))
    assert blocks == [[1, 2, 3, 4], [5, 6, 7, 8]]


def test_jsonl_text_field(tmp_path, tok, bpe_base_dir):
    os.makedirs(tmp_path / "j")
    (tmp_path / "j" / "a.jsonl").write_text(
        "\n".join(json.dumps({"body": f"سطر شماره {i} از متن"}, ensure_ascii=False) for i in range(40))
        + "\n",
        encoding="utf-8")
    train, val, _ = load(data_args(str(tmp_path / "j"), text_field="body", validation_split_percentage=10), tok,
                         bpe_base_dir)
    assert len(train) > 10 and len(val) >= 1


def test_validation_split_is_deterministic_and_disjoint(tmp_path, tok, bpe_base_dir, persian_lines):
    # Numbered lines, so no two blocks are equal by accident (Hafez repeats some verses).
    d = write_corpus(str(tmp_path / "c"), [f"{i} {x}" for i, x in enumerate(persian_lines[:400])])
    a_train, a_val, _ = load(data_args(d, validation_split_percentage=10), tok, bpe_base_dir)
    b_train, b_val, _ = load(data_args(d, validation_split_percentage=10), tok, bpe_base_dir)
    assert a_val[:]["input_ids"].tolist() == b_val[:]["input_ids"].tolist()
    assert len(a_val) == int((len(a_train) + len(a_val)) * 0.1)
    train_set = {tuple(x) for x in a_train[:]["input_ids"].tolist()}
    assert not any(tuple(x) in train_set for x in a_val[:]["input_ids"].tolist())


def test_cache_is_reused_and_invalidated_by_tokenizer_and_file_changes(tmp_path, tok, bpe_base_dir, persian_lines):
    d = write_corpus(str(tmp_path / "c"), persian_lines, n=300)
    cache = str(tmp_path / "cache")
    args = data_args(d, data_cache_dir=cache)
    _, _, r1 = load(args, tok, bpe_base_dir)
    assert r1.sources[0]["cache_hit"] is False
    _, _, r2 = load(args, tok, bpe_base_dir)
    assert r2.sources[0]["cache_hit"] is True and r2.sources[0]["cache_path"] == r1.sources[0]["cache_path"]
    # A changed tokenizer file (same folder name) must not reuse the cache.
    tok_copy = str(tmp_path / "tok")
    shutil.copytree(bpe_base_dir, tok_copy)
    tok2 = AutoTokenizer.from_pretrained(tok_copy)
    tok2.add_tokens([" دل"])
    tok2.save_pretrained(tok_copy)
    _, _, r3 = load(args, tok2, tok_copy)
    assert r3.sources[0]["cache_hit"] is False and r3.sources[0]["cache_path"] != r1.sources[0]["cache_path"]
    # A changed data file, same name: new key.
    with open(os.path.join(d, "part.txt"), "a", encoding="utf-8") as f:
        f.write("یک سطر تازه\n")
    _, _, r4 = load(args, tok, bpe_base_dir)
    assert r4.sources[0]["cache_hit"] is False and r4.sources[0]["cache_path"] != r1.sources[0]["cache_path"]
    # Another block size: new key.
    _, _, r5 = load(args, tok, bpe_base_dir, block_size=8)
    assert r5.sources[0]["cache_hit"] is False
    assert not [n for n in os.listdir(cache) if n.startswith(".")]  # no leftover work folders


def test_parse_dataset_dirs_weights(tmp_path):
    a = write_corpus(str(tmp_path / "a"), ["x y z"])
    b = write_corpus(str(tmp_path / "b"), ["x y z"])
    sources = parse_dataset_dirs(f"{a}:0.8,{b}:0.2")
    assert [s.weight for s in sources] == pytest.approx([0.8, 0.2])
    assert [s.weight for s in parse_dataset_dirs(f"{a},{b}")] == [0.5, 0.5]
    assert [s.weight for s in parse_dataset_dirs(f"{a}:3,{b}:1")] == [0.75, 0.25]
    with pytest.raises(UsageError, match="must be > 0"):
        parse_dataset_dirs(f"{a}:0")


def test_mix_indices_respect_weights_within_sampling_tolerance():
    draws = mix_indices([100, 5000], [0.8, 0.2], total=20000, seed=3)
    share = Counter(s for s, _ in draws)[0] / len(draws)
    # Binomial std for n=20000, p=0.8 is 0.0028; 4 sigma.
    assert abs(share - 0.8) < 0.012
    # The small source is cycled through whole permutations before repeating a block.
    first = [i for s, i in draws if s == 0][:100]
    assert sorted(first) == list(range(100))


def test_mixed_sources_in_the_training_set(tmp_path, tok, bpe_base_dir, persian_lines, english_lines):
    fa = write_corpus(str(tmp_path / "fa"), persian_lines, n=1500)
    en = write_corpus(str(tmp_path / "en"), english_lines, n=1500)
    train, val, report = load(data_args(f"{fa}:0.8,{en}:0.2", validation_split_percentage=2), tok, bpe_base_dir,
                              block_size=32)
    shares = [s["drawn_share"] for s in report.sources]
    n = len(train)
    tol = 4 * (0.8 * 0.2 / n) ** 0.5
    assert abs(shares[0] - 0.8) < tol and abs(shares[1] - 0.2) < tol
    # Check the content too: a block is Persian when most of its decoded characters are Arabic-script.
    fa_blocks = sum(sum("\u0600" <= c <= "\u06ff" for c in tok.decode(x)) > 10 for x in train[:400]["input_ids"])
    assert abs(fa_blocks / 400 - 0.8) < 4 * (0.16 / 400) ** 0.5
    assert len(val) == report.eval_blocks and report.eval_blocks >= 2


def test_streaming_packs_on_the_fly_and_mixes(tmp_path, tok, persian_lines, english_lines):
    fa = write_corpus(str(tmp_path / "fa"), persian_lines, n=200)
    en = write_corpus(str(tmp_path / "en"), english_lines, n=200)
    sources = parse_dataset_dirs(f"{fa}:0.7,{en}:0.3")
    stream = PackedStream(sources, tok, NormalizerConfig(), block_size=16, seed=1)
    blocks = []
    for i, b in enumerate(stream):  # cycles past the end of the small corpora
        blocks.append(b)
        if i == 3000:
            break
    assert all(b["input_ids"].shape == (16,) for b in blocks)
    fa_share = sum(sum("\u0600" <= c <= "\u06ff" for c in tok.decode(b["input_ids"])) > 4 for b in blocks) / 3001
    assert abs(fa_share - 0.7) < 0.04
    # Same seed, same stream (resume replays the stream to the same place).
    again = iter(PackedStream(sources, tok, NormalizerConfig(), block_size=16, seed=1))
    assert all(next(again)["input_ids"].tolist() == b["input_ids"].tolist() for b in blocks[:50])


def test_streaming_holds_out_the_first_blocks(tmp_path, tok, bpe_base_dir, persian_lines):
    d = write_corpus(str(tmp_path / "c"), persian_lines, n=200)
    train, val, report = load(data_args(d, streaming=True, max_eval_blocks=5), tok, bpe_base_dir)
    assert report.streaming and len(val) == 5
    first = next(iter(train))["input_ids"].tolist()
    held = val[:]["input_ids"].tolist()
    stream = PackedStream(parse_dataset_dirs(d), tok, NormalizerConfig(), 16)
    assert [next(iter_) for iter_ in [iter(stream.source_blocks(stream.sources[0], cycle=False))]][0] == held[0]
    assert first not in held


def test_collate_keeps_eos_as_a_target():
    batch = collate_blocks([{"input_ids": [1, 0, 2]}, {"input_ids": [0, 0, 3]}])
    assert batch["labels"].tolist() == [[1, 0, 2], [0, 0, 3]]


def test_block_size_is_checked_against_the_context():
    cfg = SimpleNamespace(max_position_embeddings=512)
    assert resolve_block_size(None, cfg) == 512
    assert resolve_block_size(128, cfg) == 128
    with pytest.raises(UsageError, match="--block_size 1024 is above the model's context of 512"):
        resolve_block_size(1024, cfg)


@pytest.mark.parametrize("case", ["missing", "empty_dir", "no_text_files", "empty_file", "bad_utf8", "bad_json",
                                  "blank_only", "too_short"])
def test_bad_data_input_names_the_problem(case, tmp_path, tok, bpe_base_dir):
    d = tmp_path / "d"
    d.mkdir()
    expect = {"missing": "does not exist", "empty_dir": "holds no", "no_text_files": "holds no",
              "empty_file": "is empty", "bad_utf8": "not valid UTF-8", "bad_json": "not valid JSON",
              "blank_only": "no non-blank document", "too_short": "fewer than --block_size"}[case]
    path = str(d)
    if case == "missing":
        path = str(tmp_path / "nope")
    elif case == "no_text_files":
        (d / "data.csv").write_text("a,b\n")
    elif case == "empty_file":
        (d / "a.txt").write_text("")
    elif case == "bad_utf8":
        (d / "a.txt").write_bytes("سلام\n".encode() + b"\xff\xfe bad\n")
    elif case == "bad_json":
        (d / "a.jsonl").write_text('{"text": "ok"}\n{text: broken}\n')
    elif case == "blank_only":
        (d / "a.txt").write_text("\n   \n\n")
    elif case == "too_short":
        (d / "a.txt").write_text("hi\n")
    with pytest.raises(UsageError, match=expect) as e:
        load(data_args(path), tok, bpe_base_dir, block_size=64)
    if case in ("bad_utf8", "bad_json"):
        assert ":2:" in str(e.value)  # file and line


@pytest.mark.parametrize("kind", ["bpe", "sp"])
def test_fast_encoding_matches_the_tokenizer_call(kind, request, persian_lines, english_lines):
    from langadapt.data import encode_texts

    t = AutoTokenizer.from_pretrained(request.getfixturevalue(f"{kind}_base_dir"))
    t.add_tokens([" دل"])
    texts = persian_lines[:300] + english_lines[:300] + ["  two leading spaces", " دل و جان", "a\u200cb", ""]
    assert encode_texts(t, texts) == t(texts, add_special_tokens=False)["input_ids"]


def test_worker_processes_give_the_same_blocks(tmp_path, tok, bpe_base_dir, persian_lines):
    d = write_corpus(str(tmp_path / "c"), persian_lines, n=2500)
    one, _, _ = load(data_args(d, validation_split_percentage=0), tok, bpe_base_dir)
    two, _, _ = load(data_args(d, validation_split_percentage=0, preprocessing_num_workers=2), tok, bpe_base_dir)
    assert one[:]["input_ids"].tolist() == two[:]["input_ids"].tolist()
