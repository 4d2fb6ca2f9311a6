"""--embedding_learning_rate: the embeddings and head in optimizer groups of their own, per training mode."""

import pytest
import torch
from transformers import TrainingArguments

from _pretrain_helpers import extend_tokenizer
from langadapt.args import AdaptationArguments, ModelArguments
from langadapt.modeling import prepare_model
from langadapt.optim import EmbeddingLRTrainer, embedding_parameters


@pytest.fixture(scope="module")
def ext_dir(tmp_path_factory, bpe_base_dir, persian_lines):
    return extend_tokenizer(bpe_base_dir, persian_lines[:2000], str(tmp_path_factory.mktemp("ext")), n_new=60)


def _trainer(tmp_path, model, emb_lr, lr=1e-3):
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=lr, weight_decay=0.01, use_cpu=True,
                             report_to="none", warmup_steps=2, max_steps=4, lr_scheduler_type="linear")
    return EmbeddingLRTrainer(model=model, args=args, embedding_learning_rate=emb_lr)


@pytest.mark.parametrize("mode", ["full", "lora", "new_rows"])
def test_embedding_parameters_get_their_own_rate_and_the_same_schedule(mode, tmp_path, tiny_model_dir, ext_dir):
    p = prepare_model(ModelArguments(model_name_or_path=tiny_model_dir, tokenizer_name_or_path=ext_dir),
                      AdaptationArguments(training_mode=mode))
    emb = embedding_parameters(p.model)
    trainable = [prm for prm in p.model.parameters() if prm.requires_grad]
    assert emb and (len(emb) < len(trainable) or mode == "new_rows")  # new_rows trains only the new rows
    names = {id(prm): n for n, prm in p.model.named_parameters()}
    expected = {"full": ("embed_tokens.weight", "lm_head.weight"),
                "lora": ("modules_to_save.default.weight",),
                "new_rows": ("trainable_tokens_delta.default",)}[mode]
    assert all(names[id(prm)].endswith(expected) for prm in emb), [names[id(prm)] for prm in emb]
    trainer = _trainer(tmp_path, p.model, emb_lr=5e-5)
    opt = trainer.create_optimizer()
    trainer.create_scheduler(num_training_steps=4, optimizer=opt)
    groups = opt.param_groups
    in_emb = [g for g in groups if g.get("embedding_group")]
    assert {id(prm) for g in in_emb for prm in g["params"]} == {id(prm) for prm in emb}
    assert all(g["initial_lr"] == 5e-5 for g in in_emb)
    assert all(g["initial_lr"] == 1e-3 for g in groups if not g.get("embedding_group"))
    # every trainable parameter is in exactly one group; weight decay settings are kept
    ids = [id(prm) for g in groups for prm in g["params"]]
    assert sorted(ids) == sorted(id(prm) for prm in trainable)
    assert {g["weight_decay"] for g in in_emb} <= {0.01, 0.0}
    # the schedule scales both rates alike (warmup step 1 of 2: half of each)
    opt.step()  # no gradients yet: changes nothing, keeps the step order torch expects
    trainer.lr_scheduler.step()
    for g in groups:
        assert g["lr"] == pytest.approx(g["initial_lr"] * 0.5)


def test_without_the_flag_the_optimizer_is_hf_default(tmp_path, tiny_model_dir, ext_dir):
    p = prepare_model(ModelArguments(model_name_or_path=tiny_model_dir, tokenizer_name_or_path=ext_dir),
                      AdaptationArguments(training_mode="lora"))
    opt = _trainer(tmp_path, p.model, emb_lr=None).create_optimizer()
    assert len(opt.param_groups) == 2 and not any(g.get("embedding_group") for g in opt.param_groups)


def test_rows_move_in_proportion_to_their_rate(tmp_path, tiny_model_dir, ext_dir):
    """One Adam step moves every weight by about lr (sign of the update), so the embedding rows move ~lr_emb."""
    p = prepare_model(ModelArguments(model_name_or_path=tiny_model_dir, tokenizer_name_or_path=ext_dir),
                      AdaptationArguments(training_mode="full"))
    model = p.model
    emb = model.get_input_embeddings().weight
    other = model.model.layers[0].mlp.up_proj.weight
    before_emb, before_other = emb.detach().clone(), other.detach().clone()
    trainer = _trainer(tmp_path, model, emb_lr=1e-5, lr=1e-3)
    opt = trainer.create_optimizer()
    for g in opt.param_groups:
        g["weight_decay"] = 0.0
    ids = torch.tensor([[1, 5, 9, len(p.tokenizer) - 1, 3, 7]])
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    moved_emb = (emb.detach() - before_emb).abs().max().item()
    moved_other = (other.detach() - before_other).abs().max().item()
    assert 0 < moved_emb <= 1.1e-5 and moved_other > 5e-4


def test_flag_is_validated():
    with pytest.raises(ValueError, match="--embedding_learning_rate"):
        AdaptationArguments(embedding_learning_rate=0.0)
