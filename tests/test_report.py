"""The report gathers the lessons' numbers and figures."""

from __future__ import annotations

import shutil

from helpers.report import MissingPrerequisite, lesson_paths, require_run, write_report


def test_report_from_runs_and_figures(tmp_path, pretrained_run, finetuned_run):
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copytree(pretrained_run, runs / "pretrain")
    shutil.copytree(finetuned_run, runs / "finetune")
    figures = tmp_path / "figures"
    figures.mkdir()
    (figures / "pretrain_lr.png").write_bytes(b"\x89PNG")
    report = write_report(lesson_paths(runs, figures), tmp_path / "build" / "report.md").read_text()
    assert "| pretraining | 10.1827 |" in report and "| finetuning | 394.8 |" in report
    assert "| 30 | 30,720 |" in report  # steps and tokens of the 30-step fixture run (8 x 128 per step)
    assert "![Pretraining learning rate (the paper's Fig. 10)](../figures/pretrain_lr.png)" in report
    assert "learning_order.png" not in report  # only figures that exist


def test_paths_and_prerequisites(tmp_path, monkeypatch, pretrained_run):
    monkeypatch.delenv("HELPERS_RUNS", raising=False)
    monkeypatch.delenv("HELPERS_FIGURES", raising=False)
    paths = lesson_paths()
    assert (str(paths.runs), str(paths.figures)) == ("../runs", "../figures")
    based = lesson_paths(base=tmp_path)
    assert based.pretrain == tmp_path / "../runs/pretrain"
    monkeypatch.setenv("HELPERS_RUNS", str(tmp_path / "r"))
    assert lesson_paths().finetune == tmp_path / "r" / "finetune"
    assert require_run(pretrained_run, "03_pretraining.ipynb") == pretrained_run
    try:
        require_run(tmp_path / "nothing", "03_pretraining.ipynb")
    except MissingPrerequisite as err:
        assert str(err) == f"no trained model in '{tmp_path / 'nothing'}': run 03_pretraining.ipynb first"
    else:
        raise AssertionError("no error for a missing run")
