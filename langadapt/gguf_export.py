"""A merged model folder to GGUF (llama.cpp, Ollama, LM Studio) with llama.cpp's own converter.

Why llama.cpp's converter and not ours: GGUF tensor names, tokenizer types and pre-tokenizer ids change with
llama.cpp releases; its ``convert_hf_to_gguf.py`` is the one program that knows them. It is not a PyPI package of
its own: the ``llama-cpp-python`` source distribution vendors llama.cpp, and :func:`fetch_converter` extracts the
converter (``convert_hf_to_gguf.py``, its ``conversion`` package and the matching ``gguf-py``) from that sdist,
pinned to :data:`LLAMA_CPP_PYTHON_VERSION`, into a cache folder. A llama.cpp checkout works too (``converter_dir``).

What :func:`export_gguf` does:

1. refuse a PEFT adapter folder (merge it first) and a folder without weights;
2. stage the folder for the converter: every file linked, ``tokenizer.json`` copied without the Persian normalizer
   (:mod:`langadapt.hf_normalizer`). llama.cpp ignores tokenizer normalizers, and the converter identifies a BPE
   pre-tokenizer by hashing the ids of a fixed text that contains a ZWJ, which our normalizer would change;
3. run the converter once per type (``f16``, ``q8_0``, ...), writing ``model-<type>.gguf``;
4. read each file back (``gguf.GGUFReader``): the vocabulary must equal the tokenizer's, the chat template must be
   the tokenizer's (the prompt SFT trained), and ``export_report.json`` records both.

A model the converter cannot represent (an architecture or a BPE pre-tokenizer it does not know) fails with the
converter's own reason and nothing is written.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass

from langadapt.errors import InputError
from langadapt.hf_normalizer import detach_normalizer
from langadapt.io import atomic_output_dir, write_json

logger = logging.getLogger(__name__)

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
CONVERTER = "convert_hf_to_gguf.py"
OUTTYPES = ("f32", "f16", "bf16", "q8_0")
REPORT_FILE = "export_report.json"


def cache_dir() -> str:
    """Where :func:`fetch_converter` puts the converter: ``$XDG_CACHE_HOME/langadapt`` (``~/.cache/langadapt``)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "langadapt", f"llama-cpp-python-{LLAMA_CPP_PYTHON_VERSION}")


def _is_converter_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, CONVERTER))


def find_converter(converter_dir: str | None = None) -> str | None:
    """The folder holding ``convert_hf_to_gguf.py``: ``converter_dir``, ``$LLAMA_CPP_DIR``, or the cache."""
    if converter_dir:
        if not _is_converter_dir(converter_dir):
            raise InputError(f"{converter_dir} has no {CONVERTER}; pass a llama.cpp checkout or leave it unset to "
                             f"fetch llama.cpp's converter from llama-cpp-python {LLAMA_CPP_PYTHON_VERSION}",
                             arg="converter_dir", value=converter_dir)
        return converter_dir
    for candidate in (os.environ.get("LLAMA_CPP_DIR"), cache_dir()):
        if candidate and _is_converter_dir(candidate):
            return candidate
    return None


