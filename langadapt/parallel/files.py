"""Pairs from TSV files (two columns, ``--tsv_columns`` gives their order) and JSONL files (``en``/``fa`` fields),
and :func:`read_pairs`, which reads every input file and bundled source."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence

from langadapt.errors import InputError
from langadapt.io import iter_jsonl
from langadapt.parallel.pairs import Pair, lines_without_bom
from langadapt.parallel.po import po_pairs
from langadapt.parallel.sources import BUNDLED_SOURCES


def parse_columns(spec: str) -> tuple[str, str]:
    """``"en,fa"`` or ``"fa,en"``: which TSV column holds which language."""
    cols = tuple(c.strip() for c in spec.split(","))
    if sorted(cols) != ["en", "fa"]:
        raise ValueError(f"--tsv_columns must be 'en,fa' or 'fa,en', got {spec!r}")
    return cols  # type: ignore[return-value]


def tsv_pairs(path: str, columns: tuple[str, str] = ("en", "fa")) -> list[Pair]:
    """Pairs of a two-column, tab-separated file. A first row naming the columns (``en<TAB>fa``) is a header.

    A non-blank row without exactly two columns raises :class:`InputError` naming ``file:line``.
    """
    out: list[Pair] = []
    for lineno, line in lines_without_bom(path):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != 2:
            raise InputError(f"{path}:{lineno}: expected 2 tab-separated columns ({columns[0]}, {columns[1]}), "
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
            raise InputError(f"{path}:{lineno}: expected an object with string fields {en_field!r} and {fa_field!r}")
        out.append(Pair(rec[en_field], rec[fa_field], f"{path}:{lineno}"))
    return out


def read_pairs(files: Sequence[str], sources: Sequence[str], tsv_columns: tuple[str, str] = ("en", "fa"),
               en_field: str = "en", fa_field: str = "fa") -> tuple[list[Pair], dict[str, Counter]]:
    """Read every input file and bundled source; return the pairs and per-source reading counts."""
    pairs: list[Pair] = []
    read_stats: dict[str, Counter] = {}
    for name in sources:
        if name not in BUNDLED_SOURCES:
            raise InputError(f"--source: unknown source {name!r}; choose from {', '.join(BUNDLED_SOURCES)}")
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
            raise InputError(f"--input: {path} is not .tsv, .jsonl or .po")
        pairs.extend(dataclasses.replace(p, source=path) for p in got)
    for name, stats in read_stats.items():
        stats["pairs_read"] = sum(p.source == name for p in pairs)
    return pairs, read_stats
