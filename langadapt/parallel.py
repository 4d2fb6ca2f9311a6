"""English-Persian parallel text: reading pairs, cleaning them, and turning them into training data.

The paper's second stage aligns the two languages by continued pretraining on parallel text, and its instruction
data includes translation in both directions. This module does both from one list of pairs:

* **Reading** (:func:`read_pairs`): TSV files with two columns (``--tsv_columns`` gives their order), JSONL files
  with ``en``/``fa`` fields, and gettext ``.po`` catalogues whose ``msgid`` is English and ``msgstr`` Persian
  (:func:`parse_po`, a small strict parser: ``msgctxt``, multi-line strings, C escapes, plural forms, obsolete
  ``#~`` entries; fuzzy entries and empty translations are skipped and counted). Bundled sources
  (:data:`BUNDLED_SOURCES`) are read from installed PyPI packages without importing them.
* **Cleaning** (:func:`clean_pairs`): whitespace collapsed, the Persian side normalized with
  :mod:`langadapt.normalize`, then filters in a fixed order, each pair dropped by the first one it fails, so the
  counts add up: ``empty``, ``no_persian_script``, ``too_long``, ``length_ratio``, ``duplicate``. When nothing is
  left the error names the filter that removed the last pairs.
* **Writing**: bilingual pretraining documents (:func:`pretraining_documents`) in the layouts ``en_fa`` (English
  then Persian), ``fa_en`` and ``interleaved`` (sentence by sentence) in the exact proportions asked, and
  translation instructions (:func:`translation_instructions`) in both directions with the instruction worded in
  Persian or English, in the SFT stage's ``instruction``/``input``/``output`` format.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import json
import logging
import math
import os
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from langadapt.cli import UsageError
from langadapt.io import iter_jsonl, iter_lines, resolve_files, write_json, write_jsonl, write_text
from langadapt.normalize import NormalizerConfig, normalize
from langadapt.scripts import has_arabic_letter

logger = logging.getLogger(__name__)

PAIR_EXTENSIONS = (".tsv", ".jsonl", ".po")
LAYOUTS = ("en_fa", "fa_en", "interleaved")
DIRECTIONS = ("en_fa", "fa_en")

# --------------------------------------------------------------------------------------------------------------------
# Pairs


@dataclass
class Pair:
    """One English-Persian pair and where it came from (``file:line`` or ``package:path:location``)."""

    en: str
    fa: str
    origin: str
    source: str = ""  # the input file or bundled source it belongs to, for per-source counts


# --------------------------------------------------------------------------------------------------------------------
# gettext .po


@dataclass
class PoEntry:
    """One catalogue entry. ``msgstr`` maps the plural index (0 for a non-plural entry) to the translation."""

    lineno: int
    msgid: str = ""
    msgctxt: str | None = None
    msgid_plural: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    obsolete: bool = False

    @property
    def fuzzy(self) -> bool:
        return "fuzzy" in self.flags


def _lines(path: str):
    """``(line_number, line)`` of a UTF-8 file, without a byte-order mark on the first line (editors on Windows
    write one; it would otherwise break the first keyword, JSON object or TSV cell)."""
    for lineno, line in iter_lines(path):
        yield lineno, (line.lstrip("\ufeff") if lineno == 1 else line)


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
            "?": "?", "'": "'"}
_KEYWORD = re.compile(r"^(msgctxt|msgid_plural|msgid|msgstr(?:\[(\d+)\])?)\s+(\".*)$")


def _po_string(token: str, where: str) -> str:
    """Decode one quoted PO string (``"..."`` with C escapes, octal ``\\NNN`` and hex ``\\xHH``)."""
    token = token.strip()
    if len(token) < 2 or token[0] != '"' or token[-1] != '"':
        raise UsageError(f"{where}: expected a string in double quotes, got {token[:40]!r}")
    body, out, i = token[1:-1], [], 0
    while i < len(body):
        c = body[i]
        if c == '"':
            raise UsageError(f"{where}: unescaped double quote inside a string; write it as \\\"")
        if c != "\\":
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(body):
            raise UsageError(f"{where}: string ends with a lone backslash")
        e = body[i + 1]
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
        elif e in "01234567":
            m = re.match(r"[0-7]{1,3}", body[i + 1:])
            out.append(chr(int(m.group(0), 8)))
            i += 1 + len(m.group(0))
        elif e == "x" and re.match(r"[0-9a-fA-F]{1,2}", body[i + 2:]):
            m = re.match(r"[0-9a-fA-F]{1,2}", body[i + 2:])
            out.append(chr(int(m.group(0), 16)))
            i += 2 + len(m.group(0))
        else:
            raise UsageError(f"{where}: unknown escape \\{e} in a string")
    return "".join(out)


def parse_po(path: str) -> list[PoEntry]:
    """Parse a gettext ``.po`` file into entries (header and obsolete entries included, flagged).

    Strict: a string outside an entry, an unknown keyword, ``msgstr`` before ``msgid``, a plural entry without
    indexed ``msgstr[n]`` (or the reverse), or an entry without ``msgstr`` raise :class:`UsageError` naming
    ``file:line``. The file must be UTF-8 (a header declaring another charset is refused).
    """
    entries: list[PoEntry] = []
    cur: PoEntry | None = None
    target: tuple[str, int] | None = None  # the field continuation strings append to
    pending_flags: set[str] = set()

    def finish() -> None:
        nonlocal cur
        if cur is None:
            return
        if not cur.msgstr:
            raise UsageError(f"{path}:{cur.lineno}: entry has a msgid but no msgstr")
        if cur.msgid_plural is not None and set(cur.msgstr) != set(range(len(cur.msgstr))):
            raise UsageError(f"{path}:{cur.lineno}: plural entry must have msgstr[0], msgstr[1], ... without gaps")
        entries.append(cur)
        cur = None

    for lineno, raw in _lines(path):
        where = f"{path}:{lineno}"
        line = raw.strip()
        obsolete = line.startswith("#~")
        if obsolete:
            line = line[2:].strip()
            if line.startswith("|"):  # previous msgid of an obsolete entry: a comment
                continue
        if not line:
            continue
        if line.startswith("#"):
            if line.startswith("#,"):
                pending_flags |= {f.strip() for f in line[2:].split(",") if f.strip()}
            continue
        if line.startswith('"'):
            if cur is None or target is None:
                raise UsageError(f"{where}: a string continuation outside an entry; start it with msgid")
            name, idx = target
            text = _po_string(line, where)
            if name == "msgstr":
                cur.msgstr[idx] += text
            else:
                setattr(cur, name, getattr(cur, name) + text)
            continue
        m = _KEYWORD.match(line)
        if not m:
            raise UsageError(f"{where}: cannot parse {line[:40]!r}; expected msgctxt, msgid, msgid_plural, msgstr "
                             "or a quoted string")
        keyword, index, rest = m.group(1), m.group(2), m.group(3)
        value = _po_string(rest, where)
        if keyword in ("msgctxt", "msgid"):
            # A new entry starts at msgctxt, or at msgid unless it follows this entry's own msgctxt.
            if cur is not None and (keyword == "msgctxt" or cur.msgstr or target != ("msgctxt", 0)):
                finish()
            if cur is None:
                cur = PoEntry(lineno=lineno, flags=pending_flags, obsolete=obsolete)
                pending_flags = set()
            if keyword == "msgctxt":
                cur.msgctxt = value
            else:
                cur.msgid = value
            target = (keyword, 0)
        elif keyword == "msgid_plural":
            if cur is None or target != ("msgid", 0):
                raise UsageError(f"{where}: msgid_plural must follow msgid")
            cur.msgid_plural = value
            target = ("msgid_plural", 0)
        else:  # msgstr or msgstr[n]
            if cur is None or target is None or target[0] == "msgctxt":
                raise UsageError(f"{where}: msgstr without a msgid before it")
            plural = cur.msgid_plural is not None
            if plural != (index is not None):
                raise UsageError(f"{where}: " + ("a plural entry (msgid_plural) needs msgstr[N]" if plural
                                                 else "msgstr[N] needs a msgid_plural before it"))
            n = int(index) if index is not None else 0
            if n in cur.msgstr:
                raise UsageError(f"{where}: msgstr[{n}] given twice")
            cur.msgstr[n] = value
            target = ("msgstr", n)
    finish()
    header = next((e for e in entries if e.msgid == "" and e.msgctxt is None and not e.obsolete), None)
    if header is not None:
        m = re.search(r"charset=([\w-]+)", header.msgstr.get(0, ""))
        if m and m.group(1).lower() not in ("utf-8", "utf8", "ascii", "us-ascii", "charset"):
            raise UsageError(f"{path}:{header.lineno}: catalogue charset is {m.group(1)}; convert it with "
                             "`msgconv --to-code=UTF-8`")
    return entries


def po_pairs(path: str, stats: Counter, label: str | None = None) -> list[Pair]:
    """English-Persian pairs of a ``.po`` file (``msgid`` English, ``msgstr`` Persian).

    Skipped and counted in ``stats``: ``po_header``, ``po_obsolete``, ``po_fuzzy`` (a translator marked it
    unreliable), ``po_untranslated`` (empty ``msgstr``). A plural entry gives two pairs: ``msgid`` with
    ``msgstr[0]`` and ``msgid_plural`` with the next form (Persian has two forms, ``plural=(n > 1)``).
    """
    label = label or path
    out: list[Pair] = []
    for e in parse_po(path):
        where = f"{label}:{e.lineno}"
        if e.obsolete:
            stats["po_obsolete"] += 1
        elif e.msgid == "" and e.msgctxt is None:
            stats["po_header"] += 1
        elif e.fuzzy:
            stats["po_fuzzy"] += 1
        elif not any(s.strip() for s in e.msgstr.values()):
            stats["po_untranslated"] += 1
        else:
            stats["po_entries"] += 1
            if e.msgctxt is not None:
                stats["po_with_context"] += 1
            out.append(Pair(e.msgid, e.msgstr[0], where))
            if e.msgid_plural is not None:
                stats["po_plural"] += 1
                out.append(Pair(e.msgid_plural, e.msgstr[min(1, len(e.msgstr) - 1)], f"{where}[plural]"))
    return out


# --------------------------------------------------------------------------------------------------------------------
# TSV / JSONL


def parse_columns(spec: str) -> tuple[str, str]:
    """``"en,fa"`` or ``"fa,en"``: which TSV column holds which language."""
    cols = tuple(c.strip() for c in spec.split(","))
    if sorted(cols) != ["en", "fa"]:
        raise ValueError(f"--tsv_columns must be 'en,fa' or 'fa,en', got {spec!r}")
    return cols  # type: ignore[return-value]


def tsv_pairs(path: str, columns: tuple[str, str] = ("en", "fa")) -> list[Pair]:
    """Pairs of a two-column, tab-separated file. A first row naming the columns (``en<TAB>fa``) is a header.

    A non-blank row without exactly two columns raises :class:`UsageError` naming ``file:line``.
    """
    out: list[Pair] = []
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != 2:
            raise UsageError(f"{path}:{lineno}: expected 2 tab-separated columns ({columns[0]}, {columns[1]}), "
                             f"found {len(cells)}; fix or remove this row")
        if not out and sorted(c.strip().lower() for c in cells) == ["en", "fa"]:
            continue
        row = dict(zip(columns, cells))
        out.append(Pair(row["en"], row["fa"], f"{path}:{lineno}"))
    return out


def jsonl_pairs(path: str, en_field: str = "en", fa_field: str = "fa") -> list[Pair]:
    """Pairs of a JSONL file, one object per line with string fields ``en_field`` and ``fa_field``."""
    out: list[Pair] = []
    for lineno, rec in iter_jsonl(path, "each line must be one JSON object"):
        if not isinstance(rec, dict) or not isinstance(rec.get(en_field), str) or not isinstance(rec.get(fa_field),
                                                                                               str):
            raise UsageError(f"{path}:{lineno}: expected an object with string fields {en_field!r} and {fa_field!r}")
        out.append(Pair(rec[en_field], rec[fa_field], f"{path}:{lineno}"))
    return out


# --------------------------------------------------------------------------------------------------------------------
# Bundled sources (PyPI packages read as files, never imported)


def _package_dir(package: str, pip_name: str) -> str:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(f"--source: the Python package {package!r} is not installed; install it with "
                         f"`pip install --no-deps {pip_name}` (or run `make setup`)")
    return list(spec.submodule_search_locations)[0]


def django_pairs(stats: Counter) -> list[Pair]:
    """Django's Persian catalogues: ``conf/locale/fa`` and every ``contrib/*/locale/fa`` (.po, BSD-3-Clause)."""
    root = _package_dir("django", "django==5.2.19")
    files = sorted(glob.glob(os.path.join(root, "**", "locale", "fa", "LC_MESSAGES", "*.po"), recursive=True))
    if not files:
        raise UsageError(f"--source django: no locale/fa/LC_MESSAGES/*.po under {root}; reinstall django==5.2.19")
    out: list[Pair] = []
    for f in files:
        out.extend(po_pairs(f, stats, label="django:" + os.path.relpath(f, root)))
    return out


