"""The Persian normalizer (:mod:`langadapt.normalize`) expressed as HF ``tokenizers`` normalizers in ``tokenizer.json``.

Why: langadapt normalizes text in Python before tokenizing, but a model served elsewhere (a plain
``AutoTokenizer``, vLLM, TGI) only runs what ``tokenizer.json`` says. Without this, Persian typed with Arabic yeh/kaf,
a kashida or a pasted bidi mark gets other ids than training saw (15 tokens instead of 9 for one sentence).

:func:`hf_normalizers` turns a :class:`~langadapt.normalize.NormalizerConfig` into a list of ``tokenizers``
normalizers that compute the same function, step by step in the same order as :func:`langadapt.normalize.normalize`:

* presentation forms (U+FB50-U+FDFF, U+FE70-U+FEFC) -> their NFKC form: one ``Precompiled`` character map (the
  normalizer SentencePiece tokenizers use) holding exactly these 731 characters, so NFKC never touches other text;
* ``NFC``; Arabic yeh/alef maksura/kaf -> Persian; bidi marks and BOM removed; kashida removed; diacritics (when
  configured); the ZWNJ rules (Oniguruma, which ``tokenizers`` uses, has the same look-behind/look-ahead); digits.

What cannot be expressed (:data:`NOT_EXPRESSIBLE`): the noncharacter U+FDD0, used as a separator inside the
pipeline, is removed from the text (it never occurs in real text); characters whose Unicode properties differ
between Python's and Oniguruma's Unicode versions may be treated differently by the ZWNJ rule; on SentencePiece-style
tokenizers, text starting with a removed character loses its leading ``▁``. And llama.cpp ignores
``tokenizer.json`` normalizers altogether: normalize text yourself before a GGUF model sees it.

:func:`attach_normalizer` writes the normalizers in front of the tokenizer's own (SentencePiece-style tokenizers
have one: the ``▁`` prepend/replace), idempotently; :func:`has_normalizer` tells whether a folder carries them.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import os
import tempfile
import unicodedata
from typing import Any

from langadapt.errors import InputError
from langadapt.normalize import CONFIG_FILE, NormalizerConfig

logger = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"

# The differences between the Python normalizer and this one, for model cards and docs.
NOT_EXPRESSIBLE = (
    "the noncharacter U+FDD0 is removed (the normalizer uses it internally; it never occurs in real text)",
    "a character that is a letter or number in one Unicode version and not in the other (Python's vs the "
    "tokenizers library's regex engine) may differ in whether a ZWNJ next to it is kept",
    "SentencePiece-style tokenizers (Metaspace pre-tokenizer, Llama 2): when the text begins with a character the "
    "normalizer removes (a stray ZWNJ, a bidi mark, a BOM), the leading \u2581 is not prepended, so the first token "
    "differs from langadapt's (tokenizers prepends only at the original string start)",
    "llama.cpp (and so GGUF/Ollama) ignores tokenizer.json normalizers: normalize text with "
    "langadapt.normalize.normalize before it reaches a GGUF model",
)

# Mirrors langadapt.normalize's private patterns; tests/test_hf_normalizer.py checks both give the same text.
_AR_LETTER = "\u0620-\u064a\u066e-\u06d3\u06d5\u06fa-\u06fc\u06ff"
_FORMAT_CHARS = "[\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069\ufeff]"
_FORMS = "\ufb50-\ufdff\ufe70-\ufefc"
# tokenizers' Precompiled normalizer looks a grapheme shorter than 6 bytes up whole and, on a prefix match, replaces
# all of it: a presentation form followed by a mark would lose the mark. A noncharacter put between them (and taken
# out right after) makes the form a grapheme of its own; noncharacters never occur in text.
_SEPARATOR = "\ufdd0"
# Python's ``\w`` on str (letters, numbers, underscore) plus the vowel signs langadapt.normalize adds; Oniguruma's
# own ``\w`` would also count every combining mark and only decimal digits.
_PY_WORD = "\\p{L}\\p{N}_\u064b-\u0652\u0670"
_FA_DIGITS = "۰۱۲۳۴۵۶۷۸۹"
_AR_DIGITS = "٠١٢٣٤٥٦٧٨٩"
_EN_DIGITS = "0123456789"


def _regex(pattern: str) -> dict[str, Any]:
    return {"Regex": pattern}


def _replace(pattern: str | dict, content: str) -> dict[str, Any]:
    return {"type": "Replace", "pattern": pattern if isinstance(pattern, dict) else {"String": pattern},
            "content": content}


def _char_class(chars: list[str]) -> str:
    return "[" + "".join(chars) + "]"


@functools.lru_cache(maxsize=1)
def _presentation_forms_charsmap() -> str:
    """SentencePiece's precompiled character map (base64) folding every Arabic presentation form to its NFKC form.

    One ``Precompiled`` normalizer does the whole mapping in one pass (371 ``Replace`` steps made tokenization
    30x slower). The map is built by SentencePiece's own rule compiler (``normalization_rule_tsv``), which needs a
    throw-away model trained on a few characters (0.2 s)."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    def hexes(text: str) -> str:
        return " ".join(f"{ord(ch):X}" for ch in text)

    rows = []
    for cp in list(range(0xFB50, 0xFE00)) + list(range(0xFE70, 0xFEFD)):
        form = chr(cp)
        target = unicodedata.normalize("NFKC", form)
        if target != form:
            rows.append(f"{hexes(form)}\t{hexes(target)}")
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "rules.tsv"), "w", encoding="utf-8") as f:
            f.write("\n".join(rows) + "\n")
        with open(os.path.join(tmp, "text.txt"), "w", encoding="utf-8") as f:
            f.write("abc def\n" * 20)
        spm.SentencePieceTrainer.train(
            input=os.path.join(tmp, "text.txt"), model_prefix=os.path.join(tmp, "m"), vocab_size=10,
            model_type="char", normalization_rule_tsv=os.path.join(tmp, "rules.tsv"), add_dummy_prefix=False,
            remove_extra_whitespaces=False, minloglevel=2,
        )
        proto = sentencepiece_model_pb2.ModelProto()
        with open(os.path.join(tmp, "m.model"), "rb") as f:
            proto.ParseFromString(f.read())
    return base64.b64encode(proto.normalizer_spec.precompiled_charsmap).decode("ascii")


