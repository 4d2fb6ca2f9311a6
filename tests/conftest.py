"""Shared fixtures: real Persian/English text and tiny tokenizers/models built in the test session (offline)."""

import os
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Test fixtures (tests/tiny.py) and the demo's modules (demo/) are not part of the shipped package: import them by
# name from their folders.
for _folder in ("tests", "demo"):
    if os.path.join(REPO_ROOT, _folder) not in sys.path:
        sys.path.insert(0, os.path.join(REPO_ROOT, _folder))

import tiny  # noqa: E402

# Tiny models spend more time in thread hand-offs than in math: one thread is several times faster, and keeps the
# suite fast when the 2 cores are shared. Tests that start processes set OMP_NUM_THREADS=1 for them.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def persian_lines() -> list[str]:
    """About 12k normalized Persian lines (Hafez verses and prose interpretations)."""
    return list(tiny.persian_corpus())


@pytest.fixture(scope="session")
def english_lines() -> list[str]:
    """A few thousand English sentences from standard-library docstrings."""
    return list(tiny.english_corpus())


@pytest.fixture(scope="session")
def bpe_base_dir(tmp_path_factory, english_lines) -> str:
    """English-centric byte-level BPE base tokenizer folder (SmolLM2/Llama-3 style), 1000 entries."""
    return tiny.train_bpe_tokenizer(english_lines, str(tmp_path_factory.mktemp("bpe_base")), vocab_size=1000)


@pytest.fixture(scope="session")
def sp_base_dir(tmp_path_factory, english_lines) -> str:
    """English-centric SentencePiece BPE base tokenizer folder with Llama-2's settings, 1000 pieces."""
    return tiny.train_sp_tokenizer(english_lines, str(tmp_path_factory.mktemp("sp_base")), vocab_size=1000)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, bpe_base_dir) -> str:
    """A 2-layer Llama (untied head) with the BPE base tokenizer, saved as an HF folder."""
    return tiny.make_tiny_llama(bpe_base_dir, str(tmp_path_factory.mktemp("tiny_llama")))


@pytest.fixture(scope="session")
def tiny_tied_model_dir(tmp_path_factory, bpe_base_dir) -> str:
    """Same as ``tiny_model_dir`` with tied input/output embeddings (SmolLM2, Gemma style)."""
    return tiny.make_tiny_llama(bpe_base_dir, str(tmp_path_factory.mktemp("tiny_llama_tied")),
                                tie_word_embeddings=True)
