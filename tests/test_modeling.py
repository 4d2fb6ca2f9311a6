"""Vocabulary growth, new-row initialisation and training modes (langadapt.embeddings / langadapt.modeling)."""

import os

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from _pretrain_helpers import extend_tokenizer
from langadapt.args import DEFAULT_EMBEDDING_INIT, AdaptationArguments, ModelArguments
from langadapt.cli import UsageError
from langadapt.embeddings import SUBTOKEN_DECAY, padded_size, piece_weights, subtoken_pieces
from langadapt.modeling import ModelInfo, check_vocab_fit, count_parameters, prepare_model


@pytest.fixture(scope="module")
def ext_bpe_dir(tmp_path_factory, bpe_base_dir, persian_lines):
    return extend_tokenizer(bpe_base_dir, persian_lines[:3000], str(tmp_path_factory.mktemp("ext_bpe")), n_new=150)


@pytest.fixture(scope="module")
def ext_sp_dir(tmp_path_factory, sp_base_dir, persian_lines):
    return extend_tokenizer(sp_base_dir, persian_lines[:3000], str(tmp_path_factory.mktemp("ext_sp")), n_new=150)


@pytest.fixture(scope="module")
def tiny_sp_model_dir(tmp_path_factory, sp_base_dir):
    import tiny

    return tiny.make_tiny_llama(sp_base_dir, str(tmp_path_factory.mktemp("tiny_sp")))


def prepare(model_dir, tok_dir, mode="full", **kw):
    gc = kw.pop("gradient_checkpointing", False)
    return prepare_model(ModelArguments(model_name_or_path=model_dir, tokenizer_name_or_path=tok_dir),
                         AdaptationArguments(training_mode=mode, **kw), gradient_checkpointing=gc)


def base_tables(model_dir):
    m = AutoModelForCausalLM.from_pretrained(model_dir)
    return m.get_input_embeddings().weight.detach().clone(), m.get_output_embeddings().weight.detach().clone()


# ---------------------------------------------------------------------------------------------- sub-token init


@pytest.mark.parametrize("kind", ["bpe", "sp"])
def test_subtoken_mean_rows_are_means_of_base_pieces(kind, request):
    """Each new row = mean of the base rows of the base tokenizer's pieces, separately for embeddings and head."""
    model_dir = request.getfixturevalue("tiny_model_dir" if kind == "bpe" else "tiny_sp_model_dir")
    tok_dir = request.getfixturevalue(f"ext_{kind}_dir")
    base_dir = request.getfixturevalue(f"{kind}_base_dir")
    base_emb, base_head = base_tables(model_dir)
    p = prepare(model_dir, tok_dir, embedding_init="subtoken_mean")
    base_tok, tok = AutoTokenizer.from_pretrained(base_dir), p.tokenizer
    n_base = len(base_tok)
    emb, head = p.model.get_input_embeddings().weight, p.model.get_output_embeddings().weight
    assert p.resize.first_new_id == n_base and p.resize.tokenizer_size == len(tok) > n_base
    assert emb.shape[0] == padded_size(len(tok), 64) == p.resize.embedding_rows
    assert torch.equal(emb[:n_base], base_emb) and torch.equal(head[:n_base], base_head)
    checked_text = 0
    for i in range(n_base, len(tok)):
        piece_tokens = base_tok.backend_tokenizer.model.tokenize(tok.convert_ids_to_tokens(i))
        ids = [t.id for t in piece_tokens]
        assert ids and all(j < n_base for j in ids)
        # The pieces spell the new token: same bytes once decoded.
        assert base_tok.convert_tokens_to_string([t.value for t in piece_tokens]) == \
            tok.convert_tokens_to_string([tok.convert_ids_to_tokens(i)])
        torch.testing.assert_close(emb[i], base_emb[ids].mean(0))
        torch.testing.assert_close(head[i], base_head[ids].mean(0))
        token = tok.convert_ids_to_tokens(i)
        if kind == "sp" and token.startswith("▁"):
            # For word-initial SentencePiece pieces, encoding the text with a space gives the same pieces.
            assert base_tok(token.replace("▁", " "), add_special_tokens=False)["input_ids"] == ids
            checked_text += 1
    assert kind == "bpe" or checked_text > 20
    # Padding rows are the mean base row, so no padding id gets an odd logit.
    torch.testing.assert_close(emb[len(tok)], base_emb.mean(0))
    torch.testing.assert_close(head[-1], base_head.mean(0))
    assert not p.resize.subtoken_fallbacks


