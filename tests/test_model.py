"""The paper's GPT-2: exact size, Hugging Face format both ways, and a chunked loss equal to the plain one."""

from __future__ import annotations

import pytest
import torch

from transformers import GPT2LMHeadModel

from helpers.config import get_profile
from helpers.gpt import GPT, generate
from helpers.model import CausalLMLoss, build_model, hf_model, lm_loss, load_model, parameter_report


def test_paper_model_has_exactly_3_582_016_parameters():
    model = build_model(get_profile("paper").model, seed=0)
    assert parameter_report(model) == {
        "embeddings": 3_281_984,  # 50257 x 64 tokens + 1024 x 64 positions
        "blocks": 299_904,        # 6 x 49,984
        "final_norm": 128,
        "total": 3_582_016,
    }
    assert model.lm_head.weight is model.wte.weight  # tied: the output layer adds nothing
    assert parameter_report(hf_model(model)) == parameter_report(model)


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
    expected = model(ids, labels).loss
    expected.backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    hidden, _, _ = model.hidden_states(ids)
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
    hidden, _, _ = model.hidden_states(torch.ones(2, 5, dtype=torch.long))
    total, count = lm_loss(hidden, model.lm_head.weight, torch.full((2, 5), -100), chunk=4)
    total.backward()
    assert float(total.detach()) == 0.0 and int(count) == 0
    assert float(model.wte.weight.grad.abs().sum()) == 0.0


def test_the_loss_module_gives_one_loss_whichever_way_the_output_layer_is_computed():
    """The lesson profile computes the full logits, the paper profile the chunked loss: same loss and gradients."""
    model = build_model(get_profile("lesson").model, seed=3)
    ids = torch.randint(0, 2048, (2, 30), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[1, :12] = -100
    results = {}
    for loss in ("full", "chunked"):
        model.zero_grad()
        total, count = CausalLMLoss(model, loss, chunk=16, dtype=None)(ids, labels=labels)
        (total / count).backward()
        results[loss] = (float(total.detach()), int(count), [p.grad.clone() for p in model.parameters()])
    (full, n_full, g_full), (chunked, n_chunked, g_chunked) = results["full"], results["chunked"]
    assert n_full == n_chunked == 2 * 29 - 11 and full == pytest.approx(chunked, rel=1e-6)
    assert full == pytest.approx(float(model(ids, labels).loss.detach()) * n_full, rel=1e-6)
    for a, b in zip(g_full, g_chunked):  # float32 sums in another order: within a hundred-thousandth of the largest
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5 * float(a.abs().max()))


def test_saved_runs_load_with_auto_classes_and_pipeline(pretrained_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    ours = load_model(pretrained_run).eval()
    assert isinstance(ours, GPT)
    for folder in (pretrained_run, pretrained_run / "checkpoint-10"):
        model = AutoModelForCausalLM.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        assert model.num_parameters() == parameter_report(model)["total"] and len(tokenizer) == 2048
    model = AutoModelForCausalLM.from_pretrained(pretrained_run).eval()
    ids = torch.tensor([tokenizer("Once upon a time, there was a girl")["input_ids"]])
    with torch.no_grad():
        assert (model(ids).logits - ours(ids).logits).abs().max().item() < 1e-5
    generator = pipeline("text-generation", model=str(pretrained_run), tokenizer=str(pretrained_run), device="cpu")
    text = generator("Once upon a time,", max_new_tokens=20, do_sample=False)[0]["generated_text"]
    prompt = torch.tensor([tokenizer("Once upon a time,")["input_ids"]])
    out = generate(ours, prompt, 20, temperature=0)
    assert text == tokenizer.decode(out[0], skip_special_tokens=True)
    assert (pretrained_run / "model.safetensors").exists() and not list(pretrained_run.glob("*.bin"))


def test_a_folder_written_by_transformers_loads_and_an_incomplete_one_is_refused(tmp_path):
    """Runs saved before the course trained its own class were GPT2LMHeadModel folders: they load as they are."""
    cfg = get_profile("lesson").model
    torch.manual_seed(0)
    old = GPT2LMHeadModel(hf_model(build_model(cfg)).config).eval()  # initialised by transformers
    old.save_pretrained(tmp_path / "old")
    loaded = load_model(tmp_path / "old").eval()
    ids = torch.randint(0, 2048, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (loaded(ids).logits - old(ids).logits).abs().max().item() < 1e-5
    loaded.save_pretrained(tmp_path / "again")
    assert all(torch.equal(a, b) for a, b in zip(load_model(tmp_path / "again").parameters(), loaded.parameters()))
    from safetensors.torch import load_file, save_file

    weights = load_file(tmp_path / "old" / "model.safetensors")
    del weights["transformer.h.0.mlp.c_fc.bias"]
    save_file(weights, tmp_path / "old" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"old does not hold a complete GPT-2: .*transformer.h.0.mlp.c_fc.bias"):
        load_model(tmp_path / "old")
