"""Tests for helpers.evaluate, on the real models the conftest fixtures train."""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, tiny_profile
from helpers import evaluate as ev
from helpers.data import PROMPT_TEMPLATES, finetuning_examples, load_instructions, pretraining_blocks
from helpers.train import RunError, read_metrics

# The paper's two story continuations for "Once upon a time," (section 4.4).
PAPER_GPT2 = (
    "the world was a place of great beauty and great danger. The world was a place of great danger, and the "
    "world was a place of great danger. The world was a place of great danger, and the world was a place of "
    "great danger. The world was a place of great danger, and the world was a place of great danger."
)
PAPER_SMALL = (
    "there was a little girl named Lily who loved to draw with her cat. One day, she was playing outside and "
    "suddenly noticed something shiny in the garden. She wanted to build something in the distance. Kitty ran "
    "to her friend Tim and said, \"Welcome. You have to make me happy.\""
)


@pytest.fixture(scope="module")
def pre(pretrained_run):
    from transformers import AutoTokenizer

    from helpers.model import load_model

    return load_model(pretrained_run), AutoTokenizer.from_pretrained(str(pretrained_run))


@pytest.fixture(scope="module")
def fin(finetuned_run):
    from transformers import AutoTokenizer

    from helpers.model import load_model

    return load_model(finetuned_run), AutoTokenizer.from_pretrained(str(finetuned_run))


@pytest.fixture
def no_judge(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


# ----------------------------------------------------------------- perplexity


def test_perplexity_equals_trainer_eval_loss(pre, pretrained_run, tmp_path):
    import numpy as np
    from transformers import Trainer, TrainingArguments

    model, tok = pre
    blocks = pretraining_blocks(tiny_profile().data, "validation", tok, progress=False)
    ours = ev.perplexity(model, blocks, batch_size=16, progress=False)
    rows = [{"input_ids": ids.tolist(), "labels": ids.tolist()} for ids in np.asarray(blocks.array).astype(np.int64)]
    args = TrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=16, report_to="none", use_cpu=True)
    reference = Trainer(model=model, args=args, eval_dataset=rows).evaluate()["eval_loss"]
    assert ours["perplexity"] == pytest.approx(math.exp(reference), rel=1e-4)
    assert ours["tokens"] == len(blocks) * 127
    # and it is the very number the training loop logged at its last evaluation
    assert ours["loss"] == pytest.approx(read_metrics(pretrained_run)[-1]["eval_loss"], rel=1e-5)


def test_instruction_perplexity_scores_only_the_response(fin):
    import torch

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
    got = ev.perplexity(model, one, progress=False)
    assert got["tokens"] == len(picked)
    assert got["loss"] == pytest.approx(sum(picked) / len(picked), rel=1e-5)
    # padding two examples of different lengths into one batch changes nothing
    two = copy.copy(val)
    two.examples = val.examples[:2]
    second = copy.copy(val)
    second.examples = val.examples[1:2]
    parts = [ev.perplexity(model, s, progress=False) for s in (one, second)]
    joined = ev.perplexity(model, two, batch_size=2, progress=False)
    weighted = sum(p["loss"] * p["tokens"] for p in parts) / sum(p["tokens"] for p in parts)
    assert joined["loss"] == pytest.approx(weighted, rel=1e-5)


def _uniform(model):
    """The same network with a zero output layer: every token gets probability 1/V."""
    import torch

    model = copy.deepcopy(model)
    with torch.no_grad():
        model.get_output_embeddings().weight.zero_()
    return model


def test_word_perplexity_by_hand(pre, gpt2_dir):
    import torch
    from transformers import AutoTokenizer

    from helpers.config import ModelConfig
    from helpers.model import build_model

    texts = ["Lily had a red ball.", "Tom and his dog ran to the big park."]
    n_words = 5 + 9
    story_model, story_tok = pre
    gpt2_tok = AutoTokenizer.from_pretrained(str(gpt2_dir))
    gpt2_shaped = build_model(ModelConfig(vocab_size=50257, n_layer=1), seed=0)
    for model, tok in ((story_model, story_tok), (gpt2_shaped, gpt2_tok)):
        vocab = model.config.vocab_size
        n_tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)
        got = ev.text_perplexity(_uniform(model), tok, texts, block_size=4, progress=False)
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
    got = ev.text_perplexity(story_model, story_tok, texts, progress=False)
    assert got["word_perplexity"] == pytest.approx(math.exp(total / n_words), rel=1e-5)


