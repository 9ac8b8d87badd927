"""The learning order of a pretraining run and the answer curve of a finetuning run, checked value by value."""

from __future__ import annotations

from collections import Counter

import pytest
from transformers import AutoTokenizer

from conftest import tiny_profile
from helpers.inference import SAMPLING, generate
from helpers.learning_order import answer_curve, learning_order
from helpers.model import load_model
from helpers.probes import cloze_accuracy, qa_accuracy
from helpers.runs import checkpoint_dir, read_metrics
from helpers.sources import held_out_questions, load_instructions
from helpers.stats import share
from helpers.stories import corpus, story_prompts
from helpers.story_cloze import cloze_items
from helpers.text_metrics import consistent_continuations, grammatical_sentences, normalise_answer


def test_learning_order_measures_every_checkpoint(pretrained_run):
    order = learning_order(pretrained_run, prompts=4, cloze_stories=3, max_new_tokens=16, seed=5,
                           profile=tiny_profile(), progress=False)
    rows = order["rows"]
    assert [r["step"] for r in rows] == [10, 20, 30]
    assert [r["tokens"] for r in rows] == [r["tokens"] for r in read_metrics(pretrained_run) if r["step"] in (10, 20, 30)]
    # the middle row, recomputed by hand from checkpoint 20
    model, tok = load_model(checkpoint_dir(pretrained_run, 20)), AutoTokenizer.from_pretrained(str(pretrained_run))
    prompts = story_prompts(4, seed=0, n_sentences=3)
    texts = generate(model, tok, [b for b, _ in prompts], max_new_tokens=16, do_sample=True, seed=5,
                     progress=False, **SAMPLING)
    good, total = grammatical_sentences(texts)
    assert rows[1]["grammar"] == (share(good, total) if total else
                                  {"share": 0.0, "low": 0.0, "high": 1.0, "successes": 0, "n": 0})
    assert rows[1]["consistency"] == share(consistent_continuations([(s, t) for (_, s), t in zip(prompts, texts)]), 4)
    items = [i for story in corpus("validation", 3) for i in cloze_items(story)]
    assert rows[1]["cloze"] == cloze_accuracy(model, tok, items)
    assert order["prompts"] == 4 and order["cloze_items"] == len(items) == 12
    refs = order["references"]
    assert refs["grammar"] == {"the stories' own continuations": 1.0}
    assert refs["consistency"]["the stories' own continuations"] >= 0.75
    assert refs["consistency"]["another story's continuation"] <= 0.25
    assert refs["cloze"]["chance"]["who"] == pytest.approx(sum(i.chance for i in items if i.kind == "who") / 3)


def test_answer_curve_from_the_init_model_to_the_end(pretrained_run, finetuned_run):
    profile = tiny_profile()
    curve = answer_curve(finetuned_run, stories=3, profile=profile, progress=False)
    assert [r["step"] for r in curve["rows"]] == [0, 5, 10]
    questions = held_out_questions(3)
    assert curve["questions"] == len(questions) and curve["stories"] == 3
    tok = AutoTokenizer.from_pretrained(str(finetuned_run))
    start = qa_accuracy(load_model(pretrained_run), tok, questions, max_new_tokens=12, progress=False)
    assert curve["rows"][0]["all"]["share"] == start["accuracy"] and curve["rows"][0]["tokens"] == 0
    assert curve["rows"][0]["all"]["right_form"] == start["template"]
    assert curve["rows"][-1]["tokens"] == read_metrics(finetuned_run)[-1]["tokens"]
    training = load_instructions(profile.data)[0]  # baselines from the training questions only
    for kind, baseline in curve["baselines"].items():
        held = [q for q in questions if q["kind"] == kind]
        common = "no" if kind == "yes_no" else Counter(
            normalise_answer(r["output"]) for r in training if r["kind"] == kind).most_common(1)[0][0]
        assert baseline["answer"] == common
        assert baseline["share"] == sum(normalise_answer(q["output"]) == common for q in held) / len(held)
    assert answer_curve(pretrained_run, profile=tiny_profile(**{"data.instructions": "x.json"}),
                        progress=False) == {"skipped": "answers are scored on the embedded story questions only"}
