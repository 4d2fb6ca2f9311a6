"""Bits per byte: the definition, a hand computation on a model with known probabilities, and the recount."""

import math

import pytest
import torch
import torch.nn.functional as F

from langadapt.bpb import bits_per_byte, utf8_bytes
from langadapt.perplexity import corpus_perplexity


@pytest.fixture(scope="module")
def model_and_tok(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


def test_definition_and_utf8_byte_counts():
    # Persian letters are 2 bytes in UTF-8, ZWNJ (U+200C) 3, ASCII 1.
    assert utf8_bytes("سلام") == 8 and utf8_bytes("می\u200cروم") == 2 * 5 + 3 and utf8_bytes("ok ") == 3
    assert bits_per_byte(8 * math.log(2), 8) == pytest.approx(1.0)
    assert bits_per_byte(10.0, 4) == pytest.approx(10.0 / math.log(2) / 4)
    assert math.isnan(bits_per_byte(1.0, 0))


def test_uniform_model_gives_the_hand_computed_bits_per_byte(model_and_tok):
    """With a zero output head every token has probability 1/V, so a document of n predicted tokens and b bytes
    costs exactly n * log2(V) / b bits per byte."""
    import copy

    model, tok = model_and_tok
    uniform = copy.deepcopy(model)
    with torch.no_grad():
        uniform.get_output_embeddings().weight.zero_()
    vocab = uniform.get_output_embeddings().weight.shape[0]
    docs = ["سلام دنیا", "hello world again"]
    n = sum(len(tok(d, add_special_tokens=False)["input_ids"]) for d in docs)
    b = sum(len(d.encode("utf-8")) for d in docs)
    r = corpus_perplexity(uniform, tok, docs)
    assert r.bytes == b == 8 + 1 + 8 + 17
    assert r.tokens == n
    assert r.bpb == pytest.approx(n * math.log2(vocab) / b, rel=1e-5)
    assert r.to_dict()["bpb"] == r.bpb


def test_bits_per_byte_equals_a_recount_of_the_log_probabilities(model_and_tok, persian_lines, english_lines):
    model, tok = model_and_tok
    docs = list(persian_lines[:5]) + list(english_lines[:3])
    bits, n_bytes = 0.0, 0
    for d in docs:
        ids = [tok.eos_token_id] + tok(d, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = F.log_softmax(model(torch.tensor([ids])).logits[0, :-1].float(), dim=-1)
        bits -= logp.gather(1, torch.tensor(ids[1:])[:, None]).sum().item() / math.log(2)
        n_bytes += len(d.encode("utf-8"))
    r = corpus_perplexity(model, tok, docs)
    assert r.bytes == n_bytes
    assert r.bpb == pytest.approx(bits / n_bytes, rel=1e-4)
    # bpb and ppl_char are two views of one total: ln(ppl_char) * chars = bpb * bytes * ln 2.
    assert math.log(r.ppl_char) * r.chars == pytest.approx(r.bpb * r.bytes * math.log(2), rel=1e-6)
