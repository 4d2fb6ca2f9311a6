"""Vocabulary extension, shared part: what kind of tokenizer a folder holds, which new pieces a script allows,
and training the add-on vocabulary (``tokenizer/extract_vocab.py``).

Two kinds of base tokenizer are supported, named as in ``langadapt_tokenizer.json``:

* ``"sentencepiece"``: the folder holds ``tokenizer.model`` (Llama-2, Mistral, Gemma style; SentencePiece BPE).
  The add-on is trained with SentencePiece using the base's own trainer and normalizer settings
  (:func:`sp_trainer_settings`), so that every piece it learns can be formed inside the base: same byte fallback,
  digit splitting, dummy prefix, script splitting, whitespace handling.
* ``"byte_level_bpe"``: the folder holds only ``tokenizer.json`` with a BPE model and a ByteLevel pre-tokenizer or
  decoder (Llama-3, Qwen, SmolLM2, GPT-2 style). The add-on is trained with the ``tokenizers`` library on a copy of
  the base pipeline (same normalizer and pre-tokenizer, empty BPE model), so it produces merges over the same
  byte-level pre-tokens the base produces.

Anything else (WordPiece, Unigram ``tokenizer.json``, a folder with no tokenizer) is a :class:`InputError`.

Merging lives in :mod:`langadapt.vocab_merge`, the audit in :mod:`langadapt.vocab_report`.
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from langadapt.errors import InputError
from langadapt.io import iter_corpus, resolve_files
from langadapt.normalize import NormalizerConfig, normalize
from langadapt.scripts import SCRIPT_BLOCKS, script_chars

logger = logging.getLogger(__name__)

Kind = Literal["sentencepiece", "byte_level_bpe"]
SP_MODEL_FILE = "tokenizer.model"
HF_JSON_FILE = "tokenizer.json"
# Names of the add-on files written by extract_vocab.py (one of the two, by kind).
EXTRA_SP_FILE = "extra.model"
EXTRA_BPE_FILE = "extra_tokenizer.json"
EXTRACT_REPORT_FILE = "extract_report.json"
# SentencePiece's word-boundary marker (U+2581), the same in every SentencePiece model.
SP_SPACE = "\u2581"
# SentencePiece skips sentences longer than this many bytes (its default is 4192); documents from .jsonl files
# are split at newlines first, and a paragraph longer than 64 KiB is rare enough to be worth a warning from SP.
SP_MAX_SENTENCE_BYTES = 65536


# --------------------------------------------------------------------------------------------------------------
# Which tokenizer does a folder hold?
# --------------------------------------------------------------------------------------------------------------


def detect_kind(directory: str, arg: str = "base_tokenizer") -> Kind:
    """Kind of the tokenizer in ``directory``; :class:`InputError` for a missing folder/tokenizer or another type."""
    if not os.path.isdir(directory):
        raise InputError(f"--{arg}: {directory} is not a folder; pass the base model's tokenizer folder",
                         arg=arg, value=directory)
    path = os.path.join(directory, HF_JSON_FILE)
    if os.path.isfile(os.path.join(directory, SP_MODEL_FILE)):
        try:
            load_sp_proto(os.path.join(directory, SP_MODEL_FILE), arg)  # fails early on a corrupt file
            return "sentencepiece"
        except InputError:
            # Llama-3 style folders may ship a tiktoken file under the same name next to their tokenizer.json.
            if not os.path.isfile(path):
                raise
    if not os.path.isfile(path):
        raise InputError(
            f"--{arg}: {directory} holds no tokenizer (neither {SP_MODEL_FILE} nor {HF_JSON_FILE}); pass the folder "
            "of the base model's tokenizer (the one AutoTokenizer.from_pretrained loads)", arg=arg, value=directory,
        )
    spec = _read_tokenizer_json(path, arg)
    check_byte_level_bpe(spec, path, arg)
    return "byte_level_bpe"


def _read_tokenizer_json(path: str, arg: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"--{arg}: {path} is not a valid tokenizer.json ({e})", arg=arg, value=path) from None
    if not isinstance(spec, dict) or not isinstance(spec.get("model"), dict):
        raise InputError(f"--{arg}: {path} is not a tokenizers file (no 'model' object)", arg=arg, value=path)
    return spec


def _has_byte_level(component: dict | None) -> bool:
    if not component:
        return False
    if component.get("type") == "ByteLevel":
        return True
    return any(_has_byte_level(c) for c in component.get("pretokenizers", []) + component.get("decoders", []))


def check_byte_level_bpe(spec: dict, path: str, arg: str) -> None:
    """Refuse a ``tokenizer.json`` that is not byte-level BPE, naming what it is and what is supported."""
    model_type = spec["model"].get("type") or ("BPE" if "merges" in spec["model"] else "unknown")
    if model_type != "BPE":
        raise InputError(
            f"--{arg}: {path} is a {model_type} tokenizer; supported bases are SentencePiece ({SP_MODEL_FILE}, "
            "Llama-2/Mistral/Gemma style) and byte-level BPE (tokenizer.json, Llama-3/Qwen/SmolLM2 style)",
            arg=arg, value=path,
        )
    if not (_has_byte_level(spec.get("pre_tokenizer")) or _has_byte_level(spec.get("decoder"))):
        raise InputError(
            f"--{arg}: {path} is a BPE tokenizer without a ByteLevel pre-tokenizer/decoder; supported bases are "
            f"SentencePiece ({SP_MODEL_FILE}) and byte-level BPE tokenizer.json; for a converted SentencePiece "
            f"model pass the folder that holds its {SP_MODEL_FILE}", arg=arg, value=path,
        )


def load_sp_proto(path: str, arg: str):
    """Parse a SentencePiece ``ModelProto``; :class:`InputError` naming ``path`` when it is not one."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as sp_pb2

    with open(path, "rb") as f:
        data = f.read()
    proto = sp_pb2.ModelProto()
    try:
        proto.ParseFromString(data)
        if len(proto.pieces) == 0:
            raise ValueError("no pieces")
        spm.SentencePieceProcessor(model_proto=data)  # the C++ loader checks more than protobuf does
    except Exception:  # protobuf DecodeError, sentencepiece RuntimeError, ...: all mean "not a model"
        raise InputError(
            f"--{arg}: {path} is not a SentencePiece model; pass a tokenizer.model / extra.model written by "
            "SentencePiece (e.g. by tokenizer/extract_vocab.py)", arg=arg, value=path,
        ) from None
    return proto