def _presentation_forms(charsmap: bool = True) -> list[dict[str, Any]]:
    return [
        _replace(_regex(f"(?<=[{_FORMS}])(?=\\p{{M}})"), _SEPARATOR),
        {"type": "Precompiled", "precompiled_charsmap": _presentation_forms_charsmap() if charsmap else ""},
        _replace(_SEPARATOR, ""),
    ]


def hf_normalizers(config: NormalizerConfig | None = None, charsmap: bool = True) -> list[dict[str, Any]]:
    """The ``tokenizer.json`` normalizer entries computing ``langadapt.normalize.normalize(text, config)``.

    Empty for a disabled configuration. ``charsmap=False`` leaves the presentation-form map empty (enough to
    recognise the entries in a file, without compiling the map).
    """
    cfg = config or NormalizerConfig()
    if not cfg.enabled:
        return []
    steps: list[dict[str, Any]] = []
    if cfg.unify_letters:
        steps += _presentation_forms(charsmap)
    steps.append({"type": "NFC"})
    if cfg.unify_letters:
        steps += [_replace(_regex("[\u064a\u0649]"), "\u06cc"), _replace("\u0643", "\u06a9")]
    if cfg.remove_format_chars:
        steps.append(_replace(_regex(_FORMAT_CHARS), ""))
    if cfg.remove_kashida:
        steps.append(_replace("\u0640", ""))
    if cfg.remove_diacritics:
        steps.append(_replace(_regex("[\u064b-\u0652]"), ""))
    if cfg.unify_zwnj:
        steps += [
            _replace(_regex(f"(?<=[{_AR_LETTER}])[\u200b\u200d\u00ad]+(?=[{_AR_LETTER}])"), "\u200c"),
            _replace(_regex("[\u200b\u200d\u00ad]"), ""),
            _replace(_regex("\u200c{2,}"), "\u200c"),
            # \A and \z: Oniguruma's ^ and $ also match at line breaks (Python's do not); a ZWNJ next to a line
            # break is removed by the look-arounds anyway.
            _replace(_regex(r"\A\u200c+|\u200c+\z|(?<=[^" + _PY_WORD + r"])\u200c|\u200c(?=[^" + _PY_WORD + r"])"), ""),
        ]
    if cfg.digits == "fa":
        for src in (_EN_DIGITS, _AR_DIGITS):
            steps += [_replace(s, f) for s, f in zip(src, _FA_DIGITS)]
    elif cfg.digits == "en":
        for src in (_FA_DIGITS, _AR_DIGITS):
            steps += [_replace(s, e) for s, e in zip(src, _EN_DIGITS)]
    return steps


def _split(normalizer: dict | None) -> list[dict]:
    if normalizer is None:
        return []
    if normalizer.get("type") == "Sequence":
        return list(normalizer.get("normalizers", []))
    return [normalizer]


def _comparable(steps: list[dict]) -> list[dict]:
    """Steps with the character map blanked: another SentencePiece version may compile the same rules to other
    bytes, and a folder must still be recognised as carrying the normalizer."""
    return [{**s, "precompiled_charsmap": ""} if s.get("type") == "Precompiled" else s for s in steps]


def _strip_ours(steps: list[dict], ours: list[dict]) -> tuple[list[dict], bool]:
    """``steps`` without a leading copy of ``ours``; whether it was there."""
    if ours and _comparable(steps[: len(ours)]) == _comparable(ours):
        return steps[len(ours):], True
    return steps, False