# ----------------------------------------------------------------- generation


def test_paper_prompts():
    assert ev.PAPER_PROMPTS["story"] == "Once upon a time,"
    assert ev.PAPER_PROMPTS["healthy_tips"] == PROMPT_TEMPLATES["prompt_no_input"].format(
        instruction="Give three tips for staying healthy.")
    concise = ev.PAPER_PROMPTS["concise_sentence"]
    sentence = "He ran to the bus stop in order to catch the bus that was due to arrive in five minutes."
    assert f"### Input:\n{sentence}\n\n### Response: " in concise
    assert concise.endswith("### Response: ")


def test_generation_is_deterministic(pre):
    import torch

    model, tok = pre
    prompts = ["Once upon a time,", "Lily had a red ball.", "Tom", ""]
    state = torch.get_rng_state()
    a = ev.generate(model, tok, prompts, max_new_tokens=12, do_sample=True, seed=3, progress=False)
    b = ev.generate(model, tok, prompts, max_new_tokens=12, do_sample=True, seed=3, progress=False)
    c = ev.generate(model, tok, prompts, max_new_tokens=12, do_sample=True, seed=4, progress=False)
    assert torch.equal(state, torch.get_rng_state())  # the caller's random state is untouched
    assert a == b and a != c
    greedy = ev.generate(model, tok, prompts, max_new_tokens=12, seed=0, progress=False)
    assert greedy == ev.generate(model, tok, prompts, max_new_tokens=12, seed=99, progress=False)
    # left padding: a batch gives what each prompt gives alone
    alone = [ev.generate(model, tok, [p], max_new_tokens=12, progress=False)[0] for p in prompts]
    assert greedy == alone


def test_generation_stops_at_end_of_text(pre):
    model, tok = pre
    prompt = ["Once upon a time, there was a little girl named Lily. She loved to"]
    # sampled, so that the barely trained model does not repeat one token
    full = ev.generate(model, tok, prompt, max_new_tokens=16, do_sample=True, seed=3, progress=False)[0]
    new_ids = tok(full, add_special_tokens=False)["input_ids"]
    stop_at = next(i for i in range(1, len(new_ids)) if new_ids[i] not in new_ids[:i])
    stopper = copy.deepcopy(tok)
    stopper.eos_token = tok.convert_ids_to_tokens(new_ids[stop_at])  # make that token end the text
    cut = ev.generate(model, stopper, prompt, max_new_tokens=16, do_sample=True, seed=3, progress=False)[0]
    assert cut == tok.decode(new_ids[:stop_at])
    assert len(cut) < len(full)


# ----------------------------------------------------------------- repetition


def test_repetition_exact_values():
    loop = ev.repetition("The world was a place of great danger, and the world was a place of great danger.")
    assert loop == {"words": 17, "distinct_1": 9 / 17, "distinct_2": 9 / 16, "distinct_3": 9 / 15,
                    "repeated_4gram_share": pytest.approx(5 / 14)}
    fresh = ev.repetition("Don't stop, Lily ran home!")
    assert fresh == {"words": 5, "distinct_1": 1.0, "distinct_2": 1.0, "distinct_3": 1.0,
                     "repeated_4gram_share": 0.0}
    assert ev.repetition("Hi there.") == {"words": 2, "distinct_1": 1.0, "distinct_2": 1.0, "distinct_3": None,
                                          "repeated_4gram_share": None}


def test_papers_gpt2_loop_scores_high_repetition():
    gpt2, small = ev.repetition(PAPER_GPT2), ev.repetition(PAPER_SMALL)
    assert gpt2["repeated_4gram_share"] > 0.7 > 0.0 == small["repeated_4gram_share"]
    assert gpt2["distinct_2"] < 0.3 < 0.9 < small["distinct_2"]


