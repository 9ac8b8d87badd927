"""Without the Hugging Face hub, the paper profile stops at once with one message naming the local-file settings."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT

NO_HUB = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "", "HF_DATASETS_OFFLINE": ""}  # nothing listens


def _run(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, **NO_HUB}
    return subprocess.run([sys.executable, "-m", "helpers", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_pretraining_on_hub_stories_stops_before_writing_anything(tmp_path):
    done = _run("pretrain", "--profile", "paper", "--out", str(tmp_path / "run"))
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: data.stories='hub' needs the Hugging Face hub (roneneldan/TinyStories), "
                           "which is unreachable: 127.0.0.1 unreachable")
    assert "Without the hub, use local files: --set data.stories=PATH for a TinyStories .txt file" in line
    assert "(a notebook's parameter stories=...)" in line
    assert not (tmp_path / "run").exists()


def test_finetuning_on_hub_instructions_names_alpaca(tmp_path, pretrained_run):
    done = _run("finetune", "--profile", "paper", "--init", str(pretrained_run), "--out", str(tmp_path / "ft"))
    assert done.returncode == 2
    assert "data.instructions='hub' needs the Hugging Face hub (tatsu-lab/alpaca)" in done.stderr
    assert "--set data.instructions=PATH for an alpaca_data.json file" in done.stderr
    assert not (tmp_path / "ft").exists()


def test_the_paper_report_stops_before_the_first_lesson(tmp_path):
    done = _run("report", "--profile", "paper", "--out", str(tmp_path / "build"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "data.stories and data.instructions='hub' needs the Hugging Face hub" in done.stderr
    assert not (tmp_path / "build").exists()  # no lesson ran