def test_subtoken_weighted_rows_weigh_pieces_1_half_quarter_from_the_first(tiny_model_dir, ext_bpe_dir, bpe_base_dir):
    base_emb, base_head = base_tables(tiny_model_dir)
    p = prepare(tiny_model_dir, ext_bpe_dir, embedding_init="subtoken_weighted")
    base_tok, tok = AutoTokenizer.from_pretrained(bpe_base_dir), p.tokenizer
    emb, head = p.model.get_input_embeddings().weight, p.model.get_output_embeddings().weight
    assert p.resize.init == "subtoken_weighted" and p.resize.examples
    multi = 0
    for i in range(len(base_tok), len(tok)):
        ids = [t.id for t in base_tok.backend_tokenizer.model.tokenize(tok.convert_ids_to_tokens(i))]
        w = torch.tensor([0.5**k for k in range(len(ids))])
        w = w / w.sum()
        torch.testing.assert_close(emb[i], (w[:, None] * base_emb[ids]).sum(0))
        torch.testing.assert_close(head[i], (w[:, None] * base_head[ids]).sum(0))
        multi += len(ids) > 1
    assert multi > 20  # most new tokens have several pieces, so the weights matter
    # Two pieces: 2/3 of the first, 1/3 of the second.
    torch.testing.assert_close(piece_weights(2, 0.5), torch.tensor([2 / 3, 1 / 3]))
    torch.testing.assert_close(piece_weights(3, 1.0), torch.full((3,), 1 / 3))


def test_tied_embeddings_stay_tied_and_are_initialised_once(tiny_tied_model_dir, ext_bpe_dir, bpe_base_dir):
    base_emb, _ = base_tables(tiny_tied_model_dir)
    p = prepare(tiny_tied_model_dir, ext_bpe_dir, embedding_init="subtoken_mean")
    emb, head = p.model.get_input_embeddings().weight, p.model.get_output_embeddings().weight
    assert head is emb and p.resize.tied
    base_tok = AutoTokenizer.from_pretrained(bpe_base_dir)
    pieces = subtoken_pieces([len(base_tok)], p.tokenizer, base_tok, len(base_tok))[len(base_tok)]
    torch.testing.assert_close(emb[len(base_tok)], base_emb[pieces].mean(0))


def test_added_tokens_use_the_whole_base_pipeline(tiny_model_dir, bpe_base_dir, tmp_path):
    """Tokens added with add_tokens are plain text, not byte-level strings."""
    tok = AutoTokenizer.from_pretrained(bpe_base_dir)
    tok.add_tokens([" حافظ"])
    tok.save_pretrained(tmp_path)
    base_emb, _ = base_tables(tiny_model_dir)
    p = prepare(tiny_model_dir, str(tmp_path), embedding_init="subtoken_mean")
    base_tok = AutoTokenizer.from_pretrained(bpe_base_dir)
    ids = base_tok(" حافظ", add_special_tokens=False)["input_ids"]
    torch.testing.assert_close(p.model.get_input_embeddings().weight[len(base_tok)], base_emb[ids].mean(0))


@pytest.mark.parametrize("init", ["mean", "random", "hf_default"])
def test_other_inits_are_applied_and_recorded(init, tiny_model_dir, ext_bpe_dir):
    base_emb, _ = base_tables(tiny_model_dir)
    p = prepare(tiny_model_dir, ext_bpe_dir, embedding_init=init)
    emb = p.model.get_input_embeddings().weight
    n = base_emb.shape[0]
    assert torch.equal(emb[:n], base_emb)
    assert p.resolved()["embeddings"]["init"] == init
    assert p.resolved()["embeddings"]["transformers_mean_resizing"] == (init == "hf_default")
    if init == "mean":
        torch.testing.assert_close(emb[n + 3], base_emb.mean(0))
    if init == "random":  # seeded: the same rows in every process and on reload
        again = prepare(tiny_model_dir, ext_bpe_dir, embedding_init=init).model.get_input_embeddings().weight
        assert torch.equal(emb, again)
        assert abs(emb[n:].std().item() - 0.02) < 0.005


