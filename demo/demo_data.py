"""Data of the bundled demo: Persian pretraining text, held-out evaluation text and instruction data, built from
real text in PyPI packages, offline and deterministic.

Sources (read as files, never imported, see ``demo/corpora.py``):

* ``hafez`` (``data/hafez.json``): 495 ghazals of Hafez (one hemistich a line) with a modern-prose
  interpretation and an alternative one each, about 113k words.
* ``hazm`` (``data/words.dat``, optional): a Persian word list with corpus frequencies.
* English replay: sentences from Python's standard-library docstrings (:func:`corpora.english_corpus`).
* English held-out: sentences from the installed requirements' package descriptions
  (:func:`heldout_text.package_description_corpus`), a source no training text comes from, so English
  retention is measured on English the model was not replayed.
* ``data/demo/*.jsonl``: small Persian instruction sets for the five task families, written for this project.
* English-Persian pairs (``bilingual``): Django's Persian locale (``django``, BSD-3) and the manifest of
  ``persian-llm-reference`` (MIT code, CC-BY-4.0 text), read and cleaned by :mod:`langadapt.parallel`.

The split is by poem: a ghazal and both its interpretations are either all training text or all held-out, so the
held-out perplexity never scores a verse the model has read. The poem split is a hash of ``seed`` and the poem id
(stable when the package adds or reorders poems); English sentences are split the same way by hash.

Folder written by :func:`build_demo_data` (all text normalized with the default Persian normalizer)::

    pretrain/fa.jsonl            {"text"}: training ghazals (hemistichs joined by newlines) and interpretations
    pretrain/en.jsonl            {"text"}: English replay text (only when english_replay_fraction > 0)
    heldout/fa.jsonl             {"text"}: held-out ghazals and interpretations
    heldout/en.jsonl             {"text"}: held-out English sentences (package descriptions: independent of replay)
    heldout/en_stdlib.jsonl      {"text"}: standard-library sentences kept out of the replay (same source as it)
    sft/hafez_interpretation.jsonl  {"instruction", "input", "output"}: training ghazal -> its interpretation
    sft/<task>.jsonl             copies of data/demo/*.jsonl (normalized)
    words/fa_words.txt           the most frequent hazm words, one a line (only when hazm_words > 0)
    bilingual/                   only when bilingual: data/prepare_parallel.py's folder on the bundled pairs
                                 (default flags, instructions as JSONL): pretrain/parallel.jsonl documents for the bilingual pretraining
                                 stage, sft/translation.jsonl instructions both ways, pairs.jsonl, report.{json,md}
    testset/<lang>/<task>.json   the first testset_per_file items of each bundled test set (data/testset/<lang>/),
                                 so a CPU run generates for a few items per task
    manifest.json                settings, source fingerprints and counts; written last, so its presence means done

:func:`prepare_demo_data` reuses a finished folder with the same settings and sources, and otherwise rebuilds it under
a temporary name and swaps it in, so an interrupted run never leaves a mixed folder behind.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field

from langadapt.errors import InputError
from langadapt.io import atomic_output_dir, iter_json_records, iter_jsonl, read_json, write_json, write_jsonl, write_text
from langadapt.normalize import normalize
from langadapt.scripts import ARABIC_BLOCK, ZWNJ
from corpora import HAFEZ_INSTALL_HINT, english_corpus, hafez_poems, package_data_file
from heldout_text import distribution_versions, package_description_corpus

logger = logging.getLogger(__name__)

# Bump when the folder layout or the text a setting produces changes, so cached folders are rebuilt.
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
HAZM_INSTALL_HINT = "install it with `pip install --no-deps hazm==0.10.0` (or run `make setup`)"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLED_DIR = os.path.join(REPO_ROOT, "data", "demo")
TESTSET_DIR = os.path.join(REPO_ROOT, "data", "testset")
HAFEZ_INSTRUCTION = "این غزل حافظ را بخوان و پیام آن را به زبان ساده و امروزی بنویس."
# The bundled parallel sources (langadapt.parallel.BUNDLED_SOURCES) and the pinned requirement that provides each.
PARALLEL_DISTRIBUTIONS = {"django": "django==5.2.19", "persian-llm-reference": "persian-llm-reference==0.13.1"}
_SENTENCE_END = re.compile(r"(?<=[.!؟?])\s+")
_PERSIAN_WORD = re.compile(f"^[{ARABIC_BLOCK}{ZWNJ}]+$")


@dataclass
class DemoDataConfig:
    """What the demo data holds. Every field changes the data, so every field is part of the cache key."""

    heldout_fraction: float = field(
        default=0.1, metadata={"help": "Share of ghazals (with their interpretations) held out for perplexity, 0-1."}
    )
    english_heldout_fraction: float = field(
        default=0.2, metadata={"help": "Share of the standard-library English sentences kept out of the replay pool "
                                       "(heldout/en_stdlib.jsonl), 0-1. heldout/en.jsonl comes from another source."}
    )
    english_replay_fraction: float = field(
        default=0.0,
        metadata={"help": "English training sentences added to pretrain/en.jsonl, as a share of the Persian training "
                          "words (0.1 = one English word per ten Persian words); 0 writes no English."},
    )
    sft_hafez_examples: int = field(
        default=150, metadata={"help": "Ghazal -> interpretation instruction pairs (from training ghazals only)."}
    )
    sft_poem_lines: int = field(
        default=6, metadata={"help": "Hemistichs of a ghazal shown in its instruction (keeps examples short)."}
    )
    sft_answer_sentences: int = field(
        default=2, metadata={"help": "Sentences of the interpretation kept as the answer."}
    )
    hazm_words: int = field(
        default=0, metadata={"help": "Most frequent hazm words written to words/fa_words.txt; 0 skips hazm."}
    )
    bilingual: bool = field(
        default=False, metadata={"help": "Also write bilingual/: parallel documents and translation instructions "
                                         "from the bundled English-Persian pairs (django, persian-llm-reference)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the held-out split hashes."})
    bundled_dir: str = field(
        default=BUNDLED_DIR, metadata={"help": "Folder of the bundled instruction sets (*.jsonl) copied to sft/."}
    )
    testset_dir: str = field(default=TESTSET_DIR, metadata={"help": "Test sets to take the evaluation subset from."})
    testset_languages: str = field(
        default="fa", metadata={"help": "Comma-separated language folders of --testset_dir copied to testset/."}
    )
    testset_per_file: int = field(
        default=4, metadata={"help": "Items kept from each test file (the first ones); 0 keeps them all."}
    )

    def __post_init__(self) -> None:
        for name in ("heldout_fraction", "english_heldout_fraction"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"--{name} must be between 0 and 1 (exclusive), got {getattr(self, name)}")
        if self.english_replay_fraction < 0:
            raise ValueError(f"--english_replay_fraction must be >= 0, got {self.english_replay_fraction}")
        for name in ("sft_hafez_examples", "hazm_words", "testset_per_file"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0, got {getattr(self, name)}")
        for name in ("sft_poem_lines", "sft_answer_sentences"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")


def is_heldout(key: str, fraction: float, seed: int) -> bool:
    """Deterministic split: True for about ``fraction`` of keys, decided by a hash of ``seed`` and ``key``."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _clean(text: str) -> str:
    """Normalized text with runs of spaces collapsed (line breaks kept)."""
    return "\n".join(" ".join(line.split()) for line in normalize(text).split("\n")).strip()


