"""Checks that run before a model loads, so that bad input fails in seconds with one clear message.

Each check raises :class:`~langadapt.errors.InputError` carrying the argument it belongs to; the script layer turns
it into ``error: --flag: ...`` and exit status 2. What is checked here is what transformers would only notice after
the model loaded (an untrainable schedule, a negative learning rate, a missing logging integration) or not at all
before writing (an output path under a file, a read-only or full disk).
"""

from __future__ import annotations

import errno
import json
import importlib.util
import os
import struct
from typing import Any

from langadapt.errors import InputError
from langadapt.io import check_output_path  # noqa: F401  (a preflight check; lives with the other path rules)

# The Python module behind each --report_to integration, and the pip package that provides it.
REPORT_TO_MODULES: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
    "comet_ml": ("comet_ml", "comet-ml"),
    "neptune": ("neptune", "neptune"),
    "clearml": ("clearml", "clearml"),
    "dvclive": ("dvclive", "dvclive"),
    "codecarbon": ("codecarbon", "codecarbon"),
    "swanlab": ("swanlab", "swanlab"),
    "trackio": ("trackio", "trackio"),
    "dagshub": ("dagshub", "dagshub"),
    "azure_ml": ("azureml", "azureml-core"),
    "flyte": ("flytekit", "flytekit"),
    "kubeflow": ("kubeflow", "kubeflow-training"),
}
# Free space a training output needs beyond the model it writes (tokenizer, logs, optimizer-free files), bytes.
OUTPUT_SLACK_BYTES = 64 * 2**20


def check_schedule(max_steps: int, num_train_epochs: float, learning_rate: float) -> None:
    """A run must train something: ``--max_steps > 0`` or ``--num_train_epochs > 0``; and ``--learning_rate >= 0``."""
    if max_steps <= 0 and num_train_epochs <= 0:
        raise InputError(
            f"--max_steps {max_steps} and --num_train_epochs {num_train_epochs:g} train nothing; give "
            "--max_steps N (optimizer steps) or --num_train_epochs N (> 0)", arg="max_steps", value=max_steps)
    if not learning_rate >= 0:  # also NaN
        raise InputError(f"--learning_rate must be >= 0, got {learning_rate}", arg="learning_rate",
                         value=learning_rate)


def check_report_to(report_to: Any) -> None:
    """Every ``--report_to`` integration is installed (transformers would fail with a traceback after the model
    loaded)."""
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    for name in names:
        if name in ("none", "all") or name not in REPORT_TO_MODULES:
            continue  # "all" takes what is installed; transformers itself names unknown integrations
        module, package = REPORT_TO_MODULES[name]
        if importlib.util.find_spec(module) is None:
            raise InputError(f"--report_to {name}: the {module} package is not installed; `pip install {package}` "
                             "or pass --report_to none (or tensorboard)", arg="report_to", value=name)


def model_bytes(model_dir: str | None) -> int:
    """Size of a local model folder's weight files (0 when it is not a local folder): what saving a full copy takes."""
    if not model_dir or not os.path.isdir(model_dir):
        return 0
    return sum(os.path.getsize(os.path.join(model_dir, f)) for f in os.listdir(model_dir)
               if f.endswith((".safetensors", ".bin", ".pt")) and os.path.isfile(os.path.join(model_dir, f)))


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def check_model_path(path: str | None, arg: str = "model_name_or_path") -> None:
    """A model or adapter folder exists (offline, a name that is no folder cannot be a hub download either), and
    each of its safetensors files is whole: a truncated or corrupted one (a copy cut short, a full disk) otherwise
    fails inside the loader with a ``SafetensorError`` that names no file."""
    if not path:
        return
    flag = f"--{arg}"
    if not os.path.isdir(path):
        if os.path.exists(path):
            raise InputError(f"{flag}: {path} is a file; pass the model folder", arg=arg, value=path)
        if _offline() or path.startswith((".", "/", "~")) or path.count("/") > 1:
            raise InputError(f"{flag}: {path} does not exist; pass a model folder", arg=arg, value=path)
        return  # a hub id, downloaded when online

    for name in sorted(os.listdir(path)):
        if name.endswith(".safetensors") and not safetensors_complete(os.path.join(path, name)):
            raise InputError(f"{flag}: {os.path.join(path, name)} is truncated or corrupted (its header and size do "
                             "not agree); copy or download it again", arg=arg, value=path)