def test_same_size_tokenizer_leaves_the_model_untouched(tiny_model_dir):
    base_emb, base_head = base_tables(tiny_model_dir)
    p = prepare(tiny_model_dir, tiny_model_dir)
    assert torch.equal(p.model.get_input_embeddings().weight, base_emb)
    assert p.resize.embedding_rows == p.resize.base_rows and not p.resize.vocab_grew


# ---------------------------------------------------------------------------------------------- vocabulary fit


def test_smaller_tokenizer_is_refused_unless_padding_on_purpose():
    # Base tokenizer passed to a model that has far more rows: refused, never shrunk.
    with pytest.raises(UsageError, match="never shrunk"):
        check_vocab_fit(1152, 1000, model_info=None, tok_info=None, same_folder=False, pad_to_multiple_of=64)
    # The table is exactly the tokenizer padded to the multiple: fine.
    assert check_vocab_fit(1024, 1000, model_info=None, tok_info=None, same_folder=False,
                           pad_to_multiple_of=64) == 1000
    # The model's own tokenizer (Qwen ships spare rows): fine.
    assert check_vocab_fit(1300, 1000, model_info=None, tok_info=None, same_folder=True, pad_to_multiple_of=64) == 1000
    # Our own output, trained with 1150 tokens: a 1000-token tokenizer is the wrong one.
    info = ModelInfo("base", 1000, 1150, 1152, "full", "subtoken_mean", False)
    with pytest.raises(UsageError, match="trained with 1150"):
        check_vocab_fit(1152, 1000, model_info=info, tok_info=None, same_folder=False, pad_to_multiple_of=64)
    assert check_vocab_fit(1152, 1150, model_info=info, tok_info=None, same_folder=False, pad_to_multiple_of=64) == 1150
    # A merge onto a base bigger than the model's table: the tokenizer belongs to another model.
    with pytest.raises(UsageError, match="merged onto a base of 2000"):
        check_vocab_fit(1000, 2100, model_info=None, tok_info={"base_vocab_size": 2000}, same_folder=False,
                        pad_to_multiple_of=64)
    # A merge whose new tokens land in spare rows of the base table: those rows count as new.
    assert check_vocab_fit(1300, 1150, model_info=None, tok_info={"base_vocab_size": 1000}, same_folder=False,
                           pad_to_multiple_of=64) == 1000


def test_base_tokenizer_on_an_extended_model_is_an_error(tiny_model_dir, ext_bpe_dir, bpe_base_dir, tmp_path):
    p = prepare(tiny_model_dir, ext_bpe_dir)
    p.model.save_pretrained(tmp_path)
    p.info.save(str(tmp_path))
    with pytest.raises(UsageError, match="--tokenizer_name_or_path"):
        prepare(str(tmp_path), bpe_base_dir)


def test_merged_model_whose_padded_table_covers_the_tokenizer_needs_no_init(tiny_model_dir, ext_bpe_dir, tmp_path):
    """A merged model (our own output: 1150 tokens padded to 1152 rows) trained on with its own tokenizer: no row is
    new, so the default subtoken_mean needs no base tokenizer and every row, padding included, is left as is."""
    p = prepare(tiny_model_dir, ext_bpe_dir)
    assert p.resize.padding_rows > 0
    p.model.save_pretrained(tmp_path)
    p.tokenizer.save_pretrained(tmp_path)
    p.info.save(str(tmp_path))
    trained = p.model.get_input_embeddings().weight.detach().clone()
    q = prepare(str(tmp_path), ext_bpe_dir, "lora")  # raised "needs the base tokenizer" before
    assert q.resize.embedding_rows == q.resize.base_rows == trained.shape[0]
    assert q.resize.new_token_ids == [] and q.resize.subtoken_fallbacks == []
    assert torch.equal(q.model.get_base_model().get_input_embeddings().weight, trained)


