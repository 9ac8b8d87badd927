"""One run folder evaluated end to end: eval.json, eval.md, the command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, tiny_profile
from helpers.data import finetuning_examples
from helpers.evaluate import evaluate_run
from helpers.inference import Decoding, generate, perplexity
from helpers.learning_order import learning_order
from helpers.paper import PAPER_INSTRUCTIONS, PAPER_PERPLEXITY
from helpers.probes import qa_accuracy
from helpers.prompts import model_prompt
from helpers.runs import RunError, RunRecord, read_metrics, write_run_record
from helpers.sources import load_instructions
from helpers.stories import story_prompts
from helpers.text_metrics import consistency_share, grammar_share, repetition_table


@pytest.fixture
def no_judge(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


# ----------------------------------------------------------------- whole runs


def _copy(run: Path, tmp_path: Path) -> Path:
    """Evaluate a copy, so the shared fixture folders stay as training left them."""
    return Path(shutil.copytree(run, tmp_path / run.name))


KEYS = {"run", "stage", "settings", "model", "paper", "perplexity", "generations", "repetition", "grammar",
        "consistency", "instructions", "qa", "judge", "comparison", "learning_order", "elapsed_s",
        "json_path", "markdown_path"}


def test_evaluate_pretrained_run(pretrained_run, pre, tmp_path, capsys, no_judge):
    run = _copy(pretrained_run, tmp_path)
    report = evaluate_run(run, tiny_profile(), judge=True, learning_order=True, samples=2, max_new_tokens=16,
                          order_prompts=3, order_stories=2, progress=False)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Judging skipped")  # the judge's single line, nothing else
    saved = json.loads((run / "eval.json").read_text())
    assert set(saved) == KEYS and saved["stage"] == "pretrain" and saved == json.loads(json.dumps(report))
    assert saved["perplexity"]["loss"] == pytest.approx(read_metrics(run)[-1]["eval_loss"], rel=1e-5)
    assert saved["paper"]["perplexity"] == PAPER_PERPLEXITY["pretrain"]
    # every section is what the underlying functions give for the same model, prompts and seed
    model, tok = pre
    opening = saved["generations"]["paper_prompt"]
    assert opening["greedy"] == generate(model, tok, ["Once upon a time,"], Decoding(16), progress=False)[0]
    assert opening["sampled"] == generate(model, tok, ["Once upon a time,"] * 3, Decoding(16, do_sample=True, seed=0),
                                          progress=False)
    assert saved["settings"]["sampling"] == {"temperature": 1.0, "top_k": 0, "top_p": 1.0}
    prompts = story_prompts(2, seed=0, n_sentences=3)
    stories = saved["generations"]["stories"]
    assert [s["beginning"] for s in stories] == [b for b, _ in prompts]
    greedy = generate(model, tok, [b for b, _ in prompts], Decoding(16), progress=False)
    assert [s["greedy"] for s in stories] == greedy
    sampled = [s["sampled"] for s in stories]
    assert saved["grammar"] == {"greedy": grammar_share(greedy), "sampled": grammar_share(sampled)}
    assert saved["consistency"]["greedy"] == consistency_share([(s, t) for (_, s), t in zip(prompts, greedy)])
    assert saved["repetition"] == repetition_table({"greedy": greedy, "sampled": sampled})
    assert saved["judge"] == {"skipped": "no judge configured (OPENAI_API_KEY / OPENAI_BASE_URL)"}
    order = learning_order(run, prompts=3, cloze_stories=2, seed=0, profile=tiny_profile(), progress=False)
    assert saved["learning_order"]["rows"] == json.loads(json.dumps(order["rows"]))
    assert (run / "learning_order.png").stat().st_size > 0
    markdown = (run / "eval.md").read_text()
    assert "paper vs this run" in markdown and f"| {saved['perplexity']['perplexity']:,.4g} |" in markdown
    assert report["markdown_path"] == str(run / "eval.md")


def test_evaluate_prints_one_judge_skip_line(pretrained_run, tmp_path, capsys, no_judge):
    run = _copy(pretrained_run, tmp_path)
    evaluate_run(run, tiny_profile(), judge=True, samples=1, max_new_tokens=8, progress=False)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Judging skipped")


def test_evaluate_finetuned_run(finetuned_run, fin, tmp_path, capsys, no_judge):
    run = _copy(finetuned_run, tmp_path)
    report = evaluate_run(run, tiny_profile(), samples=2, max_new_tokens=16, progress=False)
    assert capsys.readouterr().out == ""
    saved = json.loads(Path(report["json_path"]).read_text())
    assert set(saved) == KEYS and saved["stage"] == "finetune"
    assert saved["paper"]["perplexity"] == PAPER_PERPLEXITY["finetune"]
    model, tok = fin
    held_out = finetuning_examples(tiny_profile().data, tok)[1]
    assert saved["perplexity"] == {**perplexity(model, held_out, batch_size=16, progress=False),
                                   "data": "held-out instructions", "examples": 20}
    names = ["healthy_tips", "concise_sentence"]
    assert [i["name"] for i in saved["instructions"]] == names
    assert [i["greedy"] for i in saved["instructions"]] == generate(
        model, tok, [model_prompt(PAPER_INSTRUCTIONS[n]) for n in names], Decoding(16), progress=False)
    records = load_instructions(tiny_profile().data)[1][:8]
    assert saved["qa"] == json.loads(json.dumps(qa_accuracy(model, tok, records, progress=False)))
    assert saved["judge"] is None and saved["comparison"] is None and saved["learning_order"] is None
    assert f"{PAPER_PERPLEXITY['finetune']:g}" in (run / "eval.md").read_text()


def test_missing_runs_raise_run_error(tmp_path):
    with pytest.raises(RunError, match=r"does not exist.*python -m helpers pretrain --out"):
        evaluate_run(tmp_path / "nothing", tiny_profile())
    half = tmp_path / "half"
    half.mkdir()
    write_run_record(half, RunRecord(stage="finetune", engine="fast", profile=tiny_profile().to_dict(),
                                     init="runs/pretrain", world_size=1, data={}, total_steps=10, warmup_steps=0,
                                     precision="fp32", device="cpu", global_batch=4))
    with pytest.raises(RunError, match=r"half.*no final model.*python -m helpers finetune --init runs/pretrain"):
        evaluate_run(half, tiny_profile())
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RunError, match=r"empty.*holds no model"):
        learning_order(empty)


def test_cli_evaluate(finetuned_run, tmp_path, capsys):
    from helpers.cli import main

    run = _copy(finetuned_run, tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in {"OPENAI_API_KEY", "OPENAI_BASE_URL"}}
    command = [sys.executable, "-m", "helpers", "evaluate", "--run", str(run), "--quiet", "--samples", "1"]
    # the run's own settings by default; another value is refused unless asked for on purpose (in this process)
    other = [*command, "--set", "data.instruction_limit=150"]
    capsys.readouterr()
    assert main(other[3:]) == 2 and not (run / "eval.json").exists()
    assert capsys.readouterr().err.startswith(f"error: run {str(run)!r} was trained with other settings than the "
                                              "ones given (data.instruction_limit: 200 there, 150 now)")
    done = subprocess.run([*other, "--other-settings"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == [str(run / "eval.md")]
    settings = json.loads((run / "eval.json").read_text())["settings"]
    assert (settings["samples"], settings["other_settings"]) == (1, ["data.instruction_limit: 200 there, 150 now"])
    assert main(["evaluate", "--run", str(tmp_path / "none")]) == 2
    assert "python -m helpers pretrain" in capsys.readouterr().err