def poem_documents(poem: dict) -> list[str]:
    """The pretraining documents of one ghazal: the poem (hemistichs on separate lines) and each interpretation."""
    docs = [_clean("\n".join(poem["poem"]))]
    docs += [_clean(poem.get(key) or "") for key in ("interpretation", "alt_interpretation")]
    return [d for d in docs if d]


def hafez_instruction(poem: dict, poem_lines: int, answer_sentences: int) -> dict | None:
    """A ghazal -> interpretation instruction record, or None when the poem has no interpretation."""
    answer = _clean(poem.get("interpretation") or "")
    if not answer:
        return None
    sentences = [s for s in _SENTENCE_END.split(answer) if s.strip()]
    return {
        "instruction": HAFEZ_INSTRUCTION,
        "input": _clean("\n".join(poem["poem"][:poem_lines])),
        "output": " ".join(sentences[:answer_sentences]),
    }


def bundled_sets(folder: str) -> dict[str, list[dict]]:
    """The bundled instruction sets ``{stem: records}``, normalized; malformed records raise InputError."""
    files = sorted(glob.glob(os.path.join(folder, "*.jsonl")))
    if not files:
        raise InputError(f"--bundled_dir: {folder} holds no .jsonl instruction sets")
    out = {}
    for path in files:
        records = []
        for lineno, rec in iter_jsonl(path, hint=""):
            if not isinstance(rec, dict) or not all(isinstance(rec.get(k), str) and rec[k].strip()
                                                    for k in ("instruction", "output")):
                raise InputError(f"{path}:{lineno}: needs non-empty string fields 'instruction' and 'output'")
            records.append({k: _clean(str(rec.get(k) or "")) for k in ("instruction", "input", "output")})
        out[os.path.splitext(os.path.basename(path))[0]] = records
    return out


