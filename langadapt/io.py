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
import logging
import math
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from langadapt.errors import InputError

logger = logging.getLogger(__name__)

TEXT_EXTENSIONS = (".txt", ".jsonl")
# When this process started (module import is early in every stage): temporary folders of our naming older than
# this, left by a process that is gone, are stale (see remove_stale_temps).
PROCESS_START = time.time()


def _arg_name(arg: str) -> str:
    """An argument field name; a ``--flag`` spelling (older callers) is accepted and stripped."""
    return arg.lstrip("-")


def resolve_files(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    arg: str,
    extensions: Sequence[str] = TEXT_EXTENSIONS,
) -> list[str]:
    """Expand files and directories into a sorted list of input files.

    A directory contributes its files (recursively) whose names end in one of ``extensions``. ``arg`` is the
    argument the paths came from (carried by the :class:`InputError` raised when a path does not exist, a directory
    holds no matching file, or a file is empty).
    """
    arg = _arg_name(arg)
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise InputError(f"--{arg}: no input given; pass a file or a directory of {'/'.join(extensions)} files",
                         arg=arg, value=paths)
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
                raise InputError(f"--{arg}: directory {p} holds no {'/'.join(extensions)} files", arg=arg, value=p)
            files.extend(found)
        elif os.path.isfile(p):
            files.append(p)
        else:
            raise InputError(f"--{arg}: {p} does not exist; pass an existing file or directory", arg=arg, value=p)
    for f in files:
        if os.path.getsize(f) == 0:
            raise InputError(f"--{arg}: {f} is empty; remove it or fill it with text", arg=arg, value=f)
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


def check_output_dir(path: str, overwrite: bool, arg: str = "output_dir",
                     overwrite_arg: str = "overwrite_output_dir") -> None:
    """Refuse an existing, non-empty output folder unless ``overwrite`` (the argument for it is ``overwrite_arg``,
    named in the advice), and an output path that cannot become a folder. ``arg``: the argument ``path`` came from."""
    arg, overwrite_arg = _arg_name(arg), _arg_name(overwrite_arg)
    if os.path.isfile(path):
        raise InputError(f"--{arg}: {path} is a file; give a folder path", arg=arg, value=path)
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        raise InputError(f"--{arg}: {path} exists and is not empty; choose another folder or pass --{overwrite_arg}",
                         arg=arg, value=path)
    check_output_path(path, arg)  # under a file, read-only


def _existing_ancestor(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_output_path(path: str, arg: str = "output_dir", required_bytes: int = 0) -> None:
    """``path`` can become an output folder: no part of it is a file, the nearest existing folder is writable, and
    (when ``required_bytes`` is known) its file system has that much free space."""
    flag = f"--{arg}"
    if os.path.isfile(path):
        raise InputError(f"{flag}: {path} is a file; give a folder path", arg=arg, value=path)
    ancestor = _existing_ancestor(path)
    if not os.path.isdir(ancestor):
        raise InputError(f"{flag}: {ancestor} is a file, so {path} cannot be created under it; give a folder path",
                         arg=arg, value=path)
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"{flag}: {ancestor} is not writable (read-only file system or no permission); choose "
                         "another folder", arg=arg, value=path)
    if required_bytes > 0:
        free = shutil.disk_usage(ancestor).free
        if free < required_bytes:
            raise InputError(
                f"{flag}: {ancestor} has {free / 2**30:.2f} GiB free, the outputs need about "
                f"{required_bytes / 2**30:.2f} GiB; free space or choose another folder", arg=arg, value=path)