_PLR_MANIFEST = "data/reference-manifest.json"


def persian_llm_reference_pairs(stats: Counter) -> list[Pair]:
    """Bilingual fields of persian-llm-reference's bundled manifest (MIT): every object with ``en`` and ``fa``
    strings (entry names, summaries, notes, the mission) and ``en``/``fa`` lists of equal length (the gap map)."""
    path = os.path.join(_package_dir("persian_llm_reference", "persian-llm-reference==0.13.1"), _PLR_MANIFEST)
    if not os.path.isfile(path):
        raise UsageError(f"--source persian-llm-reference: {path} is missing; reinstall persian-llm-reference==0.13.1")
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    out: list[Pair] = []

    def walk(obj, where: str) -> None:
        if isinstance(obj, dict):
            en, fa = obj.get("en"), obj.get("fa")
            if isinstance(en, str) and isinstance(fa, str):
                out.append(Pair(en, fa, f"persian-llm-reference:{_PLR_MANIFEST}:{where}"))
            elif isinstance(en, list) and isinstance(fa, list):
                if len(en) != len(fa):
                    stats["manifest_unaligned_lists"] += 1
                else:
                    out.extend(Pair(e, f, f"persian-llm-reference:{_PLR_MANIFEST}:{where}[{i}]")
                               for i, (e, f) in enumerate(zip(en, fa)) if isinstance(e, str) and isinstance(f, str))
            for k, v in obj.items():
                if k not in ("en", "fa"):
                    walk(v, f"{where}.{k}" if where else k)
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                walk(v, f"{where}[{i}]")

    walk(manifest, "")
    return out