def test_repetition_table_averages_per_model():
    rows = ev.repetition_table({"a": ["one two three four", "one one one one one"], "b": ["Hi there."]})
    assert rows[0]["model"] == "a" and rows[0]["texts"] == 2
    assert rows[0]["distinct_1"] == pytest.approx((1.0 + 0.2) / 2)
    assert rows[0]["repeated_4gram_share"] == pytest.approx((0.0 + 0.5) / 2)
    assert rows[1]["distinct_3"] is None and rows[1]["distinct_1"] == 1.0


# ----------------------------------------------------------------- learning-order measures


def test_grammar_share():
    from helpers.stories import corpus

    assert ev.grammar_share([s.text for s in corpus("validation", 5)]) == 1.0
    assert ev.grammar_share(["ball the Lily red had. Dog cat the ran park!", "happy was very the."]) == 0.0
    assert ev.grammar_share([" She had a red ball. She was so"]) == 1.0  # the cut-off fragment is left out
    assert ev.grammar_share([' She had a red ball. "Let\'s go!']) == 1.0  # an open quote is unfinished
    assert ev.grammar_share([" She had a red ball. Ball red a had she."]) == 0.5
    assert ev.grammar_share(["no sentence ends here", ""]) == 0.0


def test_consistency_share():
    from helpers.stories import GIRL_NAMES, corpus, entities

    story = next(s for s in corpus("validation", 50) if entities(s.beginning(3))["objects"])
    beginning = entities(story.beginning(3))
    assert beginning["names"] == {story.hero} and len(beginning["objects"]) == 1
    (thing,) = beginning["objects"]
    one, two = [n for n in GIRL_NAMES if n != story.hero][:2]
    pairs = [(story, f" Then {story.hero} found the {thing}."),               # hero and thing: consistent
             (story, f" Then she found the {thing}."),                        # a pronoun is no mention
             (story, f" {story.hero} and {one} played with the {thing}."),    # one friend is allowed
             (story, f" {story.hero}, {one} and {two} saw the {thing}."),     # two strangers: lost track
             (story, f" Then {story.hero} smiled.")]                          # the {thing} is forgotten
    assert ev.consistency_share(pairs) == pytest.approx(2 / 5)
    assert ev.consistency_share(pairs[:1]) == 1.0
    assert ev.consistency_share([]) == 0.0


def test_qa_normalisation_and_accuracy(fin):
    assert ev.normalise_answer("The red ball.") == ev.normalise_answer("a red ball") == "red ball"
    assert ev.normalise_answer('  "An  Apple!" ') == "apple"
    assert ev.normalise_answer("in the park.") == "in the park"
    model, tok = fin
    records = load_instructions(tiny_profile().data)[1][:6]
    first = ev.qa_accuracy(model, tok, records, max_new_tokens=6, examples=6, progress=False)
    assert first["n"] == 6 and sum(k["n"] for k in first["by_kind"].values()) == 6
    assert set(first["by_kind"]) <= {"who", "what", "where", "feeling", "yes_no"}
    # expected answers rewritten as the model's own, in capitals and with a full stop: all exact matches
    echoed = [{**r, "output": f"  {row['got'].upper()}. "} for r, row in zip(records, first["examples"])]
    again = ev.qa_accuracy(model, tok, echoed, max_new_tokens=6, progress=False)
    assert again["accuracy"] == 1.0 and again["correct"] == 6
    assert 0.0 <= first["template"] <= 1.0


@pytest.mark.parametrize("kind, answer, fits", [
    ("who", "Grandma.", True), ("who", "Lily", True), ("who", "the park", False),
    ("where", "In the beach", False), ("where", "at the beach", True), ("where", "under a bench", True),
    ("feeling", "Glad!", True), ("feeling", "Tom", False),
    ("what", "The red ball.", True), ("what", "a noisy tractor", True), ("what", "a kitten", True),
    ("what", "ball red", False), ("yes_no", "Yes.", True), ("yes_no", "maybe", False), ("other", "yes", None),
])
def test_answer_fits_kind(kind, answer, fits):
    assert ev.answer_fits_kind(kind, answer) is fits


