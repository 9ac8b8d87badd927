"""The paper's GPT-2: exact size, Hugging Face format, and a chunked loss equal to the plain one."""

from __future__ import annotations

import pytest
import torch

from helpers.config import get_profile
from helpers.model import build_model, lm_loss, load_model, parameter_report


def test_paper_model_has_exactly_3_582_016_parameters():
    model = build_model(get_profile("paper").model, seed=0)
    assert parameter_report(model) == {
        "embeddings": 3_281_984,  # 50257 x 64 tokens + 1024 x 64 positions
        "blocks": 299_904,        # 6 x 49,984
        "final_norm": 128,
        "total": 3_582_016,
    }
    assert model.lm_head.weight is model.transformer.wte.weight  # tied: the output layer adds nothing
    assert model.config._attn_implementation == "sdpa"


def test_lesson_model_keeps_the_blocks():
    report = parameter_report(build_model(get_profile("lesson").model, seed=0))
    assert report["blocks"] == 299_904 and report["embeddings"] == (2048 + 1024) * 64


@pytest.mark.parametrize("chunk", [1, 7, 128, 10_000])
def test_chunked_loss_and_gradients_equal_the_plain_ones(chunk):
    torch.manual_seed(0)
    model = build_model(get_profile("lesson").model, seed=0).eval()
    ids = torch.randint(0, 2048, (3, 40))
    labels = ids.clone()
    labels[0, :25] = -100  # a masked prompt
    labels[2, 30:] = -100  # padding
    expected = model(input_ids=ids, labels=labels).loss
    expected.backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    hidden = model.transformer(input_ids=ids).last_hidden_state
    total, count = lm_loss(hidden, model.lm_head.weight, labels, chunk=chunk)
    assert int(count) == int((labels[:, 1:] != -100).sum())
    (total / count).backward()
    assert torch.allclose(total / count, expected, rtol=1e-6)
    for name, param in model.named_parameters():
        assert torch.allclose(param.grad, reference[name], rtol=1e-4, atol=1e-7), name
    with torch.no_grad():
        again, _ = lm_loss(hidden.detach(), model.lm_head.weight, labels, chunk=chunk)
    assert torch.allclose(again, total.detach(), rtol=1e-6)


def test_all_masked_batch_has_zero_loss_and_gradient():
    model = build_model(get_profile("lesson").model, seed=0)
    hidden = model.transformer(input_ids=torch.ones(2, 5, dtype=torch.long)).last_hidden_state
    total, count = lm_loss(hidden, model.lm_head.weight, torch.full((2, 5), -100), chunk=4)
    total.backward()
    assert float(total.detach()) == 0.0 and int(count) == 0
    assert float(model.transformer.wte.weight.grad.abs().sum()) == 0.0


def test_saved_runs_load_with_auto_classes_and_pipeline(pretrained_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    for folder in (pretrained_run, pretrained_run / "checkpoint-10"):
        model = AutoModelForCausalLM.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        assert model.num_parameters() == parameter_report(model)["total"] and len(tokenizer) == 2048
        generator = pipeline("text-generation", model=str(folder), tokenizer=str(folder), device="cpu")
        out = generator("Once upon a time,", max_new_tokens=5, do_sample=False)
        assert out[0]["generated_text"].startswith("Once upon a time,")
    assert (pretrained_run / "model.safetensors").exists() and not list(pretrained_run.glob("*.bin"))
    assert load_model(pretrained_run).loss_type == "ForCausalLM"