BUNDLED_SOURCES = {"django": django_pairs, "persian-llm-reference": persian_llm_reference_pairs}


def read_pairs(files: Sequence[str], sources: Sequence[str], tsv_columns: tuple[str, str] = ("en", "fa"),
               en_field: str = "en", fa_field: str = "fa") -> tuple[list[Pair], dict[str, Counter]]:
    """Read every input file and bundled source; return the pairs and per-source reading counts."""
    pairs: list[Pair] = []
    read_stats: dict[str, Counter] = {}
    for name in sources:
        if name not in BUNDLED_SOURCES:
            raise UsageError(f"--source: unknown source {name!r}; choose from {', '.join(BUNDLED_SOURCES)}")
        stats = read_stats.setdefault(name, Counter())
        got = BUNDLED_SOURCES[name](stats)
        pairs.extend(dataclasses.replace(p, source=name) for p in got)
    for path in files:
        stats = read_stats.setdefault(path, Counter())
        if path.endswith(".po"):
            got = po_pairs(path, stats)
        elif path.endswith(".tsv"):
            got = tsv_pairs(path, tsv_columns)
        elif path.endswith(".jsonl"):
            got = jsonl_pairs(path, en_field, fa_field)
        else:
            raise UsageError(f"--input: {path} is not .tsv, .jsonl or .po")
        pairs.extend(dataclasses.replace(p, source=path) for p in got)
    for name, stats in read_stats.items():
        stats["pairs_read"] = sum(p.source == name for p in pairs)
    return pairs, read_stats


