"""Running trained models: perplexity, text perplexity per word, generation, story questions."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from conftest import tiny_profile
from helpers.config import ModelConfig
from helpers.data import finetuning_examples, pretraining_blocks
from helpers.inference import generate, perplexity, text_perplexity
from helpers.probes import qa_accuracy
from helpers.runs import read_metrics
from helpers.sources import load_instructions
from helpers.text_metrics import normalise_answer


# ----------------------------------------------------------------- perplexity


def test_perplexity_equals_trainer_eval_loss(pre, pretrained_run, tmp_path):
    import numpy as np
    from transformers import Trainer, TrainingArguments

    model, tok = pre
    blocks = pretraining_blocks(tiny_profile().data, "validation", tok, progress=False)
    ours = perplexity(model, blocks, batch_size=16, progress=False)
    rows = [{"input_ids": ids.tolist(), "labels": ids.tolist()} for ids in np.asarray(blocks.array).astype(np.int64)]
    args = TrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=16, report_to="none", use_cpu=True)
    reference = Trainer(model=model, args=args, eval_dataset=rows).evaluate()["eval_loss"]
    assert ours["perplexity"] == pytest.approx(math.exp(reference), rel=1e-4)
    assert ours["tokens"] == len(blocks) * 127
    # and it is the very number the training loop logged at its last evaluation
    assert ours["loss"] == pytest.approx(read_metrics(pretrained_run)[-1]["eval_loss"], rel=1e-5)


def test_instruction_perplexity_scores_only_the_response(fin):

    model, tok = fin
    val = finetuning_examples(tiny_profile().data, tok)[1]
    one = copy.copy(val)
    one.examples = val.examples[:1]
    example = one.examples[0]
    ids = torch.tensor([example["input_ids"]])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, :-1].double(), dim=-1)
    labels = example["labels"][1:]
    picked = [-logp[i, t].item() for i, t in enumerate(labels) if t != -100]
    assert 0 < len(picked) < len(labels)  # the prompt really is masked
    got = perplexity(model, one, progress=False)
    assert got["tokens"] == len(picked)
    assert got["loss"] == pytest.approx(sum(picked) / len(picked), rel=1e-5)
    # padding two examples of different lengths into one batch changes nothing
    two = copy.copy(val)
    two.examples = val.examples[:2]
    second = copy.copy(val)
    second.examples = val.examples[1:2]
    parts = [perplexity(model, s, progress=False) for s in (one, second)]
    joined = perplexity(model, two, batch_size=2, progress=False)
    weighted = sum(p["loss"] * p["tokens"] for p in parts) / sum(p["tokens"] for p in parts)
    assert joined["loss"] == pytest.approx(weighted, rel=1e-5)


def _uniform(model):
    """The same network with a zero output layer: every token gets probability 1/V."""

    model = copy.deepcopy(model)
    with torch.no_grad():
        model.get_output_embeddings().weight.zero_()
    return model


def test_word_perplexity_by_hand(pre, gpt2_dir):
    from transformers import AutoTokenizer

    from helpers.model import build_model

    texts = ["Lily had a red ball.", "Tom and his dog ran to the big park."]
    n_words = 5 + 9
    story_model, story_tok = pre
    gpt2_tok = AutoTokenizer.from_pretrained(str(gpt2_dir))
    gpt2_shaped = build_model(ModelConfig(vocab_size=50257, n_layer=1), seed=0)
    for model, tok in ((story_model, story_tok), (gpt2_shaped, gpt2_tok)):
        vocab = model.config.vocab_size
        n_tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)
        got = text_perplexity(_uniform(model), tok, texts, block_size=4, progress=False)
        assert got["tokens"] == n_tokens and got["words"] == n_words
        assert got["nats"] == pytest.approx(n_tokens * math.log(vocab), rel=1e-5)
        assert got["token_perplexity"] == pytest.approx(vocab, rel=1e-5)
        assert got["word_perplexity"] == pytest.approx(vocab ** (n_tokens / n_words), rel=1e-4)
    # a real model: one window per text, checked against a plain forward pass
    total = 0.0
    for text in texts:
        ids = torch.tensor([[story_tok.eos_token_id] + story_tok(text, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            total += torch.nn.functional.cross_entropy(story_model(ids).logits[0, :-1], ids[0, 1:],
                                                       reduction="sum").item()
    got = text_perplexity(story_model, story_tok, texts, progress=False)
    assert got["word_perplexity"] == pytest.approx(math.exp(total / n_words), rel=1e-5)


# ----------------------------------------------------------------- generation


def test_generation_is_deterministic(pre):

    model, tok = pre
    prompts = ["Once upon a time,", "Lily had a red ball.", "Tom", ""]
    state = torch.get_rng_state()
    a = generate(model, tok, prompts, max_new_tokens=12, do_sample=True, seed=3, progress=False)
    b = generate(model, tok, prompts, max_new_tokens=12, do_sample=True, seed=3, progress=False)
    c = generate(model, tok, prompts, max_new_tokens=12, do_sample=True, seed=4, progress=False)
    assert torch.equal(state, torch.get_rng_state())  # the caller's random state is untouched
    assert a == b and a != c
    greedy = generate(model, tok, prompts, max_new_tokens=12, seed=0, progress=False)
    assert greedy == generate(model, tok, prompts, max_new_tokens=12, seed=99, progress=False)
    # left padding: a batch gives what each prompt gives alone
    alone = [generate(model, tok, [p], max_new_tokens=12, progress=False)[0] for p in prompts]
    assert greedy == alone


def test_generation_stops_at_end_of_text(pre):
    model, tok = pre
    prompt = ["Once upon a time, there was a little girl named Lily. She loved to"]
    # sampled, so that the barely trained model does not repeat one token
    full = generate(model, tok, prompt, max_new_tokens=16, do_sample=True, seed=3, progress=False)[0]
    new_ids = tok(full, add_special_tokens=False)["input_ids"]
    stop_at = next(i for i in range(1, len(new_ids)) if new_ids[i] not in new_ids[:i])
    stopper = copy.deepcopy(tok)
    stopper.eos_token = tok.convert_ids_to_tokens(new_ids[stop_at])  # make that token end the text
    cut = generate(model, stopper, prompt, max_new_tokens=16, do_sample=True, seed=3, progress=False)[0]
    assert cut == tok.decode(new_ids[:stop_at])
    assert len(cut) < len(full)


def test_qa_normalisation_and_accuracy(fin):
    assert normalise_answer("The red ball.") == normalise_answer("a red ball") == "red ball"
    assert normalise_answer('  "An  Apple!" ') == "apple"
    assert normalise_answer("in the park.") == "in the park"
    model, tok = fin
    records = load_instructions(tiny_profile().data)[1][:6]
    first = qa_accuracy(model, tok, records, max_new_tokens=6, examples=6, progress=False)
    assert first["n"] == 6 and sum(k["n"] for k in first["by_kind"].values()) == 6
    assert set(first["by_kind"]) <= {"who", "what", "where", "feeling", "yes_no"}
    # expected answers rewritten as the model's own, in capitals and with a full stop: all exact matches
    echoed = [{**r, "output": f"  {row['got'].upper()}. "} for r, row in zip(records, first["examples"])]
    again = qa_accuracy(model, tok, echoed, max_new_tokens=6, progress=False)
    assert again["accuracy"] == 1.0 and again["correct"] == 6
    assert 0.0 <= first["template"] <= 1.0



def test_generation_at_shifted_positions(pre):
    """Greedy answers read k positions further right equal those of a copy whose position rows moved up by k."""
    model, tok = pre
    k = 100
    moved = copy.deepcopy(model)
    with torch.no_grad():
        wpe = moved.transformer.wpe.weight
        wpe.copy_(torch.cat([wpe[k:], wpe[:k]]))
    prompts = ["Once upon a time,", "Lily had a red ball. She", "Tom"]
    shifted = generate(model, tok, prompts, max_new_tokens=10, position_offset=k, progress=False)
    assert shifted == generate(moved, tok, prompts, max_new_tokens=10, progress=False)
    assert shifted != generate(model, tok, prompts, max_new_tokens=10, progress=False)
    with pytest.raises(ValueError, match="position_offset decodes greedily"):
        generate(model, tok, prompts, do_sample=True, position_offset=k, progress=False)
    with pytest.raises(ValueError, match="exceeds the model's 1024 positions"):
        generate(model, tok, prompts, max_new_tokens=10, position_offset=1020, progress=False)
