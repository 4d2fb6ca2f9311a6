"""Merging an add-on vocabulary into a base tokenizer (``tokenizer/merge.py``).

Invariants, on both paths: every base id and piece is unchanged; new ids come after every base id, added and
special tokens included; text with no character of the target scripts segments exactly as before.

SentencePiece path (:func:`merge_sentencepiece`). In SentencePiece BPE a piece's score *is* its merge priority
(the encoder repeatedly merges the adjacent pair whose concatenation has the highest score), and transformers 5
builds the fast tokenizer's merges in piece-id order. So the appended pieces get scores below the lowest base
merge score, decreasing in add-on order: both encoders then rank every base merge before every new one and the
new ones in the same order, and they agree. Measured with the real Llama-2 tokenizer (issue 2): copying the
add-on's scores (the seed paper's merge) changed the segmentation of 10 of 200 English documents; appending with
score 0 made HF and sentencepiece disagree on 81 of 300 Persian sentences; this scheme gave 0 and 0. The lowest
merge score ignores whitespace-only pieces (Llama-2 scores ``▁▁``, ``▁▁▁▁``, ... -1e9; its lowest real merge is
about -31,740), because scores placed below -1e9 would collide in float32 (spacing 64 there).

Byte-level BPE path (:func:`merge_byte_level_bpe`): the add-on's merges are appended after the base merges, in
add-on order, keeping a merge only when both halves exist (in the base or added just before), so every base merge
keeps its rank; new tokens (byte-level form) get ids after the last base id.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import struct
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field

from langadapt.errors import InputError
from langadapt.io import write_json
from langadapt.vocab import (
    HF_JSON_FILE,
    SP_MODEL_FILE,
    SP_SPACE,
    Kind,
    byte_level_to_bytes,
    bytes_in_scripts,
    check_byte_level_bpe,
    load_sp_proto,
    text_in_scripts,
)

logger = logging.getLogger(__name__)

METADATA_FILE = "langadapt_tokenizer.json"
# Tokenizer files (not model weights) copied from the base folder next to the merged tokenizer.
HF_SIDE_FILES = ("tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "chat_template.json")
# SentencePiece piece types (sentencepiece_model.proto).
SP_NORMAL, SP_UNKNOWN, SP_CONTROL, SP_USER_DEFINED, SP_UNUSED, SP_BYTE = 1, 2, 3, 4, 5, 6
# Scores at or below this are "never merge" markers (Llama-2's whitespace runs carry -1e9), not merge priorities.
SP_NEVER_MERGE = -1e8
SP_BPE = 2


@dataclass
class MergeResult:
    """What a merge did: sizes, new ids and why candidates were dropped (reason -> count)."""

    kind: Kind
    base_vocab_size: int
    vocab_size: int
    new_token_ids: tuple[int, int]
    new_pieces: list[str]
    candidates: int
    dropped: dict[str, int] = field(default_factory=dict)
    details: dict = field(default_factory=dict)

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("new_pieces")
        d["new_pieces"] = len(self.new_pieces)
        return d


def float32(x: float) -> float:
    """``x`` rounded to float32, as SentencePiece stores scores."""
    return struct.unpack("f", struct.pack("f", x))[0]


def sp_merge_floor(proto) -> float:
    """Lowest score of a real merge in a SentencePiece model: normal pieces that are not whitespace runs and do
    not carry a never-merge score."""
    scores = [
        p.score for p in proto.pieces
        if p.type == SP_NORMAL and p.piece.strip(SP_SPACE) and p.score > SP_NEVER_MERGE
    ]
    return min(scores) if scores else 0.0


def new_piece_scores(floor: float, n: int) -> list[float]:
    """Scores for ``n`` appended pieces: below ``floor``, strictly decreasing, distinct in float32."""
    start = float(math.floor(floor)) - 1.0  # whole numbers: exact in float32 down to -2**24
    scores = [float32(start - i) for i in range(n)]
    if any(a <= b for a, b in zip(scores, scores[1:])) or (scores and scores[0] >= floor):
        raise InputError(f"cannot place {n} new scores below {floor} distinctly in float32; lower --max_new_pieces")
    if scores and scores[-1] <= SP_NEVER_MERGE:
        raise InputError(f"{n} new scores below {floor} reach the never-merge range; lower --max_new_pieces")
    return scores


def _hf_len(directory: str) -> int:
    from transformers import AutoTokenizer

    try:
        return len(AutoTokenizer.from_pretrained(directory))
    except Exception as e:  # transformers raises many types for an unloadable folder
        raise InputError(f"--base_tokenizer: AutoTokenizer cannot load {directory} ({type(e).__name__}: {e})",
                         arg="base_tokenizer", value=directory) from None


def _copy_side_files(base_dir: str, dst: str) -> None:
    for name in HF_SIDE_FILES:
        src = os.path.join(base_dir, name)
        if os.path.isfile(src):
            shutil.copy(src, os.path.join(dst, name))


def reachable_pieces(candidates: list[str], existing: set[str]) -> list[str]:
    """The candidates SentencePiece BPE can produce: single characters, and pieces with a split into two pieces
    that are in ``existing`` or themselves reachable (computed to a fixed point). Order is kept."""
    have = set(existing)
    reachable: set[str] = set()
    pending = list(candidates)
    while True:
        rest = []
        for piece in pending:
            if len(piece) == 1 or any(piece[:i] in have and piece[i:] in have for i in range(1, len(piece))):
                reachable.add(piece)
                have.add(piece)
            else:
                rest.append(piece)
        if len(rest) == len(pending):
            break
        pending = rest
    return [p for p in candidates if p in reachable]


def merge_sentencepiece(base_dir: str, extra_path: str, output_dir: str, scripts: tuple[str, ...],
                        max_new_pieces: int | None = None) -> MergeResult:
    """Append the add-on's pieces to a SentencePiece base; write ``tokenizer.model`` and the HF files."""
    from sentencepiece import sentencepiece_model_pb2 as sp_pb2
    from transformers import AutoTokenizer

    base_model = os.path.join(base_dir, SP_MODEL_FILE)
    proto = load_sp_proto(base_model, "base_tokenizer")
    extra = load_sp_proto(extra_path, "extra_model")
    if proto.trainer_spec.model_type != SP_BPE:
        raise InputError(f"--base_tokenizer: {base_model} is a SentencePiece {proto.trainer_spec.model_type} "
                         "(not BPE) model; only SentencePiece BPE bases (Llama-2, Mistral, Gemma) are supported",
                         arg="base_tokenizer", value=base_model)
    base_len = _hf_len(base_dir)
    n_sp = len(proto.pieces)
    # HF tokens beyond the SentencePiece model (e.g. a <pad> added at id 32000) are written into the model as
    # user-defined pieces with the same ids, so appended pieces cannot take their ids.
    if base_len > n_sp:
        base_hf = AutoTokenizer.from_pretrained(base_dir)
        for i in range(n_sp, base_len):
            proto.pieces.append(sp_pb2.ModelProto.SentencePiece(
                piece=base_hf.convert_ids_to_tokens(i) or f"<reserved_{i}>", score=0.0, type=SP_USER_DEFINED))
    existing = {p.piece for p in proto.pieces}
    floor = sp_merge_floor(proto)

    dropped: Counter = Counter()
    candidates: list[str] = []
    for p in extra.pieces:
        if p.type != SP_NORMAL:
            dropped["special_or_byte"] += 1
        elif p.piece in existing:
            dropped["in_base"] += 1
        elif not text_in_scripts(p.piece, scripts):
            dropped["other_script"] += 1
        else:
            candidates.append(p.piece)
    # SentencePiece BPE stores its single characters after all merged pieces; they go first here so that
    # --max_new_pieces never keeps a piece whose characters it cut (their scores play no part in merging).
    candidates.sort(key=lambda piece: len(piece) > 1)
    if max_new_pieces is not None and len(candidates) > max_new_pieces:
        dropped["max_new_pieces"] += len(candidates) - max_new_pieces
        candidates = candidates[:max_new_pieces]
    kept = reachable_pieces(candidates, existing)
    if len(kept) < len(candidates):
        # No split into two present pieces: BPE can never produce it (a unigram add-on has many of these).
        dropped["unreachable"] += len(candidates) - len(kept)
    if not kept:
        raise InputError(f"--extra_model: {extra_path} adds no piece to the base (dropped: {dict(dropped)}); train "
                         "it on target-language text, or check --scripts", arg="extra_model", value=extra_path)
    scores = new_piece_scores(floor, len(kept))
    first = len(proto.pieces)
    for piece, score in zip(kept, scores):
        proto.pieces.append(sp_pb2.ModelProto.SentencePiece(piece=piece, score=score, type=SP_NORMAL))
    proto.trainer_spec.vocab_size = len(proto.pieces)

    out_model = os.path.join(output_dir, SP_MODEL_FILE)
    # The HF side: the base's own tokenizer.json (its pipeline and merge ranks exactly as the base model was
    # used with), extended with the new pieces and their merges. Re-converting the merged tokenizer.model instead
    # would re-rank every base merge by piece id, which differs from the base's tokenizer.json where a base ranks
    # merges by score (Llama-2's whitespace runs).
    spec = _base_hf_spec(base_dir)
    vocab = spec["model"]["vocab"]
    sp_score = {p.piece: p.score for p in proto.pieces}
    for i, p in enumerate(proto.pieces[:first]):
        if p.type in (SP_NORMAL, SP_BYTE) and vocab.get(p.piece) != i:
            raise InputError(f"--base_tokenizer: {base_dir}: tokenizer.json gives {p.piece!r} id "
                             f"{vocab.get(p.piece)}, tokenizer.model id {i}; the two files are not the same tokenizer",
                             arg="base_tokenizer", value=base_dir)
    for k, piece in enumerate(kept):
        vocab[piece] = first + k
    new_merges = []
    for piece in kept:  # every split into two vocabulary pieces, as transformers' converter generates them
        splits = [(piece[:i], piece[i:]) for i in range(1, len(piece)) if piece[:i] in vocab and piece[i:] in vocab]
        new_merges.extend(sorted(splits, key=lambda lr: (vocab[lr[0]], vocab[lr[1]])))
    base_merges = _pairs(spec["model"]["merges"])
    # New merges go after every real base merge but before a trailing run of never-merge merges (whitespace
    # runs scored -1e9), matching sentencepiece, which ranks the new scores above -1e9. Relative order of the
    # base merges is untouched, so base text segments as before.
    at = len(base_merges)
    while at > 0 and sp_score.get("".join(base_merges[at - 1]), 0.0) <= SP_NEVER_MERGE:
        at -= 1
    cross = _cross_merges(base_merges, vocab, set(kept), sp_score)
    # Sort keys: base merge k at k; a cross merge just before its slot (slot - 0.5); the new pieces' merges after
    # the last real base merge and before the never-merge tail (at - 0.25).
    keyed = [(float(k), 0, m) for k, m in enumerate(base_merges)]
    keyed += [(slot - 0.5, 1, m) for slot, m in cross]
    keyed += [(at - 0.25, 2, m) for m in new_merges]
    merges = [m for _, _, m in sorted(keyed, key=lambda x: (x[0], x[1]))]
    spec["model"]["merges"] = _format_merges(merges, spec["model"]["merges"])
    with open(out_model, "wb") as f:
        f.write(proto.SerializeToString())
    hf = _save_hf(spec, base_dir, output_dir)
    with open(out_model, "wb") as f:  # save_pretrained must not leave a different tokenizer.model behind
        f.write(proto.SerializeToString())
    if len(hf) != len(proto.pieces):
        raise RuntimeError(f"merged HF tokenizer has {len(hf)} tokens, the SentencePiece model {len(proto.pieces)}")
    return MergeResult(
        kind="sentencepiece", base_vocab_size=base_len, vocab_size=len(hf), new_token_ids=(first, len(hf)),
        new_pieces=kept, candidates=len(extra.pieces), dropped=dict(dropped),
        details={"base_merge_score_floor": floor, "new_scores": [scores[0], scores[-1]],
                 "new_merges": len(new_merges), "new_merges_rank": at, "cross_merges": len(cross),
                 "addon_model_type": {1: "unigram", 2: "bpe"}.get(extra.trainer_spec.model_type, "other")},
    )