# --------------------------------------------------------------------------------------------------------------------
# Cleaning


@dataclass(frozen=True)
class FilterConfig:
    """Thresholds of the pair filters, in characters after normalization."""

    max_chars: int = 1000  # per side; longer "pairs" are usually whole pages that happen to be aligned
    max_length_ratio: float = 3.0  # longer side / shorter side; Persian runs ~0.8-1.3x English in characters
    ratio_min_chars: int = 20  # apply the ratio only when the longer side has this many characters ("OK"/"باشه")
    require_persian_script: bool = True  # the fa side must contain an Arabic-script letter (not an English copy)


# Each filter: (name, flag to loosen, description). Applied in this order; a pair is counted under the first it fails.
FILTERS = (
    ("empty", "(fix the input)", "one side is empty after normalization"),
    ("no_persian_script", "--require_persian_script false", "the Persian side has no Arabic-script letter"),
    ("too_long", "--max_chars", "a side is longer than --max_chars characters"),
    ("length_ratio", "--max_length_ratio", "the longer side is more than --max_length_ratio times the shorter"),
    ("duplicate", "(none)", "the same pair (ignoring case and spacing) appeared earlier"),
)


def _clean_side(text: str, cfg: NormalizerConfig | None) -> str:
    """Collapse all whitespace (newlines too: a document line holds one side) and normalize when ``cfg``."""
    text = " ".join(text.split())
    return normalize(text, cfg).strip() if cfg is not None else text