def hazm_top_words(n: int) -> list[str]:
    """The ``n`` most frequent Persian words of hazm's ``words.dat`` (``word<TAB>frequency<TAB>tags``)."""
    path = package_data_file("hazm", "data/words.dat", HAZM_INSTALL_HINT)
    counts: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2 or not parts[1].isdigit():
                continue
            word = normalize(parts[0]).strip()
            if _PERSIAN_WORD.match(word):
                counts[word] = counts.get(word, 0) + int(parts[1])
    return [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def testset_files(cfg: DemoDataConfig) -> list[str]:
    """The test files copied (in part) to testset/: ``<testset_dir>/<lang>/*.json(l)`` for each language."""
    files = []
    for lang in [x.strip() for x in cfg.testset_languages.split(",") if x.strip()]:
        found = sorted(glob.glob(os.path.join(cfg.testset_dir, lang, "*.json")) +
                       glob.glob(os.path.join(cfg.testset_dir, lang, "*.jsonl")))
        if not found:
            raise InputError(f"--testset_languages {lang}: {os.path.join(cfg.testset_dir, lang)} holds no .json/.jsonl "
                             "test sets")
        files += found
    return files


def testset_subset(cfg: DemoDataConfig, out: str) -> dict[str, int]:
    """Copy the first ``testset_per_file`` records of each test file to ``out/testset/<lang>/<stem>.json``."""
    from langadapt.evaldata import load_testset

    counts = {}
    for path in testset_files(cfg):
        load_testset(path)  # validates the file (names file and record on error)
        records = [rec for _, rec in iter_json_records(path)]
        if cfg.testset_per_file:
            records = records[: cfg.testset_per_file]
        rel = os.path.relpath(path, cfg.testset_dir)
        target = os.path.join(out, "testset", os.path.splitext(rel)[0] + ".json")
        write_json(target, records)
        counts[os.path.splitext(rel)[0]] = len(records)
    return counts


def _installed_version(dist: str) -> str:
    """The installed version of a PyPI distribution (the pairs it ships change only with it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        raise InputError(f"--bilingual needs the {dist} package for its English-Persian pairs; install it with "
                         f"`pip install --no-deps {PARALLEL_DISTRIBUTIONS[dist]}` (or run `make setup`)") from None


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def fingerprint(cfg: DemoDataConfig) -> dict:
    """The cache key: settings, format version and digests of every source file."""
    sources = {"hafez": _file_digest(package_data_file("hafez", "data/hafez.json", HAFEZ_INSTALL_HINT))}
    if cfg.hazm_words:
        sources["hazm"] = _file_digest(package_data_file("hazm", "data/words.dat", HAZM_INSTALL_HINT))
    for path in sorted(glob.glob(os.path.join(cfg.bundled_dir, "*.jsonl"))):
        sources[f"bundled/{os.path.basename(path)}"] = _file_digest(path)
    for path in testset_files(cfg):
        sources[f"testset/{os.path.relpath(path, cfg.testset_dir)}"] = _file_digest(path)
    if cfg.bilingual:
        for dist in PARALLEL_DISTRIBUTIONS:
            sources[dist] = _installed_version(dist)
    sources["english_heldout"] = distribution_versions()
    settings = dataclasses.asdict(cfg)
    settings["bundled_dir"] = os.path.abspath(cfg.bundled_dir)
    settings["testset_dir"] = os.path.abspath(cfg.testset_dir)
    return {"format_version": FORMAT_VERSION, "settings": settings, "sources": sources}


def build_demo_data(cfg: DemoDataConfig, out: str) -> dict:
    """Write the demo data folder (layout in the module docstring) into ``out``; returns the manifest."""
    train_docs, heldout_docs, sft_pairs = [], [], []
    for poem in hafez_poems():
        heldout = is_heldout(f"hafez:{poem['id']}", cfg.heldout_fraction, cfg.seed)
        (heldout_docs if heldout else train_docs).extend(poem_documents(poem))
        if not heldout:
            pair = hafez_instruction(poem, cfg.sft_poem_lines, cfg.sft_answer_sentences)
            if pair:
                sft_pairs.append(pair)
    en_train, en_heldout = [], []
    for sent in english_corpus():
        (en_heldout if is_heldout(f"en:{sent}", cfg.english_heldout_fraction, cfg.seed) else en_train).append(sent)
    fa_words = sum(len(d.split()) for d in train_docs)
    replay, words = [], 0
    for sent in en_train:
        if words >= cfg.english_replay_fraction * fa_words:
            break
        replay.append(sent)
        words += len(sent.split())

    write_jsonl(os.path.join(out, "pretrain", "fa.jsonl"), [{"text": d} for d in train_docs])
    if replay:
        write_jsonl(os.path.join(out, "pretrain", "en.jsonl"), [{"text": s} for s in replay])
    write_jsonl(os.path.join(out, "heldout", "fa.jsonl"), [{"text": d} for d in heldout_docs])
    en_independent = package_description_corpus()
    write_jsonl(os.path.join(out, "heldout", "en.jsonl"), [{"text": s} for s in en_independent])
    write_jsonl(os.path.join(out, "heldout", "en_stdlib.jsonl"), [{"text": s} for s in en_heldout])
    write_jsonl(os.path.join(out, "sft", "hafez_interpretation.jsonl"), sft_pairs[: cfg.sft_hafez_examples])
    sets = bundled_sets(cfg.bundled_dir)
    for stem, records in sets.items():
        write_jsonl(os.path.join(out, "sft", f"{stem}.jsonl"), records)
    counts = {
        "pretrain_fa_documents": len(train_docs), "pretrain_fa_words": fa_words,
        "pretrain_en_sentences": len(replay), "pretrain_en_words": words,
        "heldout_fa_documents": len(heldout_docs),
        "heldout_fa_words": sum(len(d.split()) for d in heldout_docs),
        "heldout_en_sentences": len(en_independent),
        "heldout_en_words": sum(len(s.split()) for s in en_independent),
        "heldout_en_stdlib_sentences": len(en_heldout),
        "sft_examples": {"hafez_interpretation": len(sft_pairs[: cfg.sft_hafez_examples]),
                         **{stem: len(r) for stem, r in sets.items()}},
    }
    counts["testset_items"] = testset_subset(cfg, out)
    if cfg.bilingual:
        from langadapt.args.data import ParallelArguments
        from langadapt.parallel import write_parallel_data

        parallel = write_parallel_data(ParallelArguments(output_dir=os.path.join(out, "bilingual"),
                                                         sft_format="jsonl"), os.path.join(out, "bilingual"))
        counts["bilingual"] = {"pairs_read": parallel["cleaning"]["read"], "pairs_kept": parallel["cleaning"]["kept"],
                               "documents": parallel["pretraining"]["documents"],
                               "translation_instructions": parallel["sft"]["examples"]}
    if cfg.hazm_words:
        top = hazm_top_words(cfg.hazm_words)
        write_text(os.path.join(out, "words", "fa_words.txt"), "".join(w + "\n" for w in top))
        counts["hazm_words"] = len(top)
    manifest = {**fingerprint(cfg), "counts": counts}
    write_json(os.path.join(out, MANIFEST), manifest)  # last: its presence marks a finished folder
    return manifest


def is_prepared(out: str, cfg: DemoDataConfig) -> bool:
    """True when ``out`` is a finished demo data folder built with these settings from these sources."""
    path = os.path.join(out, MANIFEST)
    if not os.path.isfile(path):
        return False
    manifest = read_json(path)
    return {k: manifest.get(k) for k in ("format_version", "settings", "sources")} == fingerprint(cfg)


def remove_stale_temp_dirs(path: str) -> None:
    """Remove temporary siblings (``.<name>.tmp-*``) that a killed earlier run left behind."""
    parent, name = os.path.split(os.path.abspath(path))
    for stale in glob.glob(os.path.join(parent, f".{name}.tmp-*")) + glob.glob(os.path.join(parent, f".{name}.old-*")):
        logger.info("removing %s, left by an interrupted earlier run", stale)
        shutil.rmtree(stale, ignore_errors=True)


def prepare_demo_data(out: str, cfg: DemoDataConfig) -> dict:
    """The demo data folder at ``out``: reused when finished with the same settings, otherwise rebuilt atomically.
    Returns its manifest."""
    if is_prepared(out, cfg):
        logger.info("demo data: reusing %s", out)
        return read_json(os.path.join(out, MANIFEST))
    remove_stale_temp_dirs(out)
    if os.path.exists(out):
        logger.info("demo data: %s was built with other settings or is unfinished; rebuilding it", out)
    with atomic_output_dir(out, overwrite=True, arg="data_dir") as tmp:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; this is ordinary shared data
        manifest = build_demo_data(cfg, tmp)
    logger.info("demo data: wrote %s (%s)", out, json.dumps(manifest["counts"], ensure_ascii=False))
    return manifest
