"""Evaluation data: test sets in, prediction files out, and the task each file holds.

Test sets are ``.json`` files (one list of records) or ``.jsonl`` files (one record a line). A record is an object
with ``instruction`` (str, required), ``input`` (str, optional) and ``output`` (the gold answer: str, int or float;
optional for unlabeled sets). Its ``id`` is its index in the file. Every malformed file or record stops the run with
a :class:`~langadapt.cli.UsageError` that names the file and the record.

Prediction files mirror the test files: ``<data_dir>/fa/sentiment.json`` gives ``<predictions_dir>/fa/sentiment.jsonl``
(the file's path under ``--data_dir``, without extension, is its *key*). Each line is ``{id, instruction, input, output,
answer}`` (``output`` = the model's response, ``answer`` = gold), plus ``error`` when the example failed. They are
appended batch by batch so a killed run loses nothing it finished; :func:`open_predictions` repairs a file cut
mid-line, drops failed records (to retry them) and refuses a file written for another test set.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any, TextIO

from langadapt.cli import UsageError
from langadapt.io import iter_json_records, iter_jsonl, iter_lines, resolve_files, write_jsonl, write_text

TESTSET_EXTENSIONS = (".json", ".jsonl")
PREDICTION_EXTENSION = ".jsonl"

CLASSIFICATION_TASKS = ("entailment", "multiple_choice", "sentiment")
GENERATION_TASKS = ("summary", "translation")
TASKS = CLASSIFICATION_TASKS + GENERATION_TASKS

# File-name spellings of each task, tried in this order on the lower-cased file stem.
_TASK_PATTERNS = (
    ("multiple_choice", re.compile(r"multiple[_-]?choice|(^|[_-])mcq?($|[_-])")),
    ("entailment", re.compile(r"entailment|(^|[_-])nli($|[_-])")),
    ("sentiment", re.compile(r"sentiment")),
    ("summary", re.compile(r"summar")),
    ("translation", re.compile(r"translat")),
)
_DIRECTION = re.compile(r"([a-z]{2,3})[_-]([a-z]{2,3})$")


@dataclass(frozen=True)
class Example:
    """One test record. ``answer`` is the gold ``output`` as written in the file (None when absent)."""

    id: int
    instruction: str
    input: str
    answer: Any = None


def task_of(key: str, override: str | None = None) -> str | None:
    """The task family of a test/prediction file (from its name), ``override`` when given, else None."""
    if override:
        if override not in TASKS:
            raise UsageError(f"--task: unknown task {override!r}; choose one of {', '.join(TASKS)}")
        return override
    stem = os.path.basename(key).lower()
    for task, pattern in _TASK_PATTERNS:
        if pattern.search(stem):
            return task
    return None


def translation_target(key: str) -> str | None:
    """Target language of a ``translation_xx_yy`` file (``yy``), or None when the name gives no direction."""
    m = _DIRECTION.search(os.path.basename(key).lower())
    return m.group(2) if m else None


def language_of(key: str) -> str | None:
    """Language of a file key ``fa/sentiment`` -> ``fa`` (the folder it sits in), None for a bare stem."""
    parts = key.replace(os.sep, "/").split("/")
    return parts[-2] if len(parts) > 1 else None


def list_testsets(data_dir: str) -> list[str]:
    """All ``.json``/``.jsonl`` test files under ``data_dir`` (recursively, sorted)."""
    return resolve_files(data_dir, "--data_dir", TESTSET_EXTENSIONS)


def file_key(path: str, root: str) -> str:
    """The key of a file under ``root``: its relative path without extension, with ``/`` separators."""
    rel = os.path.relpath(path, root) if os.path.isdir(root) else os.path.basename(path)
    return os.path.splitext(rel)[0].replace(os.sep, "/")


def load_testset(path: str) -> list[Example]:
    """Read and validate one test file; ids are record indices."""
    examples = []
    for i, (where, rec) in enumerate(iter_json_records(path)):
        if not isinstance(rec, dict):
            raise UsageError(f"{where}: expected a JSON object with \"instruction\", got {type(rec).__name__}")
        instruction = rec.get("instruction")
        if not isinstance(instruction, str) or not instruction.strip():
            got = "missing" if "instruction" not in rec else f"{type(instruction).__name__} {instruction!r:.40}"
            raise UsageError(f"{where}: \"instruction\" must be a non-empty string ({got})")
        inp = rec.get("input") or ""
        if not isinstance(inp, str):
            raise UsageError(f"{where}: \"input\" must be a string, got {type(inp).__name__}")
        answer = rec.get("output")
        if answer is not None and not isinstance(answer, (str, int, float)):
            raise UsageError(f"{where}: \"output\" (the gold answer) must be a string or a number, "
                             f"got {type(answer).__name__}")
        examples.append(Example(i, instruction, inp, answer))
    if not examples:
        raise UsageError(f"{path}: holds no records; remove the file or add records")
    return examples


def prediction_path(predictions_dir: str, key: str) -> str:
    """Where the predictions for the test file with ``key`` go."""
    return os.path.join(predictions_dir, *key.split("/")) + PREDICTION_EXTENSION


def prediction_record(ex: Example, output: str | None, error: str | None = None) -> dict[str, Any]:
    """One prediction line: ``{id, instruction, input, output, answer}`` (+ ``error``)."""
    rec = {"id": ex.id, "instruction": ex.instruction, "input": ex.input, "output": output, "answer": ex.answer}
    if error is not None:
        rec["error"] = error
    return rec


def read_predictions(path: str) -> list[dict[str, Any]]:
    """Records of a prediction file, validated (object with int ``id`` and ``output``; no duplicate id)."""
    records: list[dict[str, Any]] = []
    seen: set[int] = set()
    for lineno, rec in iter_jsonl(path, "rerun inference/inference.py on this folder to repair the file"):
        if not isinstance(rec, dict) or not isinstance(rec.get("id"), int) or "output" not in rec:
            raise UsageError(f"{path}:{lineno}: expected a prediction record with an integer \"id\" and \"output\"")
        if rec["id"] in seen:
            raise UsageError(f"{path}:{lineno}: id {rec['id']} appears twice")
        seen.add(rec["id"])
        records.append(rec)
    return records


def open_predictions(path: str, examples: list[Example]) -> tuple[TextIO, set[int]]:
    """Open a prediction file for appending and return it with the ids it already holds (finished ones).

    A line cut by a kill is dropped, records with an ``error`` are dropped so the run retries them, and the file is
    rewritten (atomically) when either happened. A record whose ``instruction``/``input`` differ from the test
    record with the same id means the file belongs to another test set: :class:`UsageError`.
    """
    kept: list[str] = []
    done: set[int] = set()
    changed = False
    if os.path.isfile(path):
        for lineno, line in iter_lines(path):
            try:
                rec = json.loads(line)
                ok = isinstance(rec, dict) and isinstance(rec.get("id"), int) and "output" in rec
            except json.JSONDecodeError:
                ok = False
            if not ok or "error" in rec or rec["id"] in done:
                changed = True  # a partial last line, a failed example to retry, or a duplicate
                continue
            i = rec["id"]
            if i >= len(examples) or (rec.get("instruction"), rec.get("input")) != (
                examples[i].instruction, examples[i].input
            ):
                raise UsageError(f"{path}:{lineno}: record id {i} does not match the test file's record {i}; this "
                                 "prediction file was written for another test set; use a new --predictions_dir")
            kept.append(line)
            done.add(i)
        if changed:
            write_text(path, "".join(line + "\n" for line in kept))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return open(path, "a", encoding="utf-8"), done


def append_records(f: TextIO, records: list[dict[str, Any]]) -> None:
    """Append records and flush them to disk, so a kill after this call loses none of them."""
    f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    f.flush()
    os.fsync(f.fileno())


def sort_prediction_file(path: str) -> None:
    """Rewrite a finished prediction file in id order (batches are written in length order)."""
    records = sorted(read_predictions(path), key=lambda r: r["id"])
    write_jsonl(path, records)