def detect_extra_kind(path: str, arg: str = "extra_model") -> tuple[Kind, str]:
    """Kind and file of an add-on model: a SentencePiece ``.model`` or a tokenizers BPE ``.json``.

    ``path`` may also be the output folder of ``extract_vocab.py``.
    """
    if os.path.isdir(path):
        for name in (EXTRA_SP_FILE, EXTRA_BPE_FILE):
            if os.path.isfile(os.path.join(path, name)):
                path = os.path.join(path, name)
                break
        else:
            raise InputError(f"--{arg}: folder {path} holds neither {EXTRA_SP_FILE} nor {EXTRA_BPE_FILE}",
                             arg=arg, value=path)
    if not os.path.isfile(path):
        raise InputError(f"--{arg}: {path} does not exist; pass the add-on model written by extract_vocab.py",
                         arg=arg, value=path)
    with open(path, "rb") as f:
        head = f.read(64).lstrip()
    if head.startswith(b"{"):
        spec = _read_tokenizer_json(path, arg)
        if spec["model"].get("type") != "BPE" or not spec["model"].get("merges"):
            raise InputError(
                f"--{arg}: {path} is not a BPE tokenizer with merges; pass the extra_tokenizer.json written by "
                "extract_vocab.py for a byte-level BPE base", arg=arg, value=path,
            )
        return "byte_level_bpe", path
    load_sp_proto(path, arg)
    return "sentencepiece", path


# --------------------------------------------------------------------------------------------------------------
# Which new pieces are allowed: target script + word-boundary marker only.
# --------------------------------------------------------------------------------------------------------------

ANY_SCRIPT = "any"


def validate_scripts(scripts: Sequence[str], arg: str = "scripts") -> tuple[str, ...]:
    """Canonical script names; ``("any",)`` keeps every piece. Unknown names raise :class:`InputError`."""
    known = {name.lower(): name for name in SCRIPT_BLOCKS}
    out = []
    for s in scripts:
        if s.lower() == ANY_SCRIPT:
            if len(scripts) > 1:
                raise InputError(f"--{arg}: '{ANY_SCRIPT}' cannot be combined with script names",
                                 arg=arg, value=ANY_SCRIPT)
            return (ANY_SCRIPT,)
        if s.lower() not in known:
            raise InputError(f"--{arg}: unknown script {s!r}; choose from {sorted(SCRIPT_BLOCKS)} or '{ANY_SCRIPT}'",
                             arg=arg, value=s)
        out.append(known[s.lower()])
    if not out:
        raise InputError(f"--{arg}: give at least one script, e.g. Arabic for Persian", arg=arg)
    return tuple(out)


