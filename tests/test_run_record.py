"""run.json as a typed, versioned record with one reader and one writer; evaluation with the run's own settings."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import asdict

import pytest

from conftest import ROOT, tiny_profile
from helpers.config import ConfigError, get_profile
from helpers.evaluate import evaluate_run
from helpers.runs import (
    RUN_INFO, RUN_SCHEMA, RunError, RunRecord, model_stages, read_run_record, run_profile, write_run_record,
)

RECORD = RunRecord(stage="finetune", engine="fast", profile={"name": "lesson"}, init="runs/pretrain", world_size=1,
                   data={"train_examples": 40}, total_steps=10, warmup_steps=2, precision="fp32", device="cpu",
                   global_batch=4)


def test_a_trained_run_records_what_was_run(pretrained_run):
    record = read_run_record(pretrained_run)
    assert (record.stage, record.engine, record.init, record.world_size, record.schema) == ("pretrain", "fast", None, 1, 1)
    assert record.profile == tiny_profile().to_dict() and record.settings() == tiny_profile()
    assert (record.total_steps, record.warmup_steps, record.global_batch) == (30, 5, 8)
    assert json.loads((pretrained_run / RUN_INFO).read_text())["schema"] == RUN_SCHEMA
    assert run_profile(pretrained_run) == tiny_profile()
    assert [step for step, _ in model_stages(pretrained_run)] == [10, 20, 30]


def test_round_trip_and_a_record_from_before_the_schema(tmp_path):
    write_run_record(tmp_path, RECORD)
    assert read_run_record(tmp_path) == RECORD
    saved = json.loads((tmp_path / RUN_INFO).read_text())
    del saved["schema"]  # runs written before run.json was numbered have the same fields
    (tmp_path / RUN_INFO).write_text(json.dumps(saved))
    assert read_run_record(tmp_path) == RECORD


@pytest.mark.parametrize("change, message", [
    ({"schema": 2}, r"run.json' has schema 2; this version of helpers reads schema 1"),
    ({"total_steps": None, "device": None}, r"run.json' lacks device, total_steps"),
])
def test_a_record_it_cannot_read_is_refused_by_name(tmp_path, change, message):
    saved = {key: value for key, value in {**asdict(RECORD), **change}.items() if value is not None}
    (tmp_path / RUN_INFO).write_text(json.dumps(saved))
    with pytest.raises(RunError, match=message):
        read_run_record(tmp_path)


def test_broken_json_names_the_file(tmp_path):
    (tmp_path / RUN_INFO).write_text('{"stage": "pretrain",')
    with pytest.raises(RunError, match=r"run.json' is not valid JSON"):
        read_run_record(tmp_path)


def test_a_bare_model_folder_has_no_record_and_the_lesson_profile(tmp_path):
    assert read_run_record(tmp_path) is None
    assert run_profile(tmp_path) == get_profile("lesson")
    assert run_profile(tmp_path, fallback="paper") == get_profile("paper")


def test_only_the_runs_module_names_the_run_files():
    names = ('"run.json"', '"eval.json"', '"metrics.jsonl"', '"eval.md"')
    library = {p.name: p.read_text() for p in (ROOT / "src" / "helpers").glob("*.py") if p.name != "runs.py"}
    assert [(f, n) for f, text in library.items() for n in names if n in text] == []
    for notebook in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        code = "\n".join("".join(c["source"]) for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code")
        assert not re.search(r"[\"'](run|eval)\.json[\"']", code), notebook.name


def test_the_report_reads_evaluations_without_the_evaluation_stack():
    loaded = subprocess.run([sys.executable, "-c", "import sys, helpers.report; "
                             "print(sorted(m for m in ('helpers.evaluate', 'helpers.inference', 'helpers.probes') "
                             "if m in sys.modules))"], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


def test_evaluate_uses_the_runs_settings_and_refuses_others(pretrained_run, tmp_path):
    # evaluating writes eval.json into the run: a copy keeps the shared fixture as training left it (the
    # report reads the last validation perplexity of a run without one, tests/test_report.py)
    pretrained_run = shutil.copytree(pretrained_run, tmp_path / "pretrain")
    with pytest.raises(ConfigError, match=r"trained with other settings than the ones given \(data.block_size: 128 there, 288 now; .*; \.\.\.\)"):
        evaluate_run(pretrained_run, get_profile("lesson"), samples=1, max_new_tokens=4, progress=False)
    assert not (pretrained_run / "eval.json").exists()
    own = evaluate_run(pretrained_run, samples=1, max_new_tokens=4, progress=False)
    assert own["settings"]["other_settings"] == [] and own["settings"]["data"] == tiny_profile().to_dict()["data"]
    same_but_device = evaluate_run(pretrained_run, tiny_profile(device="auto"), samples=1, max_new_tokens=4,
                                   progress=False)
    assert same_but_device["perplexity"] == own["perplexity"]
    other = evaluate_run(pretrained_run, tiny_profile(**{"data.val_stories_count": 20}), other_settings=True,
                         samples=1, max_new_tokens=4, progress=False)
    assert other["settings"]["other_settings"] == ["data.val_stories_count: 40 there, 20 now"]
    assert other["perplexity"]["blocks"] < own["perplexity"]["blocks"]