def _cross_merges(base_merges: list[tuple[str, str]], vocab: dict[str, int], new: set[str],
                  sp_score: dict[str, float]) -> list[tuple[int, tuple[str, str]]]:
    """Merges into a *base* piece from a split with a new half (base ``▁کتاب`` from new ``▁کت`` + base ``اب``).

    sentencepiece performs them at the base piece's own (high) priority as soon as the new half appears, and
    transformers' converter lists every split of a piece at that piece's rank, so the HF merges need them too.
    Each is returned with the slot it goes before: just after the last base merge producing the same piece, or,
    when the base never produced that piece, before the first base merge whose piece scores lower.
    """
    last_for: dict[str, int] = {}
    for k, (a, b) in enumerate(base_merges):
        last_for[a + b] = k
    by_score = [sp_score.get(a + b, 0.0) for a, b in base_merges]
    first_id = min((vocab[p] for p in new), default=len(vocab))
    out = []
    for piece, i in vocab.items():
        if i >= first_id or len(piece) < 2:
            continue
        for j in range(1, len(piece)):
            left, right = piece[:j], piece[j:]
            if (left in new or right in new) and left in vocab and right in vocab:
                if piece in last_for:
                    slot = last_for[piece] + 1
                else:
                    score = sp_score.get(piece, 0.0)
                    slot = next((k for k, s in enumerate(by_score) if s < score), len(base_merges))
                out.append((slot, (left, right)))
    return out


