"""Evaluation paths that change a reported number: a run trained at shifted positions, the judge, --compare, --data."""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from conftest import GPT2_TOKENIZER, TINYSTORIES_VALID, tiny_profile
from rigged import constant_model, first_token, one_thread, parity_model, save_model  # noqa: F401 - one_thread: a fixture
from test_judge import StubState, _assessment, _grades_reply, stub  # noqa: F401 - stub: a fixture
from helpers.data import finetuning_examples
from helpers.evaluate import evaluate_run
from helpers.inference import Decoding, generate, perplexity
from helpers.judge import build_conversation
from helpers.paper import PAPER_INSTRUCTIONS
from helpers.prompts import model_prompt
from helpers.sources import load_instructions, load_stories


def _copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / run.name))


def _moved(model, k: int):
    """The same model with its position rows moved up by ``k``: reading at position p what row p + k holds."""
    moved = copy.deepcopy(model)
    with torch.no_grad():
        wpe = moved.wpe.weight
        wpe.copy_(torch.cat([wpe[k:], wpe[:k]]))
    return moved


# ----------------------------------------------------------------- data.position_offset


def test_a_run_trained_at_shifted_positions_is_evaluated_there(finetuned_run, pre, tmp_path, monkeypatch,
                                                                one_thread):
    """Perplexity, story answers and the paper's instructions of a run trained with ``data.position_offset``.

    The run's ``run.json`` says it was trained 100 positions to the right; evaluating it must read every
    prompt and example there, which is what a copy whose position rows moved up by 100 reads at 0. The
    run holds the pretrained model (the 10-step finetuned one answers every question with end-of-text
    wherever it reads it): its answers depend on where it reads.
    """
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    k = 100
    run = _copy(finetuned_run, tmp_path)
    info = json.loads((run / "run.json").read_text())
    info["profile"]["data"]["position_offset"] = k
    (run / "run.json").write_text(json.dumps(info))
    model, tok = pre
    save_model(model, run)
    report = evaluate_run(run, samples=1, max_new_tokens=8, progress=False)
    assert report["settings"]["data"]["position_offset"] == k
    moved = _moved(model, k)
    plain = tiny_profile()  # the same settings at offset 0
    held_out = finetuning_examples(plain.data, tok)[1]
    expected = perplexity(moved, held_out, batch_size=16, progress=False)
    assert report["perplexity"]["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert report["perplexity"]["tokens"] == expected["tokens"]
    unshifted = perplexity(model, held_out, batch_size=16, progress=False)["loss"]
    assert abs(unshifted - expected["loss"]) > 1e-3  # the offset really changes the number
    prompts = [model_prompt(record) for record in PAPER_INSTRUCTIONS.values()]
    assert [i["greedy"] for i in report["instructions"]] == generate(moved, tok, prompts, Decoding(8),
                                                                     progress=False)
    # The story questions, asked a model whose answer shows where it read: after reading at an even
    # position it writes " cat", after an odd one " sun". A prompt of n tokens read from position 101
    # ends at n + 100, so its answer starts with " cat" when n is even (at position 0: when n is odd).
    parity = parity_model(len(tok), first_token(tok, " cat"), first_token(tok, " sun"), eos_token_id=tok.eos_token_id)
    save_model(parity, run)
    info["profile"]["data"]["position_offset"] = 101
    (run / "run.json").write_text(json.dumps(info))
    report = evaluate_run(run, samples=1, max_new_tokens=8, progress=False)
    records = load_instructions(plain.data)[1][:4]  # 4 x samples held-out questions
    lengths = [len(tok(model_prompt(r), add_special_tokens=False)["input_ids"]) for r in records]
    assert len({n % 2 for n in lengths}) == 2  # prompts of both parities

    def answer(n, offset):  # 16 new tokens, alternating from the parity of the last prompt position
        return " ".join(("cat", "sun")[(n - 1 + offset + j) % 2] for j in range(16))

    assert [r["got"] for r in report["qa"]["examples"]] == [answer(n, 101) for n in lengths]
    assert [answer(n, 101) for n in lengths] != [answer(n, 0) for n in lengths]
    assert (report["qa"]["successes"], report["qa"]["n"]) == (0, 4)


# ----------------------------------------------------------------- the judge and the comparison


def _uniform_gpt2(folder: Path) -> Path:
    """A model folder --compare can load offline: GPT-2's tokenizer and a 1-layer model giving every token 1/50257."""
    save_model(constant_model(50257, {}, eos_token_id=50256), folder)
    for name in ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (GPT2_TOKENIZER / name).exists():
            shutil.copy(GPT2_TOKENIZER / name, folder / name)
    return folder


def test_evaluate_with_a_judge_and_a_comparison(pretrained_run, stub, tmp_path, one_thread):
    """A real HTTP judge and a comparison model whose numbers are known.

    The judge grades grammar 2 for a completion of exclamation marks (the comparison model's), else 7;
    creativity, consistency and plot are always 7, 8 and 6.
    """
    stub.default_case = lambda exercise: "ok-2" if "***!!!!!!!!" in exercise else "ok-7"
    run = _copy(pretrained_run, tmp_path)
    other = _uniform_gpt2(tmp_path / "uniform-gpt2")
    report = evaluate_run(run, samples=2, max_new_tokens=8, judge=True, compare=str(other), progress=False)
    saved = json.loads((run / "eval.json").read_text())
    assert saved["settings"]["judge"] is True and saved["settings"]["compare"] == str(other)
    # the judge graded the greedy continuation of each of the 2 held-out beginnings
    stories = saved["generations"]["stories"]
    grades = {"grammar": 7.0, "creativity": 7.0, "consistency": 8.0, "plot": 6.0}
    assert saved["judge"]["summary"] == {**grades, "n_items": 2, "n_parsed": 2, "n_failed": 0}
    assert [g["assessment"] for g in saved["judge"]["grades"]] == [_assessment("ok-7")] * 2
    assert [g["raw"] for g in saved["judge"]["grades"]] == [_grades_reply(7)] * 2
    cached = [json.loads(p.read_text()) for p in (run / "judge-cache").iterdir()]
    exercises = {record["messages"][0]["content"] for record in cached}
    for story in stories:
        assert build_conversation(story["beginning"], story["greedy"])[0]["content"] in exercises
    assert "sk-test-ordinary-key" not in (run / "eval.json").read_text()
    # the comparison: the same 3 prompts (the paper's story opening, then the 2 beginnings) for both
    comparison = saved["comparison"]
    name = str(other)
    assert comparison["prompts"] == ["Once upon a time,"] + [s["beginning"] for s in stories]
    ours = comparison["generations"]["this run"]
    assert ours["greedy"] == [saved["generations"]["paper_prompt"]["greedy"]] + [s["greedy"] for s in stories]
    # every token equally likely: greedy takes the first id, "!", every time; per-token perplexity is 50257
    assert comparison["generations"][name]["greedy"] == ["!" * 8] * 3
    texts = load_stories(tiny_profile().data, "validation")[:16]  # 8 x samples held-out stories
    assert comparison["texts"] == len(texts) == 16
    words = sum(len(t.split()) for t in texts)
    uniform = comparison["perplexity"][name]
    assert uniform["words"] == words and uniform["texts"] == 16
    assert uniform["token_perplexity"] == pytest.approx(50257, rel=1e-5)
    assert uniform["nats"] == pytest.approx(uniform["tokens"] * math.log(50257), rel=1e-5)
    assert uniform["word_perplexity"] == pytest.approx(50257 ** (uniform["tokens"] / words), rel=1e-4)
    assert comparison["perplexity"]["this run"]["words"] == words
    assert [r["model"] for r in comparison["repetition"]] == ["this run, greedy", "this run, sampled",
                                                             f"{name}, greedy", f"{name}, sampled"]
    # both models' greedy continuations judged: 3 each
    assert comparison["judge"] == {"this run": {**grades, "n_items": 3, "n_parsed": 3, "n_failed": 0},
                                   name: {**grades, "grammar": 2.0, "n_items": 3, "n_parsed": 3, "n_failed": 0}}
    # 2 turns per item: the run's 2 continuations, then the comparison's 6, of which the run's 2 for the
    # beginnings are already in the cache: (2 + 4) x 2 requests
    assert stub.requests == 12
    assert report["comparison"] == comparison



# ----------------------------------------------------------------- --data on the command line


def test_the_data_option_reaches_the_profile_of_each_command(monkeypatch, tmp_path, capsys):
    """--data PATH is the stories of pretrain and evaluate, the instructions of finetune; nothing else changes."""
    import helpers.cli as cli
    from conftest import ALPACA_335

    seen = {}

    class Done:
        steps, out_dir = 1, "somewhere"

        def losses_line(self):
            return "loss 1.0"

    def fake_train(stage, profile, out, **options):
        seen[stage] = profile
        return Done()

    def fake_evaluate(run, profile=None, **options):
        seen["evaluate"] = profile
        return {"markdown_path": "eval.md"}

    monkeypatch.setattr(cli, "train", fake_train)
    monkeypatch.setattr(cli, "evaluate_run", fake_evaluate)
    stories, alpaca = str(TINYSTORIES_VALID), str(ALPACA_335)
    assert cli.main(["pretrain", "--out", str(tmp_path / "p"), "--set", "device=cpu", "--data", stories]) == 0
    assert cli.main(["finetune", "--init", str(tmp_path / "p"), "--out", str(tmp_path / "f"), "--set", "device=cpu",
                     "--data", alpaca]) == 0
    assert cli.main(["evaluate", "--run", str(tmp_path / "p"), "--set", "device=cpu", "--data", stories]) == 0
    assert (seen["pretrain"].data.stories, seen["pretrain"].data.instructions) == (stories, "embedded")
    assert (seen["finetune"].data.stories, seen["finetune"].data.instructions) == ("embedded", alpaca)
    assert (seen["evaluate"].data.stories, seen["evaluate"].data.instructions) == (stories, "embedded")
    # without --data, the profile's own sources
    assert cli.main(["pretrain", "--out", str(tmp_path / "q"), "--set", "device=cpu"]) == 0
    assert seen["pretrain"].data.stories == "embedded"
    capsys.readouterr()


def test_evaluate_loads_the_model_on_the_device_asked_for_else_the_runs_own(pretrained_run, monkeypatch):
    import helpers.evaluate as evaluate

    asked = []

    def stop_at_load(run_dir, profile, device):
        asked.append((device, profile.data.val_stories_count))
        raise RuntimeError("loaded")

    monkeypatch.setattr(evaluate, "load_run", stop_at_load)
    for device in ("meta", None):
        with pytest.raises(RuntimeError, match="loaded"):
            evaluate_run(pretrained_run, device=device, progress=False)
    assert asked == [("meta", 40), ("cpu", 40)]  # the run's own settings (conftest.TINY), on the device asked for
