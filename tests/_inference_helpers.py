"""Shared pieces of the inference/scoring tests: small test sets and a one-thread torch guard."""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch
import _scripts  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTSET_DIR = os.path.join(REPO_ROOT, "data", "testset")


@pytest.fixture(autouse=False)
def one_thread():
    """Several helpers share two cores: torch's default thread pool then spins against other processes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_json_list(path, records) -> str:
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(records, f, ensure_ascii=False)
    return str(path)


def write_jsonl(path, records) -> str:
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return str(path)


def bundled(lang: str, stem: str, n: int | None = None) -> list[dict]:
    """Records of a bundled test file (the first ``n``)."""
    with open(os.path.join(TESTSET_DIR, lang, f"{stem}.json"), encoding="utf-8") as f:
        return json.load(f)[:n]


def read_jsonl(path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_script(relpath: str):
    """Import a stage script by its path, as the tests call its ``main``."""
    return _scripts.load_script(relpath)
