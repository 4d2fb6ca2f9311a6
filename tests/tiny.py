"""Small real corpora, tokenizers and models for tests, benchmarks and smoke runs, all made offline in seconds.

* :func:`persian_corpus`, :func:`english_corpus`: real Persian and English text (from ``demo/corpora.py``, which
  the demo's data is built from; ``demo/`` must be on ``sys.path``, as tests/conftest.py and bench/ put it).
* :func:`train_bpe_tokenizer`: an English-centric byte-level BPE base (GPT-2 pre-tokenizer, SmolLM2/Llama-3 style).
* :func:`train_sp_tokenizer`: an English-centric SentencePiece BPE base with Llama-2's trainer settings.
* :func:`make_tiny_llama`: a randomly initialised 2-layer Llama sized to a tokenizer.
* :data:`RAW_PERSIAN`: Persian as users paste it, which every stage must normalize before tokenizing.
"""

from __future__ import annotations

import io
import json
import os

from corpora import english_corpus, persian_corpus  # noqa: F401 - part of this module's interface

# Persian as it arrives from keyboards and PDFs: Arabic kaf and yeh, presentation forms (lam-alef ligature, isolated
# kaf), stray ZWNJs at word edges and a doubled one inside a word. Normalizing changes every one of them.
RAW_PERSIAN = ("\u200c\u0643\u062a\u0627\u0628 \u062e\u0648\u0628\u064a \u0627\u0633\u062a\u200c \u0648 "
               "\ufeb3\ufefc\ufee1 \u0645\u06cc\u200c\u200c\u062e\u0648\u0627\u0647\u0645\u200c \ufb8f")

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