def _read_spec(tokenizer_dir: str) -> tuple[str, dict]:
    path = os.path.join(tokenizer_dir, TOKENIZER_FILE)
    if not os.path.isfile(path):
        raise InputError(f"{tokenizer_dir} has no {TOKENIZER_FILE} (a fast tokenizer); save the tokenizer with "
                         "transformers first", arg="tokenizer_dir", value=tokenizer_dir)
    with open(path, encoding="utf-8") as f:
        return path, json.load(f)


def _write_spec(path: str, spec: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(spec, f, ensure_ascii=False, indent=2)
    os.replace(tmp, path)  # a killed run leaves the old file, never half of the new one


def attach_normalizer(tokenizer_dir: str, config: NormalizerConfig | None = None) -> bool:
    """Put :func:`hf_normalizers` of ``config`` (default: the folder's ``langadapt_normalizer.json``) in front of
    the normalizer of ``tokenizer_dir/tokenizer.json``. Idempotent. Returns whether the file changed."""
    cfg = config if config is not None else NormalizerConfig.from_dir(tokenizer_dir)
    path, spec = _read_spec(tokenizer_dir)
    ours = hf_normalizers(cfg)
    rest, present = _strip_ours(_split(spec.get("normalizer")), ours)
    if present or not ours:
        return False
    steps = ours + rest
    spec["normalizer"] = {"type": "Sequence", "normalizers": steps}
    _write_spec(path, spec)
    _load_tokenizer_json_verbatim(tokenizer_dir)
    logger.info("tokenizer.json in %s now normalizes Persian text (%d normalizer steps)", tokenizer_dir, len(ours))
    return True


# Tokenizer classes that load tokenizer.json as it is (transformers 4 and 5). Model-specific classes with their own
# __init__ (LlamaTokenizer, GPT2Tokenizer, ... in transformers 5) rebuild the pipeline from the vocabulary and drop
# the normalizer.
VERBATIM_CLASSES = ("PreTrainedTokenizerFast", "TokenizersBackend")


def _load_tokenizer_json_verbatim(tokenizer_dir: str) -> None:
    """Make ``AutoTokenizer`` use tokenizer.json as written (normalizer included): ``tokenizer_class`` becomes
    ``PreTrainedTokenizerFast``, the generic class of transformers 4 and 5, when it names a model-specific one."""
    path = os.path.join(tokenizer_dir, "tokenizer_config.json")
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    cls = config.get("tokenizer_class")
    if cls is None or cls in VERBATIM_CLASSES:
        return
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    _write_spec(path, config)
    logger.info("%s: tokenizer_class %s -> PreTrainedTokenizerFast (so transformers keeps tokenizer.json's "
                "normalizer)", tokenizer_dir, cls)


def detach_normalizer(tokenizer_dir: str, config: NormalizerConfig | None = None) -> bool:
    """Remove what :func:`attach_normalizer` added (the tokenizer's own normalizer stays). Returns whether it was
    there. Used for llama.cpp's converter, which fingerprints the tokenizer on raw text and ignores normalizers."""
    cfg = config if config is not None else NormalizerConfig.from_dir(tokenizer_dir)
    path, spec = _read_spec(tokenizer_dir)
    rest, present = _strip_ours(_split(spec.get("normalizer")), hf_normalizers(cfg, charsmap=False))
    if not present:
        return False
    spec["normalizer"] = None if not rest else (rest[0] if len(rest) == 1 else {"type": "Sequence",
                                                                                "normalizers": rest})
    _write_spec(path, spec)
    return True


def has_normalizer(tokenizer_dir: str, config: NormalizerConfig | None = None) -> bool:
    """Whether ``tokenizer.json`` applies the normalizer of ``config`` (default: the folder's own record).

    ``True`` when the configuration is disabled (there is nothing to carry)."""
    cfg = config if config is not None else NormalizerConfig.from_dir(tokenizer_dir)
    ours = hf_normalizers(cfg, charsmap=False)
    if not ours:
        return True
    _, spec = _read_spec(tokenizer_dir)
    return _strip_ours(_split(spec.get("normalizer")), ours)[1]


def warn_if_missing(tokenizer_dir: str) -> bool:
    """Log what a user of ``tokenizer_dir`` gets when its tokenizer.json lacks the normalizer its
    ``langadapt_normalizer.json`` records (a folder made by an older langadapt). Returns whether it is missing."""
    if not os.path.isfile(os.path.join(tokenizer_dir, CONFIG_FILE)) or \
            not os.path.isfile(os.path.join(tokenizer_dir, TOKENIZER_FILE)):
        return False
    if has_normalizer(tokenizer_dir):
        return False
    logger.warning(
        "%s/tokenizer.json does not normalize Persian text (made by an older langadapt): a plain AutoTokenizer gives "
        "other ids than training saw for Arabic yeh/kaf, kashida or bidi marks. Fix it with: python -c \"from "
        "langadapt.hf_normalizer import attach_normalizer; attach_normalizer('%s')\"", tokenizer_dir, tokenizer_dir)
    return True