def check_training_run(training_args: Any, model_dir: str | None = None, training_mode: str | None = None,
                       peft_path: str | None = None) -> None:
    """Every check a training stage can make before its model loads: schedule and learning rate, ``--report_to``
    integrations, the model (and ``--peft_path``) folders, and the output folder (a full or embeddings-only run
    writes a whole model copy, so that much free space is required; an adapter is small)."""
    check_schedule(training_args.max_steps, training_args.num_train_epochs, training_args.learning_rate)
    check_model_path(model_dir, "model_name_or_path")
    check_model_path(peft_path, "peft_path")
    check_report_to(training_args.report_to)
    full_copy = training_mode in ("full", "embeddings")
    check_output_path(training_args.output_dir, "output_dir",
                      (model_bytes(model_dir) if full_copy else 0) + OUTPUT_SLACK_BYTES)


# The script a language's new vocabulary is for (the names of langadapt.vocab.SCRIPT_BLOCKS). A language not listed
# is not checked.
LANGUAGE_SCRIPTS: dict[str, str] = {
    "fa": "Arabic", "fas": "Arabic", "per": "Arabic", "persian": "Arabic", "ar": "Arabic", "ur": "Arabic",
    "ps": "Arabic", "ckb": "Arabic", "ru": "Cyrillic", "uk": "Cyrillic", "bg": "Cyrillic", "el": "Greek",
    "he": "Hebrew", "hy": "Armenian", "ka": "Georgian", "hi": "Devanagari", "mr": "Devanagari", "ne": "Devanagari",
    "bn": "Bengali", "ta": "Tamil", "th": "Thai", "am": "Ethiopic", "ko": "Hangul", "zh": "Han", "ja": "Han",
}


def check_corpus_script(lines: list[str], language: str, files: list[str], arg: str = "train_file") -> dict:
    """A corpus for a new vocabulary must be text of the language's script: refuse one with NUL bytes (a binary
    file given as text) or without a single letter of the script (an English-only corpus for ``--language fa``
    trains an add-on of English pieces that merge.py then drops). Returns ``{"script", "script_letters",
    "letters"}`` for the report (an empty dict when the language's script is not known)."""
    where = ", ".join(files)
    for i, line in enumerate(lines):
        if "\x00" in line:
            raise InputError(f"--{arg}: {where} holds NUL bytes (line {i + 1} of the text read); it looks like a "
                             "binary file, give UTF-8 text", arg=arg, value=files)
    script = LANGUAGE_SCRIPTS.get((language or "").lower())
    if script is None:
        return {}
    from langadapt.vocab import allowed_chars

    allowed = allowed_chars((script,))
    letters = in_script = 0
    for line in lines:
        for c in line:
            if c.isalpha():
                letters += 1
                in_script += c in allowed
    if in_script == 0:
        raise InputError(f"--{arg}: {where} holds no {script}-script letter ({letters} letters of other scripts), "
                         f"so it cannot train a --language {language} vocabulary; give {language} text or set "
                         "--language", arg=arg, value=files)
    return {"script": script, "script_letters": in_script, "letters": letters}


def describe_os_error(e: OSError) -> tuple[int, str] | None:
    """``(exit status, one-line message)`` for the file-system failures a user fixes (no traceback helps them): a
    full disk or quota (status 1: nothing was wrong with the input; the rerun resumes), a read-only file system or
    a permission refused (status 2: choose another path). None for any other error (a traceback then)."""
    where = f"{e.filename}: " if e.filename else ""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return 1, (f"{where}{e.strerror} (disk full or quota reached); free space and rerun the same command "
                   "(training resumes from its last checkpoint; outputs are written whole or not at all)")
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return 2, f"{where}{e.strerror}; choose a folder you can write to"
    return None


def safetensors_complete(path: str) -> bool:
    """Whether a safetensors file is whole: its header parses and the file is as long as the header says (a copy cut
    short or a save stopped by a full disk fails this; only the header is read, so it is cheap on 7B shards)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                return False
            (n,) = struct.unpack("<Q", raw)
            if n > size - 8:
                return False
            header = json.loads(f.read(n))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        return size >= 8 + n + end
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return False