def allowed_chars(scripts: tuple[str, ...]) -> frozenset[str]:
    """Letters and marks of ``scripts`` plus their in-word extras (ZWNJ for Arabic): see :mod:`langadapt.scripts`."""
    return script_chars(scripts)


@lru_cache(maxsize=None)
def _utf8_fragments(scripts: tuple[str, ...]) -> tuple[frozenset[bytes], frozenset[bytes]]:
    """Proper prefixes and proper suffixes of the UTF-8 encodings of the allowed characters."""
    prefixes, suffixes = set(), set()
    for c in allowed_chars(scripts):
        b = c.encode("utf-8")
        for i in range(1, len(b)):
            prefixes.add(b[:i])
            suffixes.add(b[i:])
    return frozenset(prefixes), frozenset(suffixes)


def text_in_scripts(text: str, scripts: tuple[str, ...], boundary: str = SP_SPACE) -> bool:
    """True when ``text`` has at least one character of ``scripts`` and nothing but those and ``boundary``."""
    if scripts == (ANY_SCRIPT,):
        return True
    allowed = allowed_chars(scripts)
    core = text.replace(boundary, "")
    return bool(core) and all(c in allowed for c in core)


def bytes_in_scripts(data: bytes, scripts: tuple[str, ...]) -> bool:
    """Byte-level form of :func:`text_in_scripts`: spaces (the boundary) plus bytes that can be part of allowed
    characters. A byte-level BPE token may hold half a character (``' \\xd8'``), so a leading run of
    continuation bytes may be the tail of an allowed character and a trailing incomplete sequence its head.
    """
    if scripts == (ANY_SCRIPT,):
        return True
    core = data.replace(b" ", b"")
    if not core:
        return False
    prefixes, suffixes = _utf8_fragments(scripts)
    start = 0
    while start < len(core) and start < 3 and 0x80 <= core[start] <= 0xBF:
        start += 1
    head = core[:start]
    if head and head not in suffixes:
        return False
    end = len(core)
    # The last lead byte starts the tail when the sequence it announces is longer than what is left.
    for i in range(len(core) - 1, max(start, len(core) - 4) - 1, -1):
        b = core[i]
        if b >= 0xC0:
            need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            if len(core) - i < need:
                end = i
            break
    tail = core[end:]
    if tail and tail not in prefixes:
        return False
    try:
        body = core[start:end].decode("utf-8")
    except UnicodeDecodeError:
        return False
    allowed = allowed_chars(scripts)
    return all(c in allowed for c in body)


@lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes-to-unicode table: byte-level token character -> byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def byte_level_to_bytes(token: str) -> bytes | None:
    """Bytes of a byte-level token, ``None`` when it is not in byte-level form (e.g. a special token)."""
    table = byte_decoder()
    try:
        return bytes(table[c] for c in token)
    except KeyError:
        return None


# --------------------------------------------------------------------------------------------------------------
# Reading the corpus
# --------------------------------------------------------------------------------------------------------------


def read_corpus(files: Sequence[str], config: NormalizerConfig, text_field: str = "text",
                arg: str = "train_file") -> list[str]:
    """Normalized, non-blank lines of every document (documents are split at newlines for SentencePiece)."""
    lines = []
    for doc in iter_corpus(files, text_field):
        for line in normalize(doc, config).split("\n"):
            if line.strip():
                lines.append(line)
    if not lines:
        raise InputError(f"--{arg}: {', '.join(files)} holds no text (only blank lines); give a corpus with text",
                         arg=arg)
    return lines


def sample_lines(lines: list[str], input_sentence_size: int, shuffle: bool, seed: int) -> list[str]:
    """At most ``input_sentence_size`` lines (0 = all), a seeded random sample when ``shuffle``."""
    if not input_sentence_size or len(lines) <= input_sentence_size:
        return lines
    if shuffle:
        return random.Random(seed).sample(lines, input_sentence_size)
    return lines[:input_sentence_size]


# --------------------------------------------------------------------------------------------------------------
# Training the add-on
# --------------------------------------------------------------------------------------------------------------

