"""The metadata files the stages write beside their outputs and read back: one place for their names and readers.

* ``langadapt_model.json`` (:class:`ModelInfo`): beside every model or adapter a training stage writes: the base
  model, the table size before and after the resize, the tokenizer size, the mode, the init, the adapter chain.
* ``langadapt_tokenizer.json``: beside a merged tokenizer (tokenizer/merge.py): base tokenizer, base vocabulary
  size, new token ids (:func:`tokenizer_info`).
* ``langadapt_normalizer.json`` (:data:`NORMALIZER_FILE`, read by :class:`langadapt.normalize.NormalizerConfig`) and
  ``langadapt_template.json`` (:data:`TEMPLATE_FILE`, :mod:`langadapt.templates`): pointers that travel with a
  tokenizer and model; :func:`copy_metadata` carries them to a saved model, since ``save_pretrained`` does not.
* ``adapter_config.json`` (:data:`ADAPTER_CONFIG`): PEFT's own; its presence makes a folder an adapter.

This module sits at the bottom of the package (it imports only :mod:`langadapt.io`, :mod:`langadapt.normalize` and
:mod:`langadapt.templates` for their file names), so every loader and stage can read these files without cycles.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langadapt.io import read_json, write_json
from langadapt.normalize import CONFIG_FILE as NORMALIZER_FILE
from langadapt.templates import TEMPLATE_FILE

MODEL_INFO_FILE = "langadapt_model.json"
TOKENIZER_INFO_FILE = "langadapt_tokenizer.json"
ADAPTER_CONFIG = "adapter_config.json"
# Records that travel with a tokenizer or model (save_pretrained writes only HF's own files).
METADATA_FILES = (NORMALIZER_FILE, TOKENIZER_INFO_FILE, TEMPLATE_FILE)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")


@dataclass
class ModelInfo:
    """Contents of ``langadapt_model.json`` (the model/adapter output folder; README, "Continued pretraining")."""

    base_model_name_or_path: str
    base_embedding_rows: int
    tokenizer_size: int
    embedding_rows: int
    training_mode: str
    embedding_init: str
    is_adapter: bool
    parent_adapters: list[str] = field(default_factory=list)
    # Full-model outputs only: adapters merged into these weights before training (provenance; do not re-apply).
    merged_adapters: list[str] = field(default_factory=list)

    def save(self, directory: str) -> str:
        path = os.path.join(directory, MODEL_INFO_FILE)
        write_json(path, dataclasses.asdict(self))
        return path

    @classmethod
    def from_dir(cls, directory: str) -> "ModelInfo | None":
        """The info saved in a model/adapter folder, or ``None`` when there is none (e.g. a hub base model)."""
        path = os.path.join(directory, MODEL_INFO_FILE)
        if not os.path.isfile(path):
            return None
        data = read_json(path)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def read_model_info(directory: str) -> ModelInfo | None:
    """Alias of :meth:`ModelInfo.from_dir` for callers that prefer a function."""
    return ModelInfo.from_dir(directory)


def tokenizer_info(tokenizer_dir: str) -> dict[str, Any] | None:
    """``langadapt_tokenizer.json`` of a merged tokenizer folder, or ``None`` (no folder, or no such file)."""
    path = os.path.join(tokenizer_dir, TOKENIZER_INFO_FILE)
    return read_json(path, "tokenizer_name_or_path") if os.path.isfile(path) else None


def is_adapter_dir(path: str) -> bool:
    """Whether ``path`` is a PEFT adapter folder."""
    return os.path.isfile(os.path.join(path, ADAPTER_CONFIG))


def has_tokenizer(path: str) -> bool:
    """Whether ``path`` holds a saved tokenizer."""
    return any(os.path.isfile(os.path.join(path, f)) for f in TOKENIZER_FILES)


def copy_metadata(sources: Sequence[str], out_dir: str, names: Sequence[str] = METADATA_FILES) -> list[str]:
    """Copy our records that travel with a tokenizer/model (normalizer, tokenizer info, template) into ``out_dir``.

    ``tokenizer.save_pretrained`` writes only HF files, so without this a saved model would lose the normalizer
    its tokenizer was built with. Each file comes from the first of ``sources`` that has it. Returns the copied names.
    """
    copied = []
    for name in names:
        for src in sources:
            path = os.path.join(src, name)
            if src and os.path.isfile(path):
                if os.path.abspath(path) != os.path.abspath(os.path.join(out_dir, name)):
                    shutil.copyfile(path, os.path.join(out_dir, name))
                copied.append(name)
                break
    return copied
