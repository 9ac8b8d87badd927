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
from helpers.evaluate import evaluate_run
from helpers.learning_order import learning_order
from helpers.runs import RunError, read_metrics


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


def test_evaluate_pretrained_run(pretrained_run, tmp_path, capsys, no_judge):
    run = _copy(pretrained_run, tmp_path)
    report = evaluate_run(run, tiny_profile(), judge=True, learning_order=True, samples=2, max_new_tokens=16,
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
    evaluate_run(run, tiny_profile(), judge=True, samples=1, max_new_tokens=8, progress=False)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Judging skipped")


def test_evaluate_finetuned_run(finetuned_run, tmp_path, capsys, no_judge):
    run = _copy(finetuned_run, tmp_path)
    report = evaluate_run(run, tiny_profile(), samples=2, max_new_tokens=16, progress=False)
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
        evaluate_run(tmp_path / "nothing", tiny_profile())
    half = tmp_path / "half"
    half.mkdir()
    (half / "run.json").write_text(json.dumps({"stage": "finetune", "init": "runs/pretrain"}))
    with pytest.raises(RunError, match=r"half.*no final model.*python -m helpers finetune --init runs/pretrain"):
        evaluate_run(half, tiny_profile())
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RunError, match=r"empty.*holds no model"):
        learning_order(empty)


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