def _failed_filter(p: Pair, fcfg: FilterConfig, seen: set) -> str | None:
    if not p.en or not p.fa:
        return "empty"
    if fcfg.require_persian_script and not has_arabic_letter(p.fa):
        return "no_persian_script"
    if max(len(p.en), len(p.fa)) > fcfg.max_chars:
        return "too_long"
    longer, shorter = max(len(p.en), len(p.fa)), min(len(p.en), len(p.fa))
    if longer >= fcfg.ratio_min_chars and longer > fcfg.max_length_ratio * shorter:
        return "length_ratio"
    key = (p.en.casefold(), p.fa)
    if key in seen:
        return "duplicate"
    seen.add(key)
    return None


def clean_pairs(pairs: Iterable[Pair], fcfg: FilterConfig, norm: NormalizerConfig | None,
                examples_per_reason: int = 3) -> tuple[list[Pair], dict]:
    """Normalize and filter pairs. Returns the kept pairs and a report ``{"read", "kept", "dropped": {reason: n},
    "by_source": {source: {"read", "kept", reason: n}}, "examples": {reason: [origin, ...]}}``.

    Raises :class:`UsageError` when no pair is left, naming the filter that removed the last ones.
    """
    kept: list[Pair] = []
    dropped: Counter = Counter()
    by_source: dict[str, Counter] = {}
    examples: dict[str, list[str]] = {}
    seen: set = set()
    n = 0
    for p in pairs:
        n += 1
        # English is only whitespace-cleaned: the Persian normalizer's rules (letters, ZWNJ) are for Persian.
        p = dataclasses.replace(p, en=_clean_side(p.en, None), fa=_clean_side(p.fa, norm))
        src = by_source.setdefault(p.source, Counter())
        src["read"] += 1
        reason = _failed_filter(p, fcfg, seen)
        if reason is None:
            kept.append(p)
            src["kept"] += 1
        else:
            dropped[reason] += 1
            src[reason] += 1
            ex = examples.setdefault(reason, [])
            if len(ex) < examples_per_reason:
                ex.append(p.origin)
    if n == 0:
        raise UsageError("the inputs hold no translated pairs (see the skipped fuzzy/untranslated .po entries); "
                         "give other --input files or --source")
    if not kept:
        culprit = [f for f in FILTERS if dropped[f[0]]][-1]
        raise UsageError(f"no pairs left after filtering: {n} read, and filter {culprit[0]!r} ({culprit[2]}) removed "
                         f"the last {dropped[culprit[0]]}; loosen {culprit[1]} or check the input "
                         f"(dropped: {dict(dropped)})")
    report = {"read": n, "kept": len(kept), "dropped": {f[0]: dropped[f[0]] for f in FILTERS},
              "by_source": {k: dict(v) for k, v in by_source.items()}, "examples": examples}
    return kept, report


# --------------------------------------------------------------------------------------------------------------------
# Ratios and outputs


def parse_ratios(spec: str, names: Sequence[str], flag: str) -> dict[str, float]:
    """``"en_fa=0.4,fa_en=0.4,interleaved=0.2"`` -> weights normalized to sum 1 (names not listed get 0)."""
    out = {k: 0.0 for k in names}
    for part in filter(None, (s.strip() for s in spec.split(","))):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or name not in out:
            raise ValueError(f"{flag}: expected NAME=WEIGHT with NAME in {', '.join(names)}, got {part!r}")
        try:
            w = float(value)
        except ValueError:
            raise ValueError(f"{flag}: weight of {name} is not a number: {value!r}") from None
        if w < 0 or not math.isfinite(w):
            raise ValueError(f"{flag}: weight of {name} must be >= 0, got {value}")
        out[name] = w
    total = sum(out.values())
    if total <= 0:
        raise ValueError(f"{flag}: at least one weight must be positive, got {spec!r}")
    return {k: v / total for k, v in out.items()}


def allocate(n: int, ratios: dict[str, float], rng: random.Random) -> list[str]:
    """``n`` labels in exactly the given proportions (largest remainder, so each count is within 1 of
    ``n * ratio``), in a seeded random order."""
    exact = {k: n * r for k, r in ratios.items()}
    counts = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: exact[k] - counts[k], reverse=True)[: n - sum(counts.values())]:
        counts[k] += 1
    labels = [k for k in ratios for _ in range(counts[k])]
    rng.shuffle(labels)
    return labels