def _base_hf_spec(base_dir: str) -> dict:
    """The base's ``tokenizer.json`` (converted from ``tokenizer.model`` by transformers when the folder has
    none), with added tokens pinned into the model vocabulary."""
    from transformers import AutoTokenizer

    path = os.path.join(base_dir, HF_JSON_FILE)
    if not os.path.isfile(path):
        with tempfile.TemporaryDirectory() as tmp:
            AutoTokenizer.from_pretrained(base_dir).save_pretrained(tmp)
            path = os.path.join(tmp, HF_JSON_FILE)
            with open(path, encoding="utf-8") as f:
                spec = json.load(f)
    else:
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
    if spec["model"].get("type") != "BPE":
        raise InputError(f"--base_tokenizer: {base_dir}: the HF tokenizer is {spec['model'].get('type')}, not BPE; "
                         "only BPE SentencePiece bases are supported", arg="base_tokenizer", value=base_dir)
    _pin_added_tokens(spec)
    return spec


def _pin_added_tokens(spec: dict) -> None:
    """Put added tokens that sit beyond the model vocabulary (a <pad> appended at the end) into it, at their ids.

    The tokenizers library re-numbers an added token whose text is not in the model vocabulary to the model's
    vocabulary *size*, so once new tokens are appended it would collide with them; pinned, it keeps its id (added
    tokens are matched before the model runs, so this changes no segmentation).
    """
    vocab = spec["model"]["vocab"]
    for t in spec.get("added_tokens", []):
        vocab.setdefault(t["content"], t["id"])
    ids = sorted(vocab.values())
    if ids != list(range(len(ids))):
        raise InputError("--base_tokenizer: the tokenizer's ids have gaps (ids without a token); fill them "
                         "(e.g. with reserved special tokens) before merging", arg="base_tokenizer")


