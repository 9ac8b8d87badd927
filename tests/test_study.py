"""The study command, shrunk to seconds: it trains, reuses what it trained, and writes its figure and numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT

SHRUNK = {"pretrain.max_steps": 6, "pretrain.save_every": 3, "pretrain.eval_every": 3, "pretrain.batch_size": 4,
          "data.train_stories": 300, "data.val_stories_count": 20, "data.block_size": 128,
          "data.instruction_limit": 200, "finetune.max_steps": 4,
          "finetune.save_every": 2, "finetune.eval_every": 2, "finetune.warmup_steps": 0, "finetune.batch_size": 4,
          "finetune.eval_max_batches": 1, "device": "cpu"}


def test_study_writes_its_answer_curve(tmp_path):
    args = [sys.executable, "-m", "helpers", "study", "--quiet", "--out", str(tmp_path / "runs"),
            "--figures", str(tmp_path / "figs"), "--stories", "2", "--prompts", "3"]
    args += [item for key, value in SHRUNK.items() for item in ("--set", f"{key}={value}")]
    first = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900, env=os.environ)
    assert first.returncode == 0, first.stderr
    result = json.loads((tmp_path / "figs" / "study_answers.json").read_text())
    assert [r["step"] for r in result["rows"]] == [0, 2, 4]  # the pretrained model, then every checkpoint
    assert result["settings"]["finetune.max_steps"] == 4 and result["stories"] == 2
    assert set(result["baselines"]) == set(result["rows"][0]) - {"step", "tokens", "all"}
    assert result["tokens"]["finetuning"] == result["rows"][-1]["tokens"] > 0
    final = result["rows"][-1]["all"]
    assert first.stdout.strip().endswith(
        f"study done: exact answers {final['share']:.3f} (95% {final['low']:.3f}-{final['high']:.3f}) on "
        f"{result['questions']} questions; figure {tmp_path / 'figs' / 'study_answers.png'}")
    again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900, env=os.environ)
    assert again.returncode == 0 and "reusing the finished run" in again.stdout  # it only measures again
    assert json.loads((tmp_path / "figs" / "study_answers.json").read_text())["rows"] == result["rows"]
    order = json.loads((tmp_path / "figs" / "study_learning_order.json").read_text())
    assert [r["step"] for r in order["rows"]] == [3, 6] and order["prompts"] == 3 and order["cloze_stories"] == 2
