"""Adapter lineage: what an adapter continued from, and refusing chains that apply the same training twice.

SFT with ``--peft_path outputs/pt`` and the adapter's own mode *continues* that adapter: the SFT adapter starts
from the pretraining weights and holds them, trained further. Applying ``outputs/pt,outputs/sft`` then adds the
pretraining delta twice (issue 13 measured a max logit change of 8.7, loss 7.21 -> 7.51) without any error. An
adapter trained on top of another *merged* one (another mode) is different: it needs that parent applied first.

Every adapter folder gets ``langadapt_lineage.json``::

    {"adapter_id": "3f2a...", "continued_from": [{"id": ..., "path": ...}, ...],   # nearest first
     "parents": [{"id": ..., "path": ...}, ...]}                                   # merged before training, in order

The id is random and travels with the folder (a copied adapter is the same adapter), the path is for messages.
Folders written before this file existed are read from their ``run_args.json`` (``--peft_path`` and the mode).

:func:`check_chain` refuses, naming both folders, a chain holding an adapter together with its own continuation
(either order), and a chain that puts a recorded parent after its child.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field

from langadapt.errors import InputError

LINEAGE_FILE = "langadapt_lineage.json"
# peft_type of the adapter each PEFT training mode produces (same table as langadapt.modeling.PEFT_TYPE_OF_MODE).
_PEFT_TYPE_OF_MODE = {"lora": "LORA", "new_rows": "TRAINABLE_TOKENS"}


@dataclass
class Lineage:
    """Contents of ``langadapt_lineage.json``; ``adapter_id`` is ``None`` for a folder of an older version."""

    adapter_id: str | None
    continued_from: list[dict] = field(default_factory=list)
    parents: list[dict] = field(default_factory=list)


def _read_json(path: str) -> dict | None:
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: not valid JSON ({e.msg}); delete it or re-save the adapter",
                             arg=None, value=path) from None


def _peft_type(adapter_dir: str) -> str:
    config = _read_json(os.path.join(adapter_dir, "adapter_config.json")) or {}
    return str(config.get("peft_type", ""))


def _record(adapter_dir: str) -> dict:
    return {"id": read_lineage(adapter_dir).adapter_id, "path": os.path.abspath(adapter_dir)}


def read_lineage(adapter_dir: str) -> Lineage:
    """The lineage of ``adapter_dir``; from ``run_args.json`` for folders written before lineage files existed."""
    data = _read_json(os.path.join(adapter_dir, LINEAGE_FILE))
    if data is not None:
        return Lineage(data.get("adapter_id"), list(data.get("continued_from", [])), list(data.get("parents", [])))
    run = _read_json(os.path.join(adapter_dir, "run_args.json")) or {}
    adaptation = run.get("adaptation") or {}
    peft_path, mode = adaptation.get("peft_path"), adaptation.get("training_mode")
    if not peft_path:
        return Lineage(None)
    # A relative --peft_path was relative to where training ran; the best guess is the adapter's own parent folder.
    candidates = [peft_path] if os.path.isabs(peft_path) else [peft_path, os.path.join(os.path.dirname(
        os.path.abspath(adapter_dir)), os.path.basename(os.path.normpath(peft_path)))]
    found = next((c for c in candidates if os.path.isdir(c)), candidates[0])
    rec = {"id": None, "path": os.path.abspath(found)}
    if os.path.isdir(found) and _PEFT_TYPE_OF_MODE.get(mode) == _peft_type(found):
        return Lineage(None, continued_from=[rec])
    return Lineage(None, parents=[rec])


def write_lineage(output_dir: str, peft_path: str | None, training_mode: str) -> Lineage:
    """Write ``langadapt_lineage.json`` for the adapter just saved in ``output_dir``.

    ``peft_path`` (``--peft_path``) is continued when ``training_mode`` trains the same adapter type, otherwise it
    was merged into the base before training and becomes the last parent. A rerun keeps the folder's id."""
    previous = _read_json(os.path.join(output_dir, LINEAGE_FILE)) or {}
    lineage = Lineage(previous.get("adapter_id") or uuid.uuid4().hex)
    if peft_path:
        parent = read_lineage(peft_path)
        rec = _record(peft_path)
        if _PEFT_TYPE_OF_MODE.get(training_mode) == _peft_type(peft_path):
            lineage.continued_from = [rec] + parent.continued_from
            lineage.parents = list(parent.parents)
        else:
            lineage.parents = list(parent.parents) + [rec]
    tmp = os.path.join(output_dir, LINEAGE_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"adapter_id": lineage.adapter_id, "continued_from": lineage.continued_from,
                   "parents": lineage.parents}, f, indent=2)
    os.replace(tmp, os.path.join(output_dir, LINEAGE_FILE))
    return lineage


def _same(rec: dict, adapter_dir: str, lineage: Lineage) -> bool:
    """Whether a recorded ancestor is ``adapter_dir``: the same id, or (ids unknown) the same real path."""
    if rec.get("id") and lineage.adapter_id:
        return rec["id"] == lineage.adapter_id
    return bool(rec.get("path")) and os.path.realpath(rec["path"]) == os.path.realpath(adapter_dir)


def check_chain(chain: list[str], arg: str = "lora_model") -> None:
    """Refuse a chain that applies an adapter together with its own continuation, or a parent after its child."""
    lineages = [read_lineage(a) for a in chain]
    for j, (later, lin) in enumerate(zip(chain, lineages)):
        for i, (other, other_lin) in enumerate(zip(chain, lineages)):
            if i == j:
                continue
            if any(_same(rec, other, other_lin) for rec in lin.continued_from):
                raise InputError(
                    f"{later} continues the adapter {other} (it started from {other}'s weights and holds them, "
                    f"trained further), so applying both applies {other}'s training twice; pass {later} alone",
                    arg=arg, value=",".join(chain))
            if i > j and any(_same(rec, other, other_lin) for rec in lin.parents):
                raise InputError(
                    f"{later} was trained on top of {other} (merged first), but the chain applies {other} after "
                    f"it; pass them in training order: {other},{later} (or {later} alone: its parents come along)",
                    arg=arg, value=",".join(chain))