# Trainer settings copied from a SentencePiece base so the add-on's pieces can be formed inside the base.
_COPIED_TRAINER_FIELDS = (
    "model_type", "byte_fallback", "split_digits", "split_by_unicode_script", "split_by_whitespace",
    "split_by_number", "allow_whitespace_only_pieces", "treat_whitespace_as_suffix", "max_sentencepiece_length",
    "character_coverage", "unk_id", "bos_id", "eos_id", "pad_id", "unk_piece", "bos_piece", "eos_piece",
    "pad_piece",
)
_COPIED_NORMALIZER_FIELDS = ("add_dummy_prefix", "remove_extra_whitespaces")
_SP_MODEL_TYPES = {1: "unigram", 2: "bpe", 3: "word", 4: "char"}
# Without a base: Llama-2's settings (BPE, byte fallback, split digits, identity normalizer).
DEFAULT_SP_SETTINGS = dict(
    model_type="bpe", byte_fallback=True, split_digits=True, normalization_rule_name="identity",
    add_dummy_prefix=True, remove_extra_whitespaces=False, split_by_unicode_script=True, split_by_whitespace=True,
    split_by_number=True, allow_whitespace_only_pieces=True, character_coverage=0.99995, unk_id=0, bos_id=1,
    eos_id=2, pad_id=-1,
)


def sp_trainer_settings(base_model_path: str | None) -> dict:
    """SentencePiece trainer keyword arguments matching a base ``tokenizer.model`` (Llama-2's without one)."""
    if base_model_path is None:
        return dict(DEFAULT_SP_SETTINGS)
    proto = load_sp_proto(base_model_path, "base_tokenizer")
    ts, ns = proto.trainer_spec, proto.normalizer_spec
    settings = {}
    for name in _COPIED_TRAINER_FIELDS:
        value = getattr(ts, name)
        settings[name] = _SP_MODEL_TYPES.get(value, "bpe") if name == "model_type" else value
    for name in _COPIED_NORMALIZER_FIELDS:
        settings[name] = getattr(ns, name)
    # A named rule ("identity", "nmt_nfkc", ...) is rebuilt by name; a custom rule (or an unnamed one) cannot be,
    # so identity is used: our Persian normalizer has already run on the corpus.
    settings["normalization_rule_name"] = ns.name if ns.name in ("identity", "nmt_nfkc", "nfkc", "nmt_nfkc_cf",
                                                                 "nfkc_cf") else "identity"
    return settings


def train_sentencepiece(lines: list[str], vocab_size: int, settings: dict, num_threads: int, seed: int) -> bytes:
    """Train a SentencePiece model on ``lines``; the serialized model. Vocabulary-size errors become InputError."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.set_random_generator_seed(seed)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=model, vocab_size=vocab_size, num_threads=num_threads,
            max_sentence_length=SP_MAX_SENTENCE_BYTES, minloglevel=2, **settings,
        )
    except RuntimeError as e:
        msg = str(e)
        limit = re.search(r"<=\s*(\d+)", msg)
        if limit:
            raise InputError(
                f"--vocab_size {vocab_size}: the corpus can support at most {limit.group(1)} pieces "
                f"(sentencepiece: {msg.split('] ')[-1]}); lower --vocab_size or give more text",
                arg="vocab_size", value=vocab_size,
            ) from None
        raise InputError(f"--vocab_size {vocab_size}: sentencepiece refused to train: {msg.split('] ')[-1]}",
                         arg="vocab_size", value=vocab_size) from None
    return model.getvalue()


def addon_bpe_spec(base_spec: dict) -> dict:
    """A copy of a byte-level BPE ``tokenizer.json`` with an empty model and no added tokens: the add-on starts
    with the base's normalizer, pre-tokenizer and decoder (what ``train_new_from_iterator`` does)."""
    spec = json.loads(json.dumps(base_spec))
    model = spec["model"]
    model["vocab"], model["merges"] = {}, []
    model["unk_token"] = None  # the base's unk is an added token the add-on does not have
    spec["added_tokens"] = []
    spec["post_processor"] = None
    return spec