def current_umask() -> int:
    """The process umask (read from /proc where possible: setting it to read it is not thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def honour_umask(path: str) -> None:
    """Give ``path`` (a file, or a folder and everything under it) the modes a plain ``mkdir``/``open`` would have:
    folders ``0777 & ~umask``, files ``0666 & ~umask`` (``0777 & ~umask`` when the owner may execute them).

    ``tempfile.mkdtemp`` makes folders 0700 and safetensors writes its files 0600 whatever the umask, so on a shared
    disk colleagues and later jobs of other users got "Permission denied". Entries owned by another user are left
    alone (only the owner may chmod them).
    """
    mask = current_umask()
    dir_mode, file_mode, exec_mode = 0o777 & ~mask, 0o666 & ~mask, 0o777 & ~mask
    uid = os.getuid()

    def fix(p: str, is_dir: bool) -> None:
        try:
            st = os.lstat(p)
            if st.st_uid != uid or os.path.islink(p):
                return
            mode = dir_mode if is_dir else (exec_mode if st.st_mode & 0o100 else file_mode)
            if st.st_mode & 0o7777 != mode:
                os.chmod(p, mode)
        except FileNotFoundError:  # removed meanwhile (a rotated checkpoint)
            pass

    if not os.path.isdir(path):
        if os.path.exists(path):
            fix(path, False)
        return
    fix(path, True)
    for root, dirs, files in os.walk(path):
        for d in dirs:
            fix(os.path.join(root, d), True)
        for f in files:
            fix(os.path.join(root, f), False)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def temp_prefix(path: str, kind: str = "tmp") -> str:
    """Name prefix of our temporary siblings of ``path``: ``.<name>.<kind>-<host>-<pid>-`` (host and pid let a later
    run tell a dead writer's leftovers from a live one's)."""
    host = socket.gethostname().split(".")[0].replace("-", "_") or "host"
    return f".{os.path.basename(os.path.abspath(path))}.{kind}-{host}-{os.getpid()}-"


def remove_stale_temps(path: str) -> list[str]:
    """Remove the temporary siblings of ``path`` that an earlier, killed run of the same stage left behind.

    A sibling named ``.<name>.tmp-...`` or ``.<name>.old-...`` (:func:`atomic_output_dir`'s) is stale when it was
    last changed before this process started and its writer is gone: a dead pid on this host, or any other host
    (a job on another node that still writes the same output would be a conflict anyway). A killed merge of a 7B
    model leaves ~14 GB this way. Returns the removed paths.
    """
    path = os.path.abspath(path)
    parent, name = os.path.dirname(path), os.path.basename(path)
    if not os.path.isdir(parent):
        return []
    host = socket.gethostname().split(".")[0].replace("-", "_") or "host"
    removed = []
    for entry in os.listdir(parent):
        for kind in ("tmp", "old"):
            prefix = f".{name}.{kind}-"
            if not entry.startswith(prefix):
                continue
            full = os.path.join(parent, entry)
            try:
                if os.stat(full).st_mtime >= PROCESS_START:
                    continue
            except FileNotFoundError:
                continue
            parts = entry[len(prefix):].split("-")
            # Our naming: <host>-<pid>-<random>; the older <random>-only naming has no owner to ask.
            if len(parts) >= 3 and parts[1].isdigit() and parts[0] == host and _pid_alive(int(parts[1])):
                continue
            shutil.rmtree(full, ignore_errors=True) if os.path.isdir(full) else os.remove(full)
            removed.append(full)
            logger.warning("removed %s, left by an earlier run of this stage that did not finish", full)
    return removed


def remove_dead_writers_temps(directory: str, kind: str) -> list[str]:
    """Remove the ``.<kind>-<host>-<pid>-*`` folders in a shared ``directory`` (a data cache) whose writer was on
    this host and is gone (killed before it could clean up). Folders of live processes, and of other hosts (jobs that
    may still be writing another entry of the same cache), are kept. Returns the removed paths."""
    if not os.path.isdir(directory):
        return []
    host = socket.gethostname().split(".")[0].replace("-", "_") or "host"
    prefix = f".{kind}-{host}-"
    removed = []
    for entry in os.listdir(directory):
        pid = entry[len(prefix):].split("-")[0]
        if entry.startswith(prefix) and pid.isdigit() and not _pid_alive(int(pid)):
            full = os.path.join(directory, entry)
            shutil.rmtree(full, ignore_errors=True)
            removed.append(full)
            logger.warning("removed %s, left by a killed run on this host", full)
    return removed


def owned_temp_dir(directory: str, kind: str) -> str:
    """``tempfile.mkdtemp`` in ``directory`` named ``.<kind>-<host>-<pid>-*``, so that a later run can tell a killed
    writer's leftovers (:func:`remove_dead_writers_temps`, called first) from a live one's."""
    remove_dead_writers_temps(directory, kind)
    host = socket.gethostname().split(".")[0].replace("-", "_") or "host"
    return tempfile.mkdtemp(prefix=f".{kind}-{host}-{os.getpid()}-", dir=directory)


@contextlib.contextmanager
def atomic_output_dir(path: str, overwrite: bool = False, arg: str = "output_dir",
                      overwrite_arg: str = "overwrite_output_dir") -> Iterator[str]:
    """Build an output folder under a temporary sibling and move it into place on success.

    Yields the temporary folder to write into. On an exception the temporary folder is removed and ``path`` is
    left as it was. With ``overwrite`` an existing ``path`` is replaced only once the new folder is complete.
    Temporary siblings that an earlier killed run left are removed first (:func:`remove_stale_temps`), and the
    finished folder has the modes the umask asks for (:func:`honour_umask`).
    """
    check_output_dir(path, overwrite, arg, overwrite_arg)
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    remove_stale_temps(path)
    tmp = tempfile.mkdtemp(prefix=temp_prefix(path), dir=parent)
    try:
        yield tmp
        honour_umask(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if os.path.exists(path):
        old = tempfile.mkdtemp(prefix=temp_prefix(path, "old"), dir=parent)
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
        # mkstemp creates the file 0600; outputs are shared with collaborators and later jobs: the umask decides.
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def json_safe(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by ``None`` (JSON ``null``), in nested dicts, lists and
    tuples. ``json.dumps`` writes them as ``NaN``/``Infinity``, which is not JSON: ``jq``, JavaScript and most
    readers other than Python's reject the whole file."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if type(obj).__module__ == "numpy" and hasattr(obj, "item"):  # numpy scalars (metrics often are)
        return json_safe(obj.item())
    return obj


def dumps_json(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` that never writes ``NaN``/``Infinity`` (see :func:`json_safe`); Persian kept readable."""
    kwargs.setdefault("ensure_ascii", False)
    return json.dumps(json_safe(obj), allow_nan=False, **kwargs)


def write_json(path: str, obj: Any) -> None:
    """Write JSON (UTF-8, Persian kept readable) atomically; non-finite numbers become ``null``."""
    write_text(path, dumps_json(obj, indent=2, default=str) + "\n")


def write_jsonl(path: str, records: Iterable[Any]) -> None:
    """Write one JSON object per line (UTF-8, Persian kept readable) atomically; non-finite numbers become ``null``."""
    write_text(path, "".join(dumps_json(r) + "\n" for r in records))


def read_json(path: str, arg: str | None = None) -> Any:
    """Read a JSON file; a missing or malformed file raises :class:`InputError` naming it (and carrying ``arg``, the
    argument the path came from, when there is one)."""
    arg = _arg_name(arg) if arg else None
    where = f"--{arg}: " if arg else ""
    if not os.path.isfile(path):
        raise InputError(f"{where}{path} does not exist", arg=arg, value=path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except UnicodeDecodeError:
        raise InputError(f"{where}{path} is not UTF-8 text", arg=arg, value=path) from None
    except json.JSONDecodeError as e:
        raise InputError(f"{where}{path}:{e.lineno}: not valid JSON ({e.msg})", arg=arg, value=path) from None


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