_SENTENCE_END = re.compile(r"(?<=[.!?؟;؛])\s+")


def split_sentences(text: str) -> list[str]:
    """Sentences of one side: split after ``. ! ? ؟ ; ؛`` followed by a space."""
    return [s for s in _SENTENCE_END.split(text) if s]


def layout_document(pair: Pair, layout: str) -> tuple[str, str]:
    """The text of one pretraining document and the layout actually used.

    ``interleaved`` alternates English and Persian sentence by sentence; when the two sides have different
    sentence counts there is no safe alignment and the pair falls back to ``en_fa`` (reported as such).
    """
    if layout == "en_fa":
        return f"{pair.en}\n{pair.fa}", layout
    if layout == "fa_en":
        return f"{pair.fa}\n{pair.en}", layout
    en, fa = split_sentences(pair.en), split_sentences(pair.fa)
    if len(en) != len(fa):
        return f"{pair.en}\n{pair.fa}", "en_fa"
    return "\n".join(s for e, f in zip(en, fa) for s in (e, f)), "interleaved"


def pretraining_documents(pairs: Sequence[Pair], ratios: dict[str, float], seed: int) -> tuple[list[dict], dict]:
    """One ``{"text", "layout"}`` document per pair, layouts in the proportions ``ratios``; plus their counts
    ``{"requested": {layout: n}, "written": {layout: n}}`` (they differ by the interleaving fallbacks)."""
    rng = random.Random(seed)
    labels = allocate(len(pairs), ratios, rng)
    docs = []
    for pair, layout in zip(pairs, labels):
        text, used = layout_document(pair, layout)
        docs.append({"text": text, "layout": used})
    rng.shuffle(docs)
    return docs, {"requested": dict(Counter(labels)), "written": dict(Counter(d["layout"] for d in docs))}


# Instruction wordings, several per direction and language so the model does not learn one fixed string.
INSTRUCTIONS = {
    ("en_fa", "en"): ("Translate the following text from English to Persian.",
                      "Translate this English text into Persian (Farsi).",
                      "What is the Persian translation of the following English text?"),
    ("fa_en", "en"): ("Translate the following text from Persian to English.",
                      "Translate this Persian (Farsi) text into English.",
                      "What is the English translation of the following Persian text?"),
    ("en_fa", "fa"): ("متن زیر را از انگلیسی به فارسی ترجمه کن.",
                      "این متن انگلیسی را به فارسی برگردان.",
                      "ترجمهٔ فارسی متن انگلیسی زیر چیست؟"),
    ("fa_en", "fa"): ("متن زیر را از فارسی به انگلیسی ترجمه کن.",
                      "این متن فارسی را به انگلیسی برگردان.",
                      "ترجمهٔ انگلیسی متن فارسی زیر چیست؟"),
}


def translation_instructions(pairs: Sequence[Pair], directions: Sequence[str], fa_wording_ratio: float,
                             seed: int, norm: NormalizerConfig | None = None) -> tuple[list[dict], dict]:
    """SFT examples ``{"instruction", "input", "output"}``: every pair once per direction, the instruction worded
    in Persian for ``fa_wording_ratio`` of them (exactly, per direction) and in English for the rest.

    Returns the shuffled examples and counts ``{"en_fa/fa": n, ...}`` (direction / wording language).
    """
    rng = random.Random(seed)
    examples, counts = [], Counter()
    for direction in directions:
        wordings = allocate(len(pairs), {"fa": fa_wording_ratio, "en": 1.0 - fa_wording_ratio}, rng)
        for pair, lang in zip(pairs, wordings):
            instruction = rng.choice(INSTRUCTIONS[(direction, lang)])
            if lang == "fa":
                instruction = normalize(instruction, norm)
            src, tgt = (pair.en, pair.fa) if direction == "en_fa" else (pair.fa, pair.en)
            examples.append({"instruction": instruction, "input": src, "output": tgt})
            counts[f"{direction}/{lang}"] += 1
    rng.shuffle(examples)
    return examples, dict(sorted(counts.items()))


