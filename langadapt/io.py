"""Reading text corpora and writing output folders safely.

Every stage reads plain files and writes plain folders. Two rules hold everywhere:

* Bad input stops the run with a :class:`~langadapt.errors.InputError` that names the file (and line) or the flag
  and says what to do. Nothing is skipped silently.
* Outputs appear whole or not at all: a folder is built under a temporary sibling name and renamed into place
  when the stage succeeds (:func:`atomic_output_dir`); single files are written to a temp file and renamed
  (:func:`write_json`, :func:`write_text`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from langadapt.errors import InputError

TEXT_EXTENSIONS = (".txt", ".jsonl")


def resolve_files(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    flag: str,
    extensions: Sequence[str] = TEXT_EXTENSIONS,
) -> list[str]:
    """Expand files and directories into a sorted list of input files.

    A directory contributes its files (recursively) whose names end in one of ``extensions``. ``flag`` names the
    command-line option in error messages. Raises :class:`InputError` when a path does not exist, a directory holds
    no matching file, or a file is empty.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise InputError(f"{flag}: no input given; pass a file or a directory of {'/'.join(extensions)} files")
    files: list[str] = []
    for p in map(str, paths):
        if os.path.isdir(p):
            found = sorted(
                os.path.join(root, name)
                for root, _, names in os.walk(p)
                for name in names
                if name.endswith(tuple(extensions)) and not name.startswith(".")
            )
            if not found:
                raise InputError(f"{flag}: directory {p} holds no {'/'.join(extensions)} files")
            files.extend(found)
        elif os.path.isfile(p):
            files.append(p)
        else:
            raise InputError(f"{flag}: {p} does not exist; pass an existing file or directory")
    for f in files:
        if os.path.getsize(f) == 0:
            raise InputError(f"{flag}: {f} is empty; remove it or fill it with text")
    return files


def iter_lines(path: str) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` (1-based, newline stripped) from a UTF-8 file.

    Raises :class:`InputError` naming the file, line and byte when the file is not valid UTF-8.
    """
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(
                    f"{path}:{lineno}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                    "re-encode the file as UTF-8, e.g. `iconv -f WINDOWS-1256 -t UTF-8 in.txt > out.txt`"
                ) from None
            yield lineno, line.rstrip("\r\n")


def iter_jsonl(path: str, hint: str = "a .jsonl file holds one JSON object per line") -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, value)`` for each non-blank line of a JSONL file (a byte-order mark before the first
    line is ignored). A line that is not JSON raises :class:`InputError` naming ``file:line``, followed by ``hint``
    (what the reader expected, or how to repair the file)."""
    for lineno, line in iter_lines(path):
        if lineno == 1:
            line = line.lstrip("\ufeff")  # editors on Windows write one; json.loads rejects it
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{lineno}: not valid JSON ({e.msg})" + (f"; {hint}" if hint else "")) from None
        yield lineno, value


def iter_documents(path: str, text_field: str = "text") -> Iterator[str]:
    """Yield the documents of one corpus file, unnormalized.

    ``.txt``: every non-blank line is a document. ``.jsonl``: every non-blank line is a JSON object whose
    ``text_field`` is the document. Malformed lines raise :class:`InputError` with the file and line.
    """
    is_jsonl = path.endswith(".jsonl")
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        if not is_jsonl:
            yield line
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{lineno}: not valid JSON ({e.msg}); each line must be one JSON object") from None
        if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
            raise InputError(f"{path}:{lineno}: expected an object with a string field {text_field!r}")
        if record[text_field].strip():
            yield record[text_field]


def iter_corpus(files: Sequence[str], text_field: str = "text") -> Iterator[str]:
    """Documents of several files, in order."""
    for f in files:
        yield from iter_documents(f, text_field)


def check_output_dir(path: str, overwrite: bool, flag: str = "--output_dir") -> None:
    """Refuse an existing, non-empty output folder unless ``overwrite``."""
    if os.path.isfile(path):
        raise InputError(f"{flag}: {path} is a file; give a folder path")
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        raise InputError(f"{flag}: {path} exists and is not empty; choose another folder or pass --overwrite")


@contextlib.contextmanager
def atomic_output_dir(path: str, overwrite: bool = False, flag: str = "--output_dir") -> Iterator[str]:
    """Build an output folder under a temporary sibling and move it into place on success.

    Yields the temporary folder to write into. On an exception the temporary folder is removed and ``path`` is
    left as it was. With ``overwrite`` an existing ``path`` is replaced only once the new folder is complete.
    """
    check_output_dir(path, overwrite, flag)
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if os.path.exists(path):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-", dir=parent)
        os.rename(path, os.path.join(old, "x"))
        os.rename(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, path)


def write_text(path: str, text: str) -> None:
    """Write a UTF-8 text file atomically (temp file in the same folder, then rename)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        # mkstemp creates the file 0600; outputs are shared with collaborators and later jobs, so make it 0644.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_json(path: str, obj: Any) -> None:
    """Write JSON (UTF-8, Persian kept readable) atomically."""
    write_text(path, json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n")


def write_jsonl(path: str, records: Iterable[Any]) -> None:
    """Write one JSON object per line (UTF-8, Persian kept readable) atomically."""
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def read_json(path: str, flag: str | None = None) -> Any:
    """Read a JSON file; a missing or malformed file raises :class:`InputError` naming it."""
    where = f"{flag}: " if flag else ""
    if not os.path.isfile(path):
        raise InputError(f"{where}{path} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except UnicodeDecodeError:
        raise InputError(f"{where}{path} is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{where}{path}:{e.lineno}: not valid JSON ({e.msg})") from None


def iter_json_records(path: str) -> Iterator[tuple[str, Any]]:
    """``(where, record)`` for each record of a ``.json`` list or a ``.jsonl`` file (one object a line).

    ``where`` names the record in later error messages: ``file: record 3`` (index in a ``.json`` list) or
    ``file:7`` (line of a ``.jsonl`` file, the form editors jump to). Malformed files raise :class:`InputError` naming the file and line.
    Used by every reader of instruction-style data (SFT sets, test sets), so they all fail the same way.
    """
    if path.endswith(".jsonl"):
        for lineno, record in iter_jsonl(path):
            yield f"{path}:{lineno}", record
        return
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; re-encode it as UTF-8") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); a .json file must be one list of objects "
                         "(name it .jsonl for one object a line)") from None
    if not isinstance(data, list):
        raise InputError(f"{path}: the top-level JSON value is a {type(data).__name__}; a .json file must hold a "
                         "list of objects (use .jsonl for one object a line)")
    for i, record in enumerate(data):
        yield f"{path}: record {i}", record