def _format_merges(pairs: list[tuple[str, str]], like: list) -> list:
    """Merges in the storage format of ``like``: ``["a", "b"]`` lists, or ``"a b"`` strings in older files."""
    as_strings = bool(like) and isinstance(like[0], str)
    return [f"{a} {b}" if as_strings else [a, b] for a, b in pairs]


def _save_hf(spec: dict, base_dir: str, output_dir: str):
    """Write ``spec`` with the base's tokenizer_config/special-token/chat-template files, load it with
    AutoTokenizer (which must work) and ``save_pretrained`` into ``output_dir``; the loaded tokenizer."""
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, HF_JSON_FILE), "w", encoding="utf-8") as f:
            json.dump(spec, f, ensure_ascii=False)
        _copy_side_files(base_dir, tmp)
        hf = AutoTokenizer.from_pretrained(tmp)
        hf.save_pretrained(output_dir)
    return hf


def _pairs(merges: list) -> list[tuple[str, str]]:
    """Merges as pairs, whether stored as ``["a", "b"]`` (tokenizers >= 0.20) or ``"a b"`` (older files)."""
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in merges]


def merge_byte_level_bpe(base_dir: str, extra_path: str, output_dir: str, scripts: tuple[str, ...],
                         max_new_pieces: int | None = None) -> MergeResult:
    """Append the add-on's merges and tokens to a byte-level BPE ``tokenizer.json``; write the HF folder."""
    base_path = os.path.join(base_dir, HF_JSON_FILE)
    with open(base_path, encoding="utf-8") as f:
        spec = json.load(f)
    check_byte_level_bpe(spec, base_path, "base_tokenizer")
    with open(extra_path, encoding="utf-8") as f:
        extra = json.load(f)
    base_len = _hf_len(base_dir)
    model = spec["model"]
    vocab: dict[str, int] = model["vocab"]
    _pin_added_tokens(spec)
    next_id = max(len(vocab), base_len)
    base_pairs = set(_pairs(model["merges"]))

    dropped: Counter = Counter()
    new_tokens: list[str] = []
    new_merges: list[tuple[str, str]] = []
    first = next_id
    extra_merges = _pairs(extra["model"]["merges"])
    for a, b in extra_merges:
        token = a + b
        data = byte_level_to_bytes(token)
        if (a, b) in base_pairs:
            dropped["in_base"] += 1
        elif data is None or not bytes_in_scripts(data, scripts):
            dropped["other_script"] += 1
        elif a not in vocab or b not in vocab:
            dropped["missing_half"] += 1
        elif token not in vocab and max_new_pieces is not None and len(new_tokens) >= max_new_pieces:
            dropped["max_new_pieces"] += 1
        else:
            # A merge whose result the base already has (reached another way) is kept: it lets Persian text reach
            # that token; it cannot touch text without target-script bytes.
            new_merges.append((a, b))
            if token not in vocab:
                vocab[token] = next_id
                new_tokens.append(token)
                next_id += 1
    if not new_tokens:
        raise InputError(f"--extra_model: {extra_path} adds no token to the base (dropped: {dict(dropped)}); train "
                         "it on target-language text, or check --scripts", arg="extra_model", value=extra_path)
    model["merges"] = model["merges"] + _format_merges(new_merges, model["merges"])
    hf = _save_hf(spec, base_dir, output_dir)
    if len(hf) != next_id:
        raise RuntimeError(f"merged tokenizer has {len(hf)} tokens, expected {next_id}")
    return MergeResult(
        kind="byte_level_bpe", base_vocab_size=base_len, vocab_size=len(hf), new_token_ids=(first, next_id),
        new_pieces=new_tokens, candidates=len(extra_merges), dropped=dict(dropped),
        details={"new_merges": len(new_merges), "base_merges": len(base_pairs)},
    )


