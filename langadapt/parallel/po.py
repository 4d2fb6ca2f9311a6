"""gettext ``.po`` catalogues as English-Persian pairs: a small strict parser (``msgctxt``, multi-line strings,
C escapes, plural forms, obsolete ``#~`` entries); fuzzy and untranslated entries are skipped and counted."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from langadapt.errors import InputError
from langadapt.parallel.pairs import Pair, lines_without_bom


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


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
            "?": "?", "'": "'"}
_KEYWORD = re.compile(r"^(msgctxt|msgid_plural|msgid|msgstr(?:\[(\d+)\])?)\s+(\".*)$")


def _po_string(token: str, where: str) -> str:
    """Decode one quoted PO string (``"..."`` with C escapes, octal ``\\NNN`` and hex ``\\xHH``)."""
    token = token.strip()
    if len(token) < 2 or token[0] != '"' or token[-1] != '"':
        raise InputError(f"{where}: expected a string in double quotes, got {token[:40]!r}")
    body, out, i = token[1:-1], [], 0
    while i < len(body):
        c = body[i]
        if c == '"':
            raise InputError(f"{where}: unescaped double quote inside a string; write it as \\\"")
        if c != "\\":
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(body):
            raise InputError(f"{where}: string ends with a lone backslash")
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
            raise InputError(f"{where}: unknown escape \\{e} in a string")
    return "".join(out)


def parse_po(path: str) -> list[PoEntry]:
    """Parse a gettext ``.po`` file into entries (header and obsolete entries included, flagged).

    Strict: a string outside an entry, an unknown keyword, ``msgstr`` before ``msgid``, a plural entry without
    indexed ``msgstr[n]`` (or the reverse), or an entry without ``msgstr`` raise :class:`InputError` naming
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
            raise InputError(f"{path}:{cur.lineno}: entry has a msgid but no msgstr")
        if cur.msgid_plural is not None and set(cur.msgstr) != set(range(len(cur.msgstr))):
            raise InputError(f"{path}:{cur.lineno}: plural entry must have msgstr[0], msgstr[1], ... without gaps")
        entries.append(cur)
        cur = None

    for lineno, raw in lines_without_bom(path):
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
                raise InputError(f"{where}: a string continuation outside an entry; start it with msgid")
            name, idx = target
            text = _po_string(line, where)
            if name == "msgstr":
                cur.msgstr[idx] += text
            else:
                setattr(cur, name, getattr(cur, name) + text)
            continue
        m = _KEYWORD.match(line)
        if not m:
            raise InputError(f"{where}: cannot parse {line[:40]!r}; expected msgctxt, msgid, msgid_plural, msgstr "
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
                raise InputError(f"{where}: msgid_plural must follow msgid")
            cur.msgid_plural = value
            target = ("msgid_plural", 0)
        else:  # msgstr or msgstr[n]
            if cur is None or target is None or target[0] == "msgctxt":
                raise InputError(f"{where}: msgstr without a msgid before it")
            plural = cur.msgid_plural is not None
            if plural != (index is not None):
                raise InputError(f"{where}: " + ("a plural entry (msgid_plural) needs msgstr[N]" if plural
                                                 else "msgstr[N] needs a msgid_plural before it"))
            n = int(index) if index is not None else 0
            if n in cur.msgstr:
                raise InputError(f"{where}: msgstr[{n}] given twice")
            cur.msgstr[n] = value
            target = ("msgstr", n)
    finish()
    header = next((e for e in entries if e.msgid == "" and e.msgctxt is None and not e.obsolete), None)
    if header is not None:
        m = re.search(r"charset=([\w-]+)", header.msgstr.get(0, ""))
        if m and m.group(1).lower() not in ("utf-8", "utf8", "ascii", "us-ascii", "charset"):
            raise InputError(f"{path}:{header.lineno}: catalogue charset is {m.group(1)}; convert it with "
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
