"""The report gathers the lessons' numbers and figures; lessons find their folders and prerequisites."""

from __future__ import annotations

import json
import shutil

from helpers.lessons import MissingPrerequisite, lesson_paths, require_run
from helpers.markdown import fmt
from helpers.report import write_report
from helpers.runs import read_metrics


def test_report_from_runs_and_figures(tmp_path, pretrained_run, finetuned_run):
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copytree(pretrained_run, runs / "pretrain")
    shutil.copytree(finetuned_run, runs / "finetune")
    (runs / "finetune" / "eval.json").write_text(json.dumps({  # an evaluation of the finetuned run
        "perplexity": {"perplexity": 12.3456},
        "qa": {"share": 0.25, "right_form": 0.75, "by_kind": {"who": {"share": 0.5, "right_form": 1.0}}}}))
    figures = tmp_path / "figures"
    figures.mkdir()
    (figures / "pretrain_lr.png").write_bytes(b"\x89PNG")
    report = write_report(lesson_paths(runs, figures), tmp_path / "build" / "report.md").read_text()
    pre, fine = read_metrics(pretrained_run), read_metrics(finetuned_run)
    pre_time = f"{fmt(pre[-1]['elapsed_s'] / 60, 3)} min on cpu (fp32)"
    # pretraining: no eval.json, so the last logged validation perplexity; finetuning: eval.json's
    assert (f"| pretraining | 10.18 | {fmt(pre[-1]['perplexity'])} | 30 | 30,720 | {pre_time} |") in report
    assert f"| finetuning | 394.8 | 12.35 | 10 | {fine[-1]['tokens']:,} |" in report
    assert "| who | 0.5 | 1 |" in report and "| all | 0.25 | 0.75 |" in report
    assert "![Pretraining learning rate (the paper's Fig. 10)](../figures/pretrain_lr.png)" in report
    assert "learning_order.png" not in report  # only figures that exist
    shutil.rmtree(runs / "finetune")
    assert "| finetuning | 394.8 | not run |" in write_report(lesson_paths(runs, figures), tmp_path / "r.md").read_text()


def test_paths_and_prerequisites(tmp_path, monkeypatch, pretrained_run):
    monkeypatch.delenv("HELPERS_RUNS", raising=False)
    monkeypatch.delenv("HELPERS_FIGURES", raising=False)
    paths = lesson_paths()
    assert (str(paths.runs), str(paths.figures)) == ("../runs", "../figures")
    based = lesson_paths(base=tmp_path)
    assert based.pretrain == tmp_path / "../runs/pretrain"
    solutions = tmp_path / "notebooks" / "solutions"  # a worked solution reads the runs its lesson wrote
    assert lesson_paths(base=solutions).pretrain == solutions / "../../runs/pretrain"
    assert lesson_paths(base=solutions).figures == solutions / "../../figures"
    student = tmp_path / "notebooks" / "student"  # the copies `make exercises` hands out
    assert lesson_paths(base=student).pretrain == student / "../../runs/pretrain"
    elsewhere = tmp_path / "work" / "student"  # a folder of that name outside notebooks/ is not one of them
    assert lesson_paths(base=elsewhere).pretrain == elsewhere / "../runs/pretrain"
    monkeypatch.setenv("HELPERS_RUNS", str(tmp_path / "r"))
    assert lesson_paths().finetune == tmp_path / "r" / "finetune"
    assert require_run(pretrained_run, "03_pretraining.ipynb") == pretrained_run
    try:
        require_run(tmp_path / "nothing", "03_pretraining.ipynb")
    except MissingPrerequisite as err:
        assert str(err) == f"no trained model in '{tmp_path / 'nothing'}': run 03_pretraining.ipynb first"
    else:
        raise AssertionError("no error for a missing run")