def write_metadata(output_dir: str, base_tokenizer: str, result: MergeResult) -> None:
    """``langadapt_tokenizer.json``, the metadata later stages read (fields: README, "Tokenizer stage")."""
    write_json(os.path.join(output_dir, METADATA_FILE), {
        "base_tokenizer": os.path.abspath(base_tokenizer),
        "base_vocab_size": result.base_vocab_size,
        "vocab_size": result.vocab_size,
        "new_token_ids": list(result.new_token_ids),
        "kind": result.kind,
    })


def merge_sentencepiece_seed(base_dir: str, extra_path: str, output_dir: str) -> MergeResult:
    """The seed paper's merge, kept as the baseline of ``bench/tokenizer.py`` (not used by ``merge.py``).

    As Chinese-LLaMA's ``merge_tokenizers.py``, followed by the Persian paper: every add-on piece the base lacks
    is appended with the add-on's own score (no script filter, no reachability check), and the HF tokenizer is
    whatever transformers converts from the merged ``tokenizer.model``.
    """
    from sentencepiece import sentencepiece_model_pb2 as sp_pb2
    from transformers import AutoTokenizer

    proto = load_sp_proto(os.path.join(base_dir, SP_MODEL_FILE), "base_tokenizer")
    extra = load_sp_proto(extra_path, "extra_model")
    first = len(proto.pieces)
    existing = {p.piece for p in proto.pieces}
    added = []
    for p in extra.pieces:
        if p.piece not in existing:
            proto.pieces.append(sp_pb2.ModelProto.SentencePiece(piece=p.piece, score=p.score, type=SP_NORMAL))
            existing.add(p.piece)
            added.append(p.piece)
    out_model = os.path.join(output_dir, SP_MODEL_FILE)
    with open(out_model, "wb") as f:
        f.write(proto.SerializeToString())
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(out_model, tmp)
        with open(os.path.join(tmp, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump({"tokenizer_class": "LlamaTokenizer", "legacy": False}, f)
        hf = AutoTokenizer.from_pretrained(tmp)
        hf.save_pretrained(output_dir)
    with open(out_model, "wb") as f:
        f.write(proto.SerializeToString())
    return MergeResult(kind="sentencepiece", base_vocab_size=first, vocab_size=len(hf), new_token_ids=(first, len(hf)),
                       new_pieces=added, candidates=len(extra.pieces))