def test_learning_order_rows(pretrained_run, finetuned_run):
    rows = ev.learning_order(pretrained_run, finetune_run=finetuned_run, prompts=3, questions=3,
                             max_new_tokens=16, progress=False)
    assert [(r["stage"], r["step"]) for r in rows] == [("pretrain", 10), ("pretrain", 20), ("pretrain", 30),
                                                       ("finetune", 0), ("finetune", 5), ("finetune", 10)]
    tokens = [r["tokens"] for r in rows]
    assert tokens[:3] == [10 * 8 * 128, 20 * 8 * 128, 30 * 8 * 128]
    assert tokens[3] == tokens[2]  # finetuning step 0 is the final pretrained model
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens) - 1
    fine = read_metrics(finetuned_run)
    assert tokens[-1] == tokens[2] + fine[-1]["tokens"]
    for row in rows:
        assert 0.0 <= row["grammar"] <= 1.0 and 0.0 <= row["consistency"] <= 1.0
    # the same weights with the same seed write the same continuations
    assert (rows[3]["grammar"], rows[3]["consistency"]) == (rows[2]["grammar"], rows[2]["consistency"])
    assert all("answers" not in r for r in rows[:3])
    assert all(0.0 <= r["answers"] <= 1.0 and 0.0 <= r["answer_template"] <= 1.0 for r in rows[3:])
    assert rows[3]["answer_template"] == 0.0  # the pretrained model goes on telling a story


# ----------------------------------------------------------------- comparison


def test_load_comparison_gpt2_skips_fast_without_hub(monkeypatch, capsys):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    start = time.perf_counter()
    loaded = ev.load_comparison("gpt2")
    elapsed = time.perf_counter() - start
    if loaded is not None:
        pytest.skip("gpt2 is in this machine's Hugging Face cache")
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "skipped" in lines[0] and "'gpt2'" in lines[0], lines
    assert elapsed < 5.0