def fetch_converter(dest: str | None = None) -> str:
    """Download the ``llama-cpp-python`` sdist with pip (no build) and extract llama.cpp's converter into ``dest``
    (default :func:`cache_dir`). Returns ``dest``."""
    dest = dest or cache_dir()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--dest", tmp,
               f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"]
        logger.info("fetching llama.cpp's converter: %s", " ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True)
        archives = glob.glob(os.path.join(tmp, "llama_cpp_python-*.tar.gz"))
        if proc.returncode != 0 or not archives:
            raise InputError(
                f"could not download llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} to get llama.cpp's converter "
                f"({proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'no archive'}); on a machine "
                "without network pass --converter_dir with a llama.cpp checkout", arg="converter_dir", value=None)
        staging = os.path.join(tmp, "extract")
        wanted = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")
        with tarfile.open(archives[0]) as tar:
            members = []
            for m in tar.getmembers():
                parts = m.name.split("/vendor/llama.cpp/", 1)
                if len(parts) == 2 and parts[1].startswith(wanted) and (m.isfile() or m.isdir()):
                    m.name = parts[1]
                    members.append(m)
            tar.extractall(staging, members=members, filter="data")
        if not _is_converter_dir(staging):
            raise InputError(f"the llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} sdist has no vendor/llama.cpp/"
                             f"{CONVERTER}", arg="converter_dir", value=None)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.rmtree(dest, ignore_errors=True)
        shutil.move(staging, dest)
    return dest


def _check_model_dir(model_dir: str) -> None:
    if not os.path.isdir(model_dir):
        raise InputError(f"{model_dir} does not exist; pass a merged model folder (inference/merge_lora.py)",
                         arg="model_dir", value=model_dir)
    if os.path.isfile(os.path.join(model_dir, "adapter_config.json")):
        raise InputError(f"{model_dir} is a PEFT adapter; GGUF needs the full weights: merge it first with "
                         f"inference/merge_lora.py --base_model BASE --lora_model {model_dir} --output_dir MERGED",
                         arg="model_dir", value=model_dir)
    if not glob.glob(os.path.join(model_dir, "*.safetensors")) and not glob.glob(os.path.join(model_dir, "*.bin")):
        raise InputError(f"{model_dir} holds no model weights (*.safetensors)", arg="model_dir", value=model_dir)


def stage_for_converter(model_dir: str, staging: str) -> str:
    """Link every file of ``model_dir`` into ``staging``; copy ``tokenizer.json`` without our normalizer."""
    os.makedirs(staging, exist_ok=True)
    for name in os.listdir(model_dir):
        src = os.path.join(os.path.abspath(model_dir), name)
        if name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(src, os.path.join(staging, name))
        elif os.path.isfile(src):
            os.symlink(src, os.path.join(staging, name))
    if os.path.isfile(os.path.join(staging, "tokenizer.json")):
        detach_normalizer(staging)
    return staging


def run_converter(converter_dir: str, model_dir: str, out_file: str, outtype: str) -> None:
    """``convert_hf_to_gguf.py MODEL --outfile OUT --outtype TYPE`` with the converter's own gguf-py first on the
    path; a failure raises InputError with the converter's last lines."""
    env = dict(os.environ)
    gguf_py = os.path.join(converter_dir, "gguf-py")
    if os.path.isdir(gguf_py):  # the PyPI gguf may be older than the converter (same version number, fewer names)
        env["PYTHONPATH"] = gguf_py + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, os.path.join(converter_dir, CONVERTER), model_dir, "--outfile", out_file,
           "--outtype", outtype]
    logger.info("running llama.cpp's converter: %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=converter_dir)
    if proc.returncode != 0 or not os.path.isfile(out_file):
        tail = "\n".join(proc.stderr.strip().splitlines()[-3:])
        raise InputError(f"llama.cpp's converter cannot represent this model as GGUF {outtype}: {tail}",
                         arg="model_dir", value=model_dir)


def read_gguf(path: str) -> dict:
    """Vocabulary, chat template, architecture and tensor count of a GGUF file (``gguf.GGUFReader``)."""
    from gguf import GGUFReader

    reader = GGUFReader(path)

    def field(name):
        f = reader.fields.get(name)
        return None if f is None else f.contents()

    return {"architecture": field("general.architecture"), "tokens": field("tokenizer.ggml.tokens"),
            "chat_template": field("tokenizer.chat_template"), "tokenizer_model": field("tokenizer.ggml.model"),
            "tokenizer_pre": field("tokenizer.ggml.pre"), "n_tensors": len(reader.tensors)}


@dataclass
class ExportReport:
    """What was written; ``export_report.json``."""

    model_dir: str
    files: dict[str, int]
    architecture: str | None
    tokenizer_model: str | None
    tokenizer_pre: str | None
    vocab_size: int
    chat_template_included: bool
    converter: str


def _check_gguf(path: str, tokenizer) -> dict:
    meta = read_gguf(path)
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    tokens = meta["tokens"] or []
    # Every id of the tokenizer (its reserved padding tokens included) must be the tokenizer's own (SentencePiece
    # pieces keep their ▁, byte-level pieces their byte-to-unicode form); rows past len(tokenizer), in folders
    # saved without reserved tokens, the converter fills with [PAD<id>] entries.
    if tokens[: len(vocab)] != vocab:
        first = next(i for i, (a, b) in enumerate(zip(tokens, vocab)) if a != b) if len(tokens) >= len(vocab) else -1
        raise InputError(f"{path}: the GGUF vocabulary differs from the tokenizer's (first at id {first}); "
                         "llama.cpp would tokenize differently", arg="model_dir", value=path)
    want = getattr(tokenizer, "chat_template", None)
    if want and meta["chat_template"] != want:
        raise InputError(f"{path}: the GGUF chat template is not the tokenizer's", arg="model_dir", value=path)
    return meta


def export_gguf(model_dir: str, output_dir: str, outtypes=("f16", "q8_0"), converter_dir: str | None = None,
                fetch: bool = True, overwrite: bool = False) -> ExportReport:
    """Convert a merged model folder into ``output_dir/model-<type>.gguf`` for each of ``outtypes``."""
    from transformers import AutoTokenizer

    _check_model_dir(model_dir)
    for t in outtypes:
        if t not in OUTTYPES:
            raise InputError(f"unknown GGUF type {t!r}; choose from {', '.join(OUTTYPES)}", arg="outtypes", value=t)
    converter = find_converter(converter_dir)
    if converter is None:
        if not fetch:
            raise InputError(f"llama.cpp's converter is not in {cache_dir()}; pass --converter_dir or allow "
                             "fetching it", arg="converter_dir", value=None)
        converter = fetch_converter()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with atomic_output_dir(output_dir, overwrite) as tmp, tempfile.TemporaryDirectory() as staging_root:
        staging = stage_for_converter(model_dir, os.path.join(staging_root, os.path.basename(
            os.path.normpath(model_dir))))
        files, meta = {}, {}
        for t in outtypes:
            out = os.path.join(tmp, f"model-{t}.gguf")
            run_converter(converter, staging, out, t)
            meta = _check_gguf(out, tokenizer)
            files[os.path.basename(out)] = os.path.getsize(out)
            logger.info("wrote %s (%.1f MB, %d tensors)", out, files[os.path.basename(out)] / 1e6, meta["n_tensors"])
        report = ExportReport(
            model_dir=os.path.abspath(model_dir), files=files, architecture=meta["architecture"],
            tokenizer_model=meta["tokenizer_model"], tokenizer_pre=meta["tokenizer_pre"],
            vocab_size=len(meta["tokens"] or []), chat_template_included=bool(meta["chat_template"]),
            converter=converter)
        write_json(os.path.join(tmp, REPORT_FILE), dataclasses.asdict(report))
        if os.path.isfile(os.path.join(model_dir, "langadapt_normalizer.json")):
            shutil.copyfile(os.path.join(model_dir, "langadapt_normalizer.json"),
                            os.path.join(tmp, "langadapt_normalizer.json"))
    return report


__all__ = ["ExportReport", "LLAMA_CPP_PYTHON_VERSION", "OUTTYPES", "cache_dir", "export_gguf", "fetch_converter",
           "find_converter", "read_gguf", "run_converter", "stage_for_converter"]
