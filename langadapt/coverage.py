"""Whether a prediction folder covers the test set it was made from.

inference/inference.py records its ``--data_dir`` in the prediction folder's ``run_args.json`` and writes one
``.jsonl`` file per test file, flushed batch by batch, so a killed or still-running job leaves files with only the
first records. Scoring those beside complete folders compares different subsets of the test set; :func:`coverage`
finds them (count and ids) so that ``score.py`` can refuse them, or show how many records each number stands on.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from langadapt.errors import InputError
from langadapt.evaldata import PREDICTION_EXTENSION, file_key, list_testsets, load_testset, prediction_path


@dataclass
class FileCoverage:
    """One test file: how many examples it has, and which ids have no prediction."""

    key: str
    expected: int
    missing_ids: list[int] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing_ids

    def describe(self) -> str:
        done = self.expected - len(self.missing_ids)
        ids = ", ".join(map(str, self.missing_ids[:5])) + (", ..." if len(self.missing_ids) > 5 else "")
        return f"{self.key}: {done} of {self.expected} records (missing ids {ids})"


def recorded_data_dir(predictions_dir: str) -> str | None:
    """The ``--data_dir`` that inference.py recorded in the folder's ``run_args.json`` (None when there is none)."""
    path = os.path.join(predictions_dir, "run_args.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            run_args = json.load(f)
    except (OSError, ValueError):
        return None
    inference = run_args.get("inference") if isinstance(run_args, dict) else None
    data_dir = inference.get("data_dir") if isinstance(inference, dict) else None
    return data_dir if isinstance(data_dir, str) else None


def coverage(predictions_dir: str, arg: str = "predictions_dir") -> list[FileCoverage] | None:
    """Coverage of every test file of the recorded ``--data_dir`` (None when the folder does not say which test set
    it was made from). A test set that no longer exists is an :class:`~langadapt.errors.InputError`."""
    data_dir = recorded_data_dir(predictions_dir)
    if data_dir is None:
        return None
    if not os.path.exists(data_dir):
        raise InputError(f"{predictions_dir}: its run_args.json names the test set {data_dir}, which does not exist "
                         "(moved?); completeness cannot be checked: pass --allow_incomplete to score anyway",
                         arg=arg, value=predictions_dir)
    from langadapt.evaldata import read_predictions

    result = []
    for path in list_testsets(data_dir):
        key = file_key(path, data_dir)
        ids = [ex.id for ex in load_testset(path)]
        pred = prediction_path(predictions_dir, key)
        have = {r["id"] for r in read_predictions(pred)} if os.path.isfile(pred) else set()
        result.append(FileCoverage(key, len(ids), [i for i in ids if i not in have]))
    return result


def check_complete(predictions_dir: str, arg: str = "predictions_dir") -> None:
    """Raise :class:`~langadapt.errors.InputError` naming every incomplete file of a prediction folder."""
    found = coverage(predictions_dir, arg)
    incomplete = [c for c in found or [] if not c.complete]
    if incomplete:
        raise InputError(
            f"{predictions_dir} is incomplete: " + "; ".join(c.describe() for c in incomplete)
            + f". Rerun inference/inference.py on it (it resumes), or pass --allow_incomplete to score the "
            f"{PREDICTION_EXTENSION} records there are", arg=arg, value=predictions_dir)