def test_load_comparison_other_skip_paths(monkeypatch, capsys, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert ev.load_comparison("helpers-tests/never-published-model") is None
    assert ev.load_comparison(tmp_path) is None  # a folder without a model
    assert ev.load_comparison(tmp_path / "missing") is None
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all("skipped" in line for line in lines)
    assert "HF_HUB_OFFLINE" in lines[0]


def test_compare_two_local_models(pre, pretrained_run, capsys):
    from helpers.stories import corpus

    model, tok = pre
    early = ev.load_comparison(pretrained_run / "checkpoint-10")
    assert early is not None and capsys.readouterr().out == ""
    texts = [s.text for s in corpus("validation", 3)]
    prompts = ["Once upon a time,", "Lily had a red ball."]
    out = ev.compare_models({"final": (model, tok), "step 10": early}, texts, prompts, max_new_tokens=10,
                            progress=False)
    assert set(out["perplexity"]) == {"final", "step 10"}
    assert out["perplexity"]["final"]["word_perplexity"] < out["perplexity"]["step 10"]["word_perplexity"]
    assert out["perplexity"]["final"]["words"] == out["perplexity"]["step 10"]["words"]
    assert all(len(g["greedy"]) == len(g["sampled"]) == 2 for g in out["generations"].values())
    assert [r["model"] for r in out["repetition"]] == ["final, greedy", "final, sampled",
                                                       "step 10, greedy", "step 10, sampled"]
    assert out["judge"] is None
    json.dumps(out)


# ----------------------------------------------------------------- whole runs


def _copy(run: Path, tmp_path: Path) -> Path:
    """Evaluate a copy, so the shared fixture folders stay as training left them."""
    return Path(shutil.copytree(run, tmp_path / run.name))


KEYS = {"run", "stage", "settings", "model", "paper", "perplexity", "generations", "repetition", "grammar",
        "consistency", "instructions", "qa", "judge", "comparison", "learning_order", "elapsed_s",
        "json_path", "markdown_path"}


def test_evaluate_pretrained_run(pretrained_run, tmp_path, capsys, no_judge):
    run = _copy(pretrained_run, tmp_path)
    report = ev.evaluate_run(run, tiny_profile(), judge=True, learning_order=True, samples=2, max_new_tokens=16,
                             progress=False)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Judging skipped")  # the judge's single line, nothing else
    saved = json.loads((run / "eval.json").read_text())
    assert set(saved) == KEYS and saved["stage"] == "pretrain"
    assert saved["perplexity"]["loss"] == pytest.approx(read_metrics(run)[-1]["eval_loss"], rel=1e-5)
    assert saved["paper"]["perplexity"] == 10.1827
    assert len(saved["generations"]["stories"]) == 2 and len(saved["generations"]["paper_prompt"]["sampled"]) == 3
    assert set(saved["grammar"]) == set(saved["consistency"]) == {"greedy", "sampled"}
    assert saved["judge"] == {"skipped": "no judge configured (OPENAI_API_KEY / OPENAI_BASE_URL)"}
    assert [r["step"] for r in saved["learning_order"]["rows"]] == [10, 20, 30]
    assert (run / "learning_order.png").stat().st_size > 0
    markdown = (run / "eval.md").read_text()
    assert "paper vs this run" in markdown and "10.18" in markdown
    assert report["markdown_path"] == str(run / "eval.md")


def test_evaluate_prints_one_judge_skip_line(pretrained_run, tmp_path, capsys, no_judge):
    run = _copy(pretrained_run, tmp_path)
    ev.evaluate_run(run, tiny_profile(), judge=True, samples=1, max_new_tokens=8, progress=False)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Judging skipped")


def test_evaluate_finetuned_run(finetuned_run, tmp_path, capsys, no_judge):
    run = _copy(finetuned_run, tmp_path)
    report = ev.evaluate_run(run, tiny_profile(), samples=2, max_new_tokens=16, progress=False)
    assert capsys.readouterr().out == ""
    saved = json.loads(Path(report["json_path"]).read_text())
    assert set(saved) == KEYS and saved["stage"] == "finetune"
    assert saved["paper"]["perplexity"] == 394.8
    assert saved["perplexity"]["data"] == "held-out instructions" and saved["perplexity"]["examples"] == 20
    assert [i["name"] for i in saved["instructions"]] == ["healthy_tips", "concise_sentence"]
    assert saved["qa"]["n"] == 8 and saved["qa"]["by_kind"]
    assert saved["judge"] is None and saved["comparison"] is None and saved["learning_order"] is None
    assert "394.8" in (run / "eval.md").read_text()


def test_missing_runs_raise_run_error(tmp_path):
    with pytest.raises(RunError, match=r"does not exist.*python -m helpers pretrain --out"):
        ev.evaluate_run(tmp_path / "nothing", tiny_profile())
    half = tmp_path / "half"
    half.mkdir()
    (half / "run.json").write_text(json.dumps({"stage": "finetune", "init": "runs/pretrain"}))
    with pytest.raises(RunError, match=r"half.*no final model.*python -m helpers finetune --init runs/pretrain"):
        ev.evaluate_run(half, tiny_profile())
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RunError, match=r"empty.*holds no model"):
        ev.learning_order(empty)


def test_cli_evaluate(finetuned_run, tmp_path):
    run = _copy(finetuned_run, tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in {"OPENAI_API_KEY", "OPENAI_BASE_URL"}}
    command = [sys.executable, "-m", "helpers", "evaluate", "--run", str(run), "--quiet", "--samples", "1",
               "--set", "data.val_stories_count=40", "--set", "data.instruction_limit=200"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == [str(run / "eval.md")]
    assert json.loads((run / "eval.json").read_text())["settings"]["samples"] == 1
    missing = subprocess.run([sys.executable, "-m", "helpers", "evaluate", "--run", str(tmp_path / "none")],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "python -m helpers pretrain" in missing.stderr