def report_markdown(report: dict) -> str:
    """The human-readable form of the preparation report."""
    c = report["cleaning"]
    lines = ["# Parallel data report", "", f"Pairs read: {c['read']}; kept: {c['kept']}.", "",
             "## Dropped by filter (in the order applied; each pair counted once)", "",
             "| filter | dropped | why | first examples |", "| --- | ---: | --- | --- |"]
    for name, _, why in FILTERS:
        ex = ", ".join(f"`{e}`" for e in c["examples"].get(name, []))
        lines.append(f"| {name} | {c['dropped'][name]} | {why} | {ex} |")
    lines += ["", "## Per source", "", "| source | read | kept | skipped while reading |", "| --- | ---: | ---: | --- |"]
    for src, counts in c["by_source"].items():
        skipped = ", ".join(f"{k}={v}" for k, v in sorted(report["reading"].get(src, {}).items())
                            if k.startswith(("po_fuzzy", "po_untranslated", "po_obsolete", "manifest_")))
        lines.append(f"| {src} | {counts.get('read', 0)} | {counts.get('kept', 0)} | {skipped or '-'} |")
    p, s = report["pretraining"], report["sft"]
    lines += ["", "## Outputs", "",
              f"- `{p['file']}`: {p['documents']} documents; layouts requested {p['layouts']['requested']}, "
              f"written {p['layouts']['written']} (interleaving falls back to en_fa when sentence counts differ).",
              f"- `{s['file']}`: {s['examples']} translation instructions; direction/wording: {s['counts']}.",
              f"- `pairs.jsonl`: the {c['kept']} cleaned pairs with their origin.", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------------
# Arguments of data/prepare_parallel.py


@dataclass
class ParallelArguments:
    """Inputs, filters and output layouts of ``data/prepare_parallel.py``."""

    output_dir: str = field(metadata={"help": "Folder to create: pretrain/, sft/, pairs.jsonl, report.json/.md."})
    input: list[str] = field(default_factory=list, metadata={
        "help": "Parallel files or folders: .tsv (2 columns), .jsonl (en/fa fields), .po (msgid en, msgstr fa)."})
    source: list[str] = field(default_factory=list, metadata={
        "help": f"Bundled sources read from installed packages: {', '.join(BUNDLED_SOURCES)}. "
                "With neither --input nor --source, all bundled sources are read."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing, non-empty --output_dir."})
    tsv_columns: str = field(default="en,fa", metadata={"help": "Language of the TSV columns, in order."})
    en_field: str = field(default="en", metadata={"help": "JSONL field holding English."})
    fa_field: str = field(default="fa", metadata={"help": "JSONL field holding Persian."})
    layouts: str = field(default="en_fa=0.4,fa_en=0.4,interleaved=0.2", metadata={
        "help": "Share of pretraining documents per layout: en_fa (English line, then Persian), fa_en, "
                "interleaved (sentence by sentence). Weights are normalized."})
    directions: str = field(default="en_fa,fa_en", metadata={"help": "Translation directions of the SFT data."})
    instruction_fa_ratio: float = field(default=0.5, metadata={
        "help": "Share of translation instructions worded in Persian (the rest in English)."})
    sft_format: str = field(default="json", metadata={"help": "json (one list, the seed's format) or jsonl."})
    max_chars: int = field(default=FilterConfig.max_chars, metadata={"help": "Drop pairs with a longer side."})
    max_length_ratio: float = field(default=FilterConfig.max_length_ratio, metadata={
        "help": "Drop pairs whose longer side is more than this many times the shorter (in characters)."})
    ratio_min_chars: int = field(default=FilterConfig.ratio_min_chars, metadata={
        "help": "Apply --max_length_ratio only when the longer side has at least this many characters."})
    require_persian_script: bool = field(default=True, metadata={
        "help": "Drop pairs whose Persian side has no Arabic-script letter (untranslated copies)."})
    normalizer_dir: str | None = field(default=None, metadata={
        "help": "Tokenizer folder whose langadapt_normalizer.json normalizes the Persian side (default: the "
                "Persian defaults of langadapt.normalize)."})
    normalize: bool = field(default=True, metadata={"help": "Normalize the Persian side at all."})
    seed: int = field(default=42, metadata={"help": "Seed of layout/wording assignment and shuffling."})

    def __post_init__(self) -> None:
        self.layout_ratios = parse_ratios(self.layouts, LAYOUTS, "--layouts")
        self.tsv_column_order = parse_columns(self.tsv_columns)
        self.direction_list = [d.strip() for d in self.directions.split(",") if d.strip()]
        bad = [d for d in self.direction_list if d not in DIRECTIONS]
        if bad or not self.direction_list:
            raise ValueError(f"--directions: expected a comma list of {', '.join(DIRECTIONS)}, got {self.directions!r}")
        if not 0.0 <= self.instruction_fa_ratio <= 1.0:
            raise ValueError(f"--instruction_fa_ratio must be in [0, 1], got {self.instruction_fa_ratio}")
        if self.sft_format not in ("json", "jsonl"):
            raise ValueError(f"--sft_format must be json or jsonl, got {self.sft_format!r}")
        if self.max_chars < 1:
            raise ValueError(f"--max_chars must be >= 1, got {self.max_chars}")
        if self.max_length_ratio < 1.0:
            raise ValueError(f"--max_length_ratio must be >= 1, got {self.max_length_ratio}")
        unknown = [s for s in self.source if s not in BUNDLED_SOURCES]
        if unknown:
            raise ValueError(f"--source: unknown source(s) {unknown}; choose from {', '.join(BUNDLED_SOURCES)}")
        if not self.input and not self.source:
            self.source = list(BUNDLED_SOURCES)

    @property
    def filter_config(self) -> FilterConfig:
        return FilterConfig(max_chars=self.max_chars, max_length_ratio=self.max_length_ratio,
                            ratio_min_chars=self.ratio_min_chars, require_persian_script=self.require_persian_script)


def merge_repeated_flags(argv: Sequence[str], flags: Sequence[str]) -> list[str]:
    """``--source a --source b`` -> ``--source a b``: argparse's ``nargs="+"`` would keep only the last."""
    argv = list(argv)
    for flag in flags:
        values, rest, i = [], [], 0
        while i < len(argv):
            if argv[i] == flag:
                i += 1
                while i < len(argv) and not argv[i].startswith("--"):
                    values.append(argv[i])
                    i += 1
            else:
                rest.append(argv[i])
                i += 1
        argv = rest + ([flag, *values] if values or flag in argv else [])
    return argv


def write_parallel_data(args: ParallelArguments, out: str) -> dict:
    """Read, clean and turn into training data the pairs ``args`` names, written into the folder ``out``:

    ``pretrain/parallel.jsonl`` (documents), ``sft/translation.<sft_format>`` (instructions), ``pairs.jsonl`` (the
    cleaned pairs with their origin), ``report.json`` and ``report.md``. Returns the report. Bad input raises
    :class:`UsageError` (naming file:line, or the filter that left nothing) before anything is written.
    """
    norm = None
    if args.normalize:
        norm = NormalizerConfig.from_dir(args.normalizer_dir) if args.normalizer_dir else NormalizerConfig()
    logger.info("sources %s, inputs %s, layouts %s, normalizer %s", args.source, args.input, args.layout_ratios, norm)

    # 1. Read every pair (bad rows and unparsable catalogues stop here, naming file:line).
    files = resolve_files(args.input, "--input", PAIR_EXTENSIONS) if args.input else []
    pairs, reading = read_pairs(files, args.source, args.tsv_column_order, args.en_field, args.fa_field)
    logger.info("read %d pairs from %d sources", len(pairs), len(reading))

    # 2. Normalize and filter; nothing left -> error naming the filter that removed the last pairs.
    kept, cleaning = clean_pairs(pairs, args.filter_config, norm)
    logger.info("kept %d of %d pairs; dropped %s", len(kept), len(pairs), cleaning["dropped"])

    # 3. The two training sets.
    docs, layouts = pretraining_documents(kept, args.layout_ratios, args.seed)
    examples, sft_counts = translation_instructions(kept, args.direction_list, args.instruction_fa_ratio, args.seed,
                                                    norm)

    # 4. Write.
    sft_file = f"sft/translation.{args.sft_format}"
    report = {
        "reading": {k: dict(v) for k, v in reading.items()},
        "cleaning": cleaning,
        "pretraining": {"file": "pretrain/parallel.jsonl", "documents": len(docs), "layouts": layouts,
                        "ratios": args.layout_ratios},
        "sft": {"file": sft_file, "examples": len(examples), "counts": sft_counts},
        "normalizer": None if norm is None else dataclasses.asdict(norm),
    }
    write_jsonl(os.path.join(out, "pretrain", "parallel.jsonl"), docs)
    if args.sft_format == "json":
        write_json(os.path.join(out, sft_file), examples)
    else:
        write_jsonl(os.path.join(out, sft_file), examples)
    write_jsonl(os.path.join(out, "pairs.jsonl"), ({"en": p.en, "fa": p.fa, "origin": p.origin} for p in kept))
    write_json(os.path.join(out, "report.json"), report)
    write_text(os.path.join(out, "report.md"), report_markdown(report))
    return report
