"""Running trained models: perplexity, text perplexity per word, generation, story questions."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from conftest import tiny_profile
from rigged import one_thread  # noqa: F401 - a fixture
from helpers.config import ModelConfig
from helpers.data import finetuning_examples, pretraining_blocks
from helpers.inference import Decoding, generate, perplexity, text_perplexity
from helpers.probes import qa_accuracy
from helpers.runs import read_metrics
from helpers.stats import wilson_interval
from helpers.text_metrics import normalise_answer


# ----------------------------------------------------------------- perplexity


def test_perplexity_equals_trainer_eval_loss(pre, pretrained_run, tmp_path):
    import numpy as np
    from transformers import Trainer, TrainingArguments

    from helpers.model import hf_model

    model, tok = pre
    blocks = pretraining_blocks(tiny_profile().data, "validation", tok, progress=False)
    ours = perplexity(model, blocks, batch_size=16, progress=False)
    rows = [{"input_ids": ids.tolist(), "labels": ids.tolist()} for ids in np.asarray(blocks.array).astype(np.int64)]
    args = TrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=16, report_to="none", use_cpu=True)
    reference = Trainer(model=hf_model(model), args=args, eval_dataset=rows).evaluate()["eval_loss"]
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
        model.lm_head.weight.zero_()
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
    a = generate(model, tok, prompts, Decoding(12, do_sample=True, seed=3), progress=False)
    b = generate(model, tok, prompts, Decoding(12, do_sample=True, seed=3), progress=False)
    c = generate(model, tok, prompts, Decoding(12, do_sample=True, seed=4), progress=False)
    assert torch.equal(state, torch.get_rng_state())  # the caller's random state is untouched
    assert a == b and a != c
    greedy = generate(model, tok, prompts, Decoding(12, seed=0), progress=False)
    assert greedy == generate(model, tok, prompts, Decoding(12, seed=99), progress=False)
    # left padding: a batch gives what each prompt gives alone
    alone = [generate(model, tok, [p], Decoding(12), progress=False)[0] for p in prompts]
    assert greedy == alone


def test_generation_stops_at_end_of_text(pre):
    model, tok = pre
    prompt = ["Once upon a time, there was a little girl named Lily. She loved to"]
    # sampled, so that the barely trained model does not repeat one token
    full = generate(model, tok, prompt, Decoding(16, do_sample=True, seed=3), progress=False)[0]
    new_ids = tok(full, add_special_tokens=False)["input_ids"]
    stop_at = next(i for i in range(1, len(new_ids)) if new_ids[i] not in new_ids[:i])
    stopper = copy.deepcopy(tok)
    stopper.eos_token = tok.convert_ids_to_tokens(new_ids[stop_at])  # make that token end the text
    cut = generate(model, stopper, prompt, Decoding(16, do_sample=True, seed=3), progress=False)[0]
    assert cut == tok.decode(new_ids[:stop_at])
    assert len(cut) < len(full)


def test_qa_normalisation_and_accuracy(pre, one_thread):
    """A model that answers "Lily" to everything, scored on three questions by hand."""
    from rigged import constant_model, first_token

    assert normalise_answer("The red ball.") == normalise_answer("a red ball") == "red ball"
    assert normalise_answer('  "An  Apple!" ') == "apple"
    assert normalise_answer("in the park.") == "in the park"
    _, tok = pre
    lily = constant_model(len(tok), {first_token(tok, " Lily"): 9.0}, eos_token_id=tok.eos_token_id)
    records = [{"instruction": "Who is the main character of the story?", "input": "Lily had a ball.",
                "output": "Lily", "kind": "who"},
               {"instruction": "Who was with Lily?", "input": "Lily and Tom played.", "output": "Tom",
                "kind": "who"},
               {"instruction": "Where did the story happen?", "input": "Lily went to the park.",
                "output": "in the park", "kind": "where"},
               {"instruction": "Say the girl's name.", "input": "", "output": "lily."}]  # no kind: "other"
    got = qa_accuracy(lily, tok, records, max_new_tokens=1, examples=2, progress=False)
    # "Lily" is right twice of four; it is a name, the right form for both who-questions, not for where,
    # and "other" has no form to fit: the right-form share is 2 of the 3 story questions
    assert (got["share"], got["successes"], got["n"], got["right_form"]) == (2 / 4, 2, 4, 2 / 3)
    assert (got["low"], got["high"]) == wilson_interval(2, 4)
    assert {k: (v["share"], v["successes"], v["n"], v["right_form"]) for k, v in got["by_kind"].items()} == {
        "other": (1.0, 1, 1, None), "where": (0.0, 0, 1, 0.0), "who": (0.5, 1, 2, 1.0)}
    assert list(got["by_kind"]) == ["other", "where", "who"]
    assert [(r["expected"], r["got"], r["correct"]) for r in got["examples"]] == [("Lily", "Lily", True),
                                                                                  ("Tom", "Lily", False)]
    # three tokens: "Lily Lily Lily" is no exact answer and no answer of any kind's form
    longer = qa_accuracy(lily, tok, records, max_new_tokens=3, progress=False)
    assert (longer["successes"], longer["right_form"], longer["examples"][0]["got"]) == (0, 0.0, "Lily Lily Lily")


def test_sampling_draws_from_softmax_of_logits_over_temperature(pre, one_thread):
    """Next-token logits 2, 1, 0 on three words (all else -50): 3000 seeded draws per temperature."""
    from rigged import constant_model, first_token

    _, tok = pre
    words = [" cat", " sun", " park"]
    ids = [first_token(tok, w) for w in words]
    assert [tok.decode([i]) for i in ids] == words
    model = constant_model(len(tok), dict(zip(ids, (2.0, 1.0, 0.0))), eos_token_id=tok.eos_token_id, rest=-50.0)
    n = 3000

    def shares(**knobs):
        texts = generate(model, tok, ["Once"] * n, Decoding(1, do_sample=True, seed=1, **knobs), batch_size=1000,
                         progress=False)
        assert set(texts) <= set(words)
        return [texts.count(w) / n for w in words]

    # softmax([2, 1, 0] / T), worked out: T=1 (.665, .245, .090), T=0.5 (.867, .117, .016), T=2 (.506, .307, .186)
    expected = {1.0: (0.6652, 0.2447, 0.0900), 0.5: (0.8668, 0.1173, 0.0159), 2.0: (0.5065, 0.3072, 0.1863)}
    for temperature, probs in expected.items():
        # 3000 draws: a standard error of at most 0.009, so 0.035 is about four of them
        assert shares(temperature=temperature) == pytest.approx(probs, abs=0.035), temperature
    assert shares(temperature=0.02) == [1.0, 0.0, 0.0]  # a temperature near 0 is greedy
    assert shares(temperature=1.0, top_k=1) == [1.0, 0.0, 0.0]
    assert shares(temperature=1.0, top_p=0.5) == [1.0, 0.0, 0.0]  # " cat" alone holds more than half
    greedy = generate(model, tok, ["Once"] * 3, Decoding(1), progress=False)
    assert greedy == [" cat"] * 3
    # top_k=0 keeps every token: a model with 2048 equally likely tokens gives hundreds of different draws
    # (transformers' own default, top_k=50, would allow at most 50)
    flat = constant_model(len(tok), {}, eos_token_id=tok.eos_token_id)
    drawn = generate(flat, tok, ["Once"] * 1000, Decoding(1, do_sample=True, seed=1), batch_size=1000, progress=False)
    assert len(set(drawn)) > 300


def test_generation_at_shifted_positions(pre):
    """Greedy answers read k positions further right equal those of a copy whose position rows moved up by k."""
    model, tok = pre
    k = 100
    moved = copy.deepcopy(model)
    with torch.no_grad():
        wpe = moved.wpe.weight
        wpe.copy_(torch.cat([wpe[k:], wpe[:k]]))
    prompts = ["Once upon a time,", "Lily had a red ball. She", "Tom"]
    shifted = generate(model, tok, prompts, Decoding(10), position_offset=k, progress=False)
    assert shifted == generate(moved, tok, prompts, Decoding(10), progress=False)
    assert shifted != generate(model, tok, prompts, Decoding(10), progress=False)
    sampled = Decoding(10, do_sample=True, seed=3)  # sampling reads the shifted positions too
    assert generate(model, tok, prompts, sampled, position_offset=k, progress=False) == \
        generate(moved, tok, prompts, sampled, progress=False)
    with pytest.raises(ValueError, match="exceeds the model's 1024 positions"):
        generate(model, tok, prompts, Decoding(10), position_offset=1020, progress=False)