def test_spare_rows_of_the_base_get_new_token_init(tiny_model_dir, ext_bpe_dir, tmp_path):
    """A base shipped with spare rows (Qwen-style): new tokens that land in them are initialised, not left as is."""
    m = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    m.resize_token_embeddings(1200, mean_resizing=False)
    m.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path)
    base_emb, _ = base_tables(tiny_model_dir)
    p = prepare(str(tmp_path), ext_bpe_dir)
    emb = p.model.get_input_embeddings().weight
    assert p.resize.first_new_id == 1000 and emb.shape[0] == 1200  # not shrunk to 1152, not regrown
    torch.testing.assert_close(emb[1150], base_emb.mean(0))  # spare row after the tokenizer: mean of real rows


# ---------------------------------------------------------------------------------------------- training modes


def expected_counts(model_dir, rows, tied, r=8):
    """Trainable parameter counts per mode from the config (2 layers, 7 projections each)."""
    cfg = AutoModelForCausalLM.from_pretrained(model_dir).config
    h, i, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    kv = cfg.num_key_value_heads * (h // cfg.num_attention_heads)
    proj = [(h, h), (h, kv), (h, kv), (h, h), (h, i), (h, i), (i, h)]  # q k v o gate up down (in, out)
    body = layers * (sum(a * b for a, b in proj) + 2 * h) + h
    tables = rows * h * (1 if tied else 2)
    return {
        "full": body + tables,
        "embeddings": tables,
        "lora": layers * sum(r * (a + b) for a, b in proj) + tables,
        "new_rows": (rows - 1000) * h * (1 if tied else 2),
    }


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("mode", ["full", "embeddings", "lora", "new_rows"])
def test_each_mode_trains_exactly_what_it_should(mode, tied, tiny_model_dir, tiny_tied_model_dir, ext_bpe_dir):
    model_dir = tiny_tied_model_dir if tied else tiny_model_dir
    p = prepare(model_dir, ext_bpe_dir, mode)
    rows = p.resize.embedding_rows
    assert p.trainable_params == expected_counts(model_dir, rows, tied, r=AdaptationArguments.lora_rank)[mode]
    assert count_parameters(p.model)[0] == p.trainable_params
    assert p.info.is_adapter == (mode in ("lora", "new_rows"))
    names = [n for n, q in p.model.named_parameters() if q.requires_grad]
    if mode == "embeddings":
        assert all("embed_tokens" in n or "lm_head" in n for n in names)
    if mode == "lora":
        assert any("lora_A" in n for n in names) and any("modules_to_save" in n for n in names)
        assert not any("lora" in n for n in names if "lm_head" in n)  # the head is saved whole, not LoRA'd
    if mode == "new_rows":
        assert all("trainable_tokens_delta" in n for n in names)


def test_tied_new_rows_move_the_output_logits_too(tiny_tied_model_dir, ext_bpe_dir):
    p = prepare(tiny_tied_model_dir, ext_bpe_dir, "new_rows")
    x = torch.tensor([[5, 6, 7]])
    before = p.model(x).logits
    delta = p.model.base_model.model.model.embed_tokens.trainable_tokens_delta.default
    with torch.no_grad():
        delta[10] += 1.0  # row of token 1000 + 10
    after = p.model(x).logits
    changed = (after - before).abs().amax(dim=(0, 1))
    assert changed[1010] > 1e-3 and changed[:1000].max() == 0


def test_lora_without_new_tokens_saves_no_embeddings(tiny_model_dir):
    p = prepare(tiny_model_dir, tiny_model_dir, "lora")
    assert not any("modules_to_save" in n for n, _ in p.model.named_parameters())


def test_new_rows_without_new_tokens_is_an_error(tiny_model_dir):
    with pytest.raises(UsageError, match="new_rows"):
        prepare(tiny_model_dir, tiny_model_dir, "new_rows")


def test_gradient_checkpointing_with_frozen_embeddings_still_trains_lora(tiny_model_dir):
    p = prepare(tiny_model_dir, tiny_model_dir, "lora", gradient_checkpointing=True)
    p.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    p.model.train()
    x = torch.tensor([[5, 6, 7, 8, 9]])
    p.model(input_ids=x, labels=x).loss.backward()
    grads = [q.grad for n, q in p.model.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


# ---------------------------------------------------------------------------------------------- adapter reload


@pytest.mark.parametrize("mode", ["lora", "new_rows"])
@pytest.mark.parametrize("tied", [False, True])
def test_adapter_reloads_with_peftmodel_and_gives_identical_logits(mode, tied, tiny_model_dir,
                                                                   tiny_tied_model_dir, ext_bpe_dir, tmp_path):
    from peft import PeftModel

    model_dir = tiny_tied_model_dir if tied else tiny_model_dir
    p = prepare(model_dir, ext_bpe_dir, mode)
    torch.manual_seed(0)
    with torch.no_grad():  # stand-in for training: move every trainable tensor
        for q in p.model.parameters():
            if q.requires_grad:
                q.add_(torch.randn_like(q) * 0.1)
    p.model.eval()
    x = torch.tensor([[3, 1001, 1040, 7, 1100, 12]])
    want = p.model(x).logits
    p.model.save_pretrained(tmp_path)
    # Reload onto a base resized by plain transformers (random mean_resizing rows): the adapter alone must fix
    # every row that differs from the base.
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    base.resize_token_embeddings(p.info.embedding_rows)
    got = PeftModel.from_pretrained(base, str(tmp_path)).eval()(x).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    if mode == "new_rows":
        assert os.path.getsize(tmp_path / "adapter_model.safetensors") < 60_000  # just the rows


def test_model_info_round_trip(tmp_path):
    info = ModelInfo("b", 1000, 1150, 1152, "lora", "subtoken_mean", True, ["a1"])
    info.save(str(tmp_path))
    assert ModelInfo.from_dir(str(tmp_path)) == info
    assert ModelInfo.from_dir(str(tmp_path / "nope")) is None


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["bpe", "sp"])
def test_subtoken_init_on_the_tokenizer_stage_output(kind, request, tmp_path, persian_lines):
    """With the real tokenizer stage (extract_vocab.py + merge.py): every new piece splits into base pieces, and the
    default init weighs their rows 1, 1/2, 1/4, ... from the first."""
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    base_dir = request.getfixturevalue(f"{kind}_base_dir")
    model_dir = request.getfixturevalue("tiny_model_dir" if kind == "bpe" else "tiny_sp_model_dir")
    corpus = tmp_path / "fa.txt"
    corpus.write_text("\n".join(persian_lines[:3000]) + "\n", encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for cmd in (["tokenizer/extract_vocab.py", "--train_file", str(corpus), "--vocab_size", "1500",
                 "--base_tokenizer", base_dir, "--output_dir", str(tmp_path / "addon")],
                ["tokenizer/merge.py", "--base_tokenizer", base_dir, "--extra_model", str(tmp_path / "addon"),
                 "--output_dir", str(tmp_path / "tok")]):
        subprocess.run([sys.executable, *cmd], check=True, cwd=repo, env=env, capture_output=True, timeout=600)
    base_emb, base_head = base_tables(model_dir)
    p = prepare(model_dir, str(tmp_path / "tok"))
    base_tok = AutoTokenizer.from_pretrained(base_dir)
    n = len(base_tok)
    assert p.resize.first_new_id == n and len(p.tokenizer) > n + 100 and not p.resize.subtoken_fallbacks
    emb = p.model.get_input_embeddings().weight
    for i in range(n, len(p.tokenizer), 7):
        ids = [t.id for t in base_tok.backend_tokenizer.model.tokenize(p.tokenizer.convert_ids_to_tokens(i))]
        want = (piece_weights(len(ids), SUBTOKEN_DECAY[DEFAULT_EMBEDDING_INIT])[:, None] * base_emb[ids]).sum(0)
        torch.testing.assert_close(emb[i], want)