def train_byte_level_bpe(lines: list[str], vocab_size: int, base_spec: dict, min_frequency: int) -> str:
    """Train a byte-level BPE add-on with the base's pipeline; the add-on ``tokenizer.json`` text.

    ``vocab_size`` counts the 256 byte symbols too. Raises :class:`InputError` when the corpus runs out of pairs
    (seen at least ``min_frequency`` times) before ``vocab_size`` is reached, naming the size it reached.
    """
    from tokenizers import Tokenizer, pre_tokenizers, trainers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size <= len(alphabet):
        raise InputError(f"--vocab_size {vocab_size}: a byte-level BPE add-on needs more than the {len(alphabet)} "
                         "byte symbols; ask for more", arg="vocab_size", value=vocab_size)
    tok = Tokenizer.from_str(json.dumps(addon_bpe_spec(base_spec)))
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, initial_alphabet=alphabet,
                                  special_tokens=[], show_progress=False)
    tok.train_from_iterator(lines, trainer=trainer, length=len(lines))
    got = tok.get_vocab_size()
    if got < vocab_size:
        raise InputError(
            f"--vocab_size {vocab_size}: the corpus can support at most {got} tokens (no pair left that occurs "
            f"{min_frequency}+ times); lower --vocab_size to <= {got} or give more text",
            arg="vocab_size", value=vocab_size,
        )
    return tok.to_str(pretty=True)


@dataclass
class ExtractResult:
    """What :func:`extract_vocab` wrote, for the report."""

    kind: Kind
    model_file: str
    vocab_size: int
    settings: dict = field(default_factory=dict)
    seconds: float = 0.0


def extract_vocab(lines: list[str], output_dir: str, vocab_size: int, base_tokenizer: str | None,
                  model_type: str | None = None, num_threads: int = 1, seed: int = 42,
                  min_frequency: int = 2) -> ExtractResult:
    """Train the add-on vocabulary on ``lines`` and write it to ``output_dir`` (which must exist).

    SentencePiece (no base, or a ``tokenizer.model`` base): ``extra.model`` and ``extra.vocab``.
    Byte-level BPE base: ``extra_tokenizer.json``.
    """
    t0 = time.perf_counter()
    kind: Kind = detect_kind(base_tokenizer) if base_tokenizer else "sentencepiece"
    if kind == "sentencepiece":
        settings = sp_trainer_settings(os.path.join(base_tokenizer, SP_MODEL_FILE) if base_tokenizer else None)
        if model_type:
            settings["model_type"] = model_type
        if settings["model_type"] not in ("bpe", "unigram"):
            raise InputError(f"--model_type {settings['model_type']}: use bpe (recommended for a BPE base) or unigram",
                             arg="model_type")
        data = train_sentencepiece(lines, vocab_size, settings, num_threads, seed)
        path = os.path.join(output_dir, EXTRA_SP_FILE)
        with open(path, "wb") as f:
            f.write(data)
        proto = load_sp_proto(path, "output_dir")
        with open(os.path.join(output_dir, "extra.vocab"), "w", encoding="utf-8") as f:
            f.writelines(f"{p.piece}\t{p.score:g}\n" for p in proto.pieces)
        size = len(proto.pieces)
    else:
        if model_type not in (None, "bpe"):
            raise InputError(f"--model_type {model_type}: a byte-level BPE base takes a BPE add-on; drop the arg "
                             "or pass --model_type bpe", arg="model_type", value=model_type)
        with open(os.path.join(base_tokenizer, HF_JSON_FILE), encoding="utf-8") as f:
            base_spec = json.load(f)
        text = train_byte_level_bpe(lines, vocab_size, base_spec, min_frequency)
        path = os.path.join(output_dir, EXTRA_BPE_FILE)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        settings = {"model_type": "bpe", "min_frequency": min_frequency,
                    "pre_tokenizer": base_spec.get("pre_tokenizer"), "normalizer": base_spec.get("normalizer")}
        size = len(json.loads(text)["model"]["vocab"])
    return ExtractResult(kind=kind, model_file=os.path.basename(path), vocab_size=size, settings=settings,
                         seconds=time.perf_counter() - t0)


def corpus_stats(lines: Iterable[str]) -> dict:
    """Lines, characters and UTF-8 bytes of a corpus."""
    n = chars = nbytes = 0
    for line in lines:
        n += 1
        chars += len(line)
        nbytes += len(line.encode("utf-8"))
    return {"lines": n, "chars": chars, "bytes": nbytes}


def iter_eval_lines(path: str, config: NormalizerConfig, text_field: str = "text") -> Iterator[str]:
    """Normalized non-blank lines of an evaluation file (same reading as the training corpus)."""
    yield from read_corpus([path], config, text_field, arg="eval_file")


def resolve_train_files(paths: Sequence[str]) -> list[str]:
    """``--train_file`` values expanded (directories of .txt/.jsonl), each checked to exist and be non-empty."""
    return resolve_files(list(paths), "train_file")
