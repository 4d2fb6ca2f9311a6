"""Evaluation data: test sets in, prediction files out, and the task each file holds.

Test sets are ``.json`` files (one list of records) or ``.jsonl`` files (one record a line). A record is an object
with ``instruction`` (str, required), ``input`` (str, optional) and ``output`` (the gold answer: str, int or float;
optional for unlabeled sets). Its ``id`` is its index in the file. Every malformed file or record stops the run with
a :class:`~langadapt.errors.InputError` that names the file and the record.

Prediction files mirror the test files: ``<data_dir>/fa/sentiment.json`` gives ``<predictions_dir>/fa/sentiment.jsonl``
(the file's path under ``--data_dir``, without extension, is its *key*). Each line is ``{id, instruction, input,
prediction, gold}`` (``prediction`` = the model's response, None when the example failed; ``gold`` = the test file's
``output``), plus ``error`` when the example failed. Files written before these names existed (``output`` = the
model's response, ``answer`` = gold) are still read: :func:`upgrade_prediction_record` renames their fields. Records
are appended batch by batch so a killed run loses nothing it finished; :func:`open_predictions` repairs a file cut
mid-line, drops failed records (to retry them) and refuses a file written for another test set.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any, TextIO

from langadapt.errors import InputError
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
    """One test record. ``gold`` is the file's ``output`` (the gold answer) as written (None when absent)."""

    id: int
    instruction: str
    input: str
    gold: Any = None


def task_of(key: str, override: str | None = None) -> str | None:
    """The task family of a test/prediction file (from its name), ``override`` when given, else None."""
    if override:
        if override not in TASKS:
            raise InputError(f"--task: unknown task {override!r}; choose one of {', '.join(TASKS)}", arg="task",
                             value=override)
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
    return resolve_files(data_dir, "data_dir", TESTSET_EXTENSIONS)


def file_key(path: str, root: str) -> str:
    """The key of a file under ``root``: its relative path without extension, with ``/`` separators."""
    rel = os.path.relpath(path, root) if os.path.isdir(root) else os.path.basename(path)
    return os.path.splitext(rel)[0].replace(os.sep, "/")


def load_testset(path: str) -> list[Example]:
    """Read and validate one test file; ids are record indices."""
    examples = []
    for i, (where, rec) in enumerate(iter_json_records(path)):
        if not isinstance(rec, dict):
            raise InputError(f"{where}: expected a JSON object with \"instruction\", got {type(rec).__name__}")
        instruction = rec.get("instruction")
        if not isinstance(instruction, str) or not instruction.strip():
            got = "missing" if "instruction" not in rec else f"{type(instruction).__name__} {instruction!r:.40}"
            raise InputError(f"{where}: \"instruction\" must be a non-empty string ({got})")
        inp = rec.get("input") or ""
        if not isinstance(inp, str):
            raise InputError(f"{where}: \"input\" must be a string, got {type(inp).__name__}")
        gold = rec.get("output")
        if gold is not None and not isinstance(gold, (str, int, float)):
            raise InputError(f"{where}: \"output\" (the gold answer) must be a string or a number, "
                             f"got {type(gold).__name__}")
        examples.append(Example(i, instruction, inp, gold))
    if not examples:
        raise InputError(f"{path}: holds no records; remove the file or add records")
    return examples


def prediction_path(predictions_dir: str, key: str) -> str:
    """Where the predictions for the test file with ``key`` go."""
    return os.path.join(predictions_dir, *key.split("/")) + PREDICTION_EXTENSION


def prediction_record(ex: Example, prediction: str | None, error: str | None = None) -> dict[str, Any]:
    """One prediction line: ``{id, instruction, input, prediction, gold}`` (+ ``error``)."""
    rec = {"id": ex.id, "instruction": ex.instruction, "input": ex.input, "prediction": prediction, "gold": ex.gold}
    if error is not None:
        rec["error"] = error
    return rec


# Field names of prediction files written before ``prediction``/``gold``: the model's response, the gold answer.
_LEGACY_FIELDS = {"output": "prediction", "answer": "gold"}


def upgrade_prediction_record(rec: dict[str, Any]) -> dict[str, Any]:
    """``rec`` with the current field names: an old record's ``output``/``answer`` become ``prediction``/``gold``.

    A record that already has ``prediction`` is returned unchanged (its ``output``, if any, is not the model's).
    """
    if "prediction" in rec or "output" not in rec:
        return rec
    return {_LEGACY_FIELDS.get(k, k): v for k, v in rec.items()}


def _is_prediction(rec: Any) -> bool:
    return isinstance(rec, dict) and isinstance(rec.get("id"), int) and ("prediction" in rec or "output" in rec)


def read_predictions(path: str) -> list[dict[str, Any]]:
    """Records of a prediction file with the current field names, validated (object with int ``id`` and
    ``prediction``, or an old record with ``output``; no duplicate id)."""
    records: list[dict[str, Any]] = []
    seen: set[int] = set()
    for lineno, rec in iter_jsonl(path, "rerun inference/inference.py on this folder to repair the file"):
        if not _is_prediction(rec):
            raise InputError(f"{path}:{lineno}: expected a prediction record with an integer \"id\" and "
                             "\"prediction\"", value=rec)
        if rec["id"] in seen:
            raise InputError(f"{path}:{lineno}: id {rec['id']} appears twice")
        seen.add(rec["id"])
        records.append(upgrade_prediction_record(rec))
    return records


def open_predictions(path: str, examples: list[Example]) -> tuple[TextIO, set[int]]:
    """Open a prediction file for appending and return it with the ids it already holds (finished ones).

    A line cut by a kill is dropped, records with an ``error`` are dropped so the run retries them, old records get
    the current field names (so one file never mixes both), and the file is rewritten (atomically) when any of
    these happened. A record whose ``instruction``/``input`` differ from the test
    record with the same id means the file belongs to another test set: :class:`InputError`.
    """
    kept: list[str] = []
    done: set[int] = set()
    changed = False
    if os.path.isfile(path):
        for lineno, line in iter_lines(path):
            try:
                rec = json.loads(line)
                ok = _is_prediction(rec)
            except json.JSONDecodeError:
                ok = False
            if not ok or "error" in rec or rec["id"] in done:
                changed = True  # a partial last line, a failed example to retry, or a duplicate
                continue
            i = rec["id"]
            if i >= len(examples) or (rec.get("instruction"), rec.get("input")) != (
                examples[i].instruction, examples[i].input
            ):
                raise InputError(f"{path}:{lineno}: record id {i} does not match the test file's record {i}; this "
                                 "prediction file was written for another test set; use a new --predictions_dir")
            upgraded = upgrade_prediction_record(rec)
            if upgraded is not rec:
                line, changed = json.dumps(upgraded, ensure_ascii=False), True
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
