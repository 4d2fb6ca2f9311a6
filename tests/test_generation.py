"""Batched generation: same answers as one at a time, stop handling, loglik ranking (tiny model, CPU)."""

from __future__ import annotations

import collections

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessorList, RepetitionPenaltyLogitsProcessor

from _inference_helpers import bundled, one_thread  # noqa: F401 - fixture
from langadapt.evaldata import Example
from langadapt.generation import (HFGenerator, LoglikRanker, cut_at_stop, default_max_new_tokens,
                                  label_candidates)
from langadapt.metrics import canonical_label
from langadapt.normalize import normalize
from tiny import RAW_PERSIAN

pytestmark = pytest.mark.usefixtures("one_thread")


def _examples(n_per_file: int = 4) -> list[Example]:
    """Prompts of very different lengths (English and Persian, short labels and long summaries)."""
    recs = (bundled("en", "sentiment", n_per_file) + bundled("fa", "sentiment", n_per_file)
            + bundled("en", "summary", 2) + bundled("fa", "translation_fa_en", n_per_file))
    return [Example(i, r["instruction"], r["input"], r["output"]) for i, r in enumerate(recs)]


@pytest.fixture(scope="module")
def model_and_tok(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


def test_batched_equals_one_at_a_time(model_and_tok):
    model, tok = model_and_tok
    gen = HFGenerator(model, tok, "alpaca")
    prompts = [gen.prompt(ex) for ex in _examples()]
    lengths = {len(ids) for ids in gen.encode(prompts)["input_ids"]}
    assert len(lengths) > 5  # the batch really is padded
    alone = [gen.generate([p], 16)[0] for p in prompts]
    assert gen.generate(prompts, 16) == alone
    assert gen.generate(prompts[::-1], 16) == alone[::-1]
    assert any(alone)


def test_batched_equals_alone_when_eos_ties_the_best_token(tiny_model_dir):
    """A model whose EOS logit equals a frequent token's: greedy picks EOS (lower id) exactly when that token is
    best. A penalty that counted the left pads (= EOS) would break the tie the other way in padded rows only."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    gen = HFGenerator(model, tok, "alpaca")
    prompts = [gen.prompt(ex) for ex in _examples()]
    prompt_ids = gen.encode(prompts)["input_ids"]
    plain = [gen.generate([p], 12)[0] for p in prompts]
    outs = [model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False, repetition_penalty=1.1,
                           pad_token_id=tok.pad_token_id)[0, len(ids):].tolist() for ids in prompt_ids]
    early = {t for o in outs for t in o[:2]} | {t for ids in prompt_ids for t in ids}
    counts = collections.Counter(t for o in outs for t in o[2:] if t not in early)
    x = counts.most_common(1)[0][0]
    assert tok.eos_token_id < x
    with torch.no_grad():
        model.get_output_embeddings().weight[tok.eos_token_id] = model.get_output_embeddings().weight[x]

    alone = [gen.generate([p], 12)[0] for p in prompts]
    assert gen.generate(prompts, 12) == alone
    assert alone != plain and any(alone)  # EOS now ends some answers part-way: the scenario is live

    # The same batch with a penalty that counts the pads gives other answers: the check above has teeth.
    enc = gen.encode(prompts, return_tensors="pt", padding=True)
    naive = LogitsProcessorList([RepetitionPenaltyLogitsProcessor(1.1)])
    out = model.generate(**enc, max_new_tokens=12, do_sample=False, logits_processor=naive,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    texts = [cut_at_stop(t, gen.stops) for t in
             tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)]
    assert texts != alone


def test_generation_config_stops_at_eos_and_template_strings(model_and_tok, monkeypatch):
    model, tok = model_and_tok
    seen = {}

    def fake_generate(**kwargs):
        seen.update(kwargs)
        ids = kwargs["input_ids"]
        reply = tok(" yes\n### Instruction: more", add_special_tokens=False, return_tensors="pt")["input_ids"]
        return torch.cat([ids, reply.repeat(ids.shape[0], 1)], dim=1)

    monkeypatch.setattr(model, "generate", fake_generate)
    gen = HFGenerator(model, tok, "alpaca")
    assert gen.generate([gen.prompt("Say yes.")], 7) == ["yes"]  # cut at the stop string
    cfg = seen["generation_config"]
    assert cfg.stop_strings == ["### Instruction:", "### Input:", "### Response:"]
    assert seen["tokenizer"] is tok  # stop strings need it
    assert tok.eos_token_id in cfg.eos_token_id
    assert (cfg.max_new_tokens, cfg.do_sample, cfg.repetition_penalty, cfg.use_cache) == (7, False, 1.1, True)
    assert tok.padding_side == "left"


def test_chat_template_prompt_has_no_extra_bos(sp_base_dir, tiny_model_dir):
    """A chat template writes its own special tokens; the tokenizer must not add BOS again (as in SFT)."""
    tok = AutoTokenizer.from_pretrained(sp_base_dir)
    tok.chat_template = "{% for m in messages %}<s>{{ m['content'] }}</s>{% endfor %}"
    gen = HFGenerator(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tok, "chat")
    ids = gen.encode([gen.prompt("سلام")])["input_ids"][0]
    assert ids.count(tok.bos_token_id) == 1
    alpaca = HFGenerator(gen.model, tok, "alpaca")
    assert alpaca.encode([alpaca.prompt("سلام")])["input_ids"][0][0] == tok.bos_token_id


def test_cut_at_stop_and_task_caps():
    assert cut_at_stop(" B\n\n### Instruction: next", ["### Instruction:", "### Input:"]) == "B"
    assert cut_at_stop("no stop here ", []) == "no stop here"
    assert default_max_new_tokens("sentiment") < default_max_new_tokens("translation") \
        < default_max_new_tokens("summary") <= default_max_new_tokens(None) == 512


def test_loglik_ranker_picks_the_most_likely_label(model_and_tok):
    model, tok = model_and_tok
    recs = bundled("fa", "sentiment", 6)
    examples = [Example(i, r["instruction"], r["input"], r["output"]) for i, r in enumerate(recs)]
    candidates = label_candidates(examples, canonical_label)
    assert sorted(candidates) == sorted({r["output"] for r in recs})
    gen = HFGenerator(model, tok, "alpaca")
    ranker = LoglikRanker(gen, candidates)
    prompt = gen.prompt(examples[0])
    p = gen.encode([prompt])["input_ids"][0]
    scores = []
    for c in candidates:  # reference: one unpadded forward per candidate
        cids = tok(c, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([p + cids])).logits[0].float(), -1)
        scores.append(sum(float(logp[len(p) - 1 + j, t]) for j, t in enumerate(cids)))
    assert ranker.generate([prompt], 1) == [candidates[scores.index(max(scores))]]


def test_raw_persian_prompts_encode_like_normalized_text(model_and_tok):
    """The generator normalizes by default (the tokenizer folder's normalizer, else the Persian one): a prompt of raw
    Persian (Arabic yeh/kaf, presentation forms, stray ZWNJs) gets exactly the ids of the normalized text."""
    model, tok = model_and_tok
    clean = normalize(RAW_PERSIAN)
    assert tok(clean)["input_ids"] != tok(RAW_PERSIAN)["input_ids"]  # the test input really needs normalizing
    gen = HFGenerator(model, tok, "alpaca")
    for raw_ex, clean_ex in [(RAW_PERSIAN, clean), (Example(0, RAW_PERSIAN, RAW_PERSIAN, ""),
                                                    Example(0, clean, clean, ""))]:
        assert gen.encode([gen.prompt(raw_ex)])["input_ids"] == gen.encode([gen.prompt(clean_ex)])["input_ids"]
    assert gen.generate([gen.prompt(RAW_PERSIAN)], 6) == gen.generate([gen.prompt(clean)], 6)