def test_a_stored_lesson_keeps_outputs_and_drops_papermills_bookkeeping(tmp_path):
    from helpers.lessons import store_lesson

    cell = {"cell_type": "code", "execution_count": 3, "source": ["train()"],
            "metadata": {"papermill": {"duration": 1.5}, "execution": {"iopub.status.busy": "2026"}, "tags": []},
            "outputs": [{"output_type": "stream", "name": "stdout",
                         "text": ["run:   0%| 0/10\rrun:  50%| 5/10\rrun: 100%| 10/10\n", "done\n"]}]}
    injected = {"cell_type": "code", "execution_count": 1, "source": ["profile = 'paper'"],
                "metadata": {"tags": ["injected-parameters"]}, "outputs": []}
    executed = {"cells": [injected, cell], "nbformat": 4, "nbformat_minor": 5,
                "metadata": {"papermill": {"input_path": "/home/me/notebooks/x.ipynb", "parameters": {"profile": "paper"}},
                             "kernelspec": {"name": "python3"}}}
    (tmp_path / "run.ipynb").write_text(json.dumps(executed))
    stored = json.loads(store_lesson(tmp_path / "run.ipynb", tmp_path / "x.ipynb").read_text())
    assert stored["metadata"] == {"kernelspec": {"name": "python3"}}
    assert [c["source"] for c in stored["cells"]] == [["train()"]]
    assert stored["cells"][0]["metadata"] == {"tags": []} and stored["cells"][0]["execution_count"] == 3
    assert stored["cells"][0]["outputs"][0]["text"] == ["run: 100%| 10/10\n", "done\n"]


def _lesson_source(tmp_path):
    """A one-cell lesson with a parameters cell, as the real ones have."""
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    parameters = nbformat.v4.new_code_cell('profile = "paper"\nruns_dir = None\nfigures_dir = None')
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [nbformat.v4.new_markdown_cell("# A lesson"), parameters,
                      nbformat.v4.new_code_cell('import os\nprint(f"profile {profile}; runs {os.path.basename(runs_dir)}")')]
    folder = tmp_path / "notebooks"
    folder.mkdir()
    path = folder / "01_tokenization.ipynb"
    path.write_text(nbformat.writes(notebook))
    return path


def test_report_store_writes_each_executed_lesson_back_into_the_notebooks(tmp_path, monkeypatch, capsys):
    """`python -m helpers report --store` (what `make report` runs): the lesson in notebooks/ gets its outputs."""
    import helpers.lessons as lessons
    from helpers.cli import main

    monkeypatch.setattr(lessons, "REPORT_ORDER", ("01_tokenization.ipynb",))  # one lesson, not the five
    source = _lesson_source(tmp_path)
    before = source.read_bytes()
    common = ["report", "--notebooks", str(source.parent), "--runs", str(tmp_path / "runs"),
              "--figures", str(tmp_path / "figures")]
    # without --store the lesson is executed into --out and the source is left as it was
    assert main([*common, "--out", str(tmp_path / "plain")]) == 0
    assert source.read_bytes() == before
    executed = json.loads((tmp_path / "plain" / "notebooks" / "01_tokenization.ipynb").read_text())
    assert "".join(executed["cells"][-1]["outputs"][0]["text"]) == "profile lesson; runs runs\n"
    # with --store the executed lesson replaces the source: outputs kept, papermill's additions left out
    assert main([*common, "--out", str(tmp_path / "build"), "--store"]) == 0
    stored = json.loads(source.read_text())
    assert [c["cell_type"] for c in stored["cells"]] == ["markdown", "code", "code"]
    assert "".join(stored["cells"][1]["source"]) == 'profile = "paper"\nruns_dir = None\nfigures_dir = None'
    assert stored["cells"][2]["outputs"] == [{"name": "stdout", "output_type": "stream",
                                              "text": ["profile lesson; runs runs\n"]}]
    assert "papermill" not in stored["metadata"] and all("papermill" not in c["metadata"] for c in stored["cells"])
    assert (tmp_path / "build" / "report.md").exists()
    assert capsys.readouterr().out.splitlines()[-1] == f"report written to {tmp_path / 'build' / 'report.md'}"


def test_make_report_stores_the_lessons_of_the_lesson_profile():
    from conftest import ROOT

    recipe = ROOT.joinpath("Makefile").read_text().split("\nreport:", 1)[1].split("\n\n", 1)[0]
    assert "-m helpers report --profile $(PROFILE) $(if $(filter lesson,$(PROFILE)),--store)" in recipe
