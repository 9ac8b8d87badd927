"""The lessons as files: clean, parameterised, rerunnable with papermill, clear about prerequisites."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT
from helpers.lessons import NOTEBOOKS

NOTEBOOK_DIR = ROOT / "notebooks"


def _run_lesson(name: str, out: Path, **parameters) -> nbformat.NotebookNode:
    """Execute one lesson with papermill, as the report job does, and return the executed notebook."""
    import papermill

    papermill.execute_notebook(str(NOTEBOOK_DIR / name), str(out), cwd=str(NOTEBOOK_DIR), parameters=parameters,
                               kernel_name="python3", progress_bar=False)
    return nbformat.read(out, as_version=4)


SOLUTIONS = tuple(name.replace(".ipynb", "_solutions.ipynb") for name in NOTEBOOKS)
COURSE = [NOTEBOOK_DIR / n for n in NOTEBOOKS] + [NOTEBOOK_DIR / "solutions" / n for n in SOLUTIONS]
HELPERS_CHECK = "import helpers"  # the first code cell: a clear message instead of an import error
DIAGRAMS = {"02_self_attention.ipynb": 1, "03_pretraining.ipynb": 1, "04_finetuning.ipynb": 1,
            "05_evaluation.ipynb": 1}  # at least


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.name)
def test_committed_notebooks_are_clean(path):
    assert path.exists(), f"{path.name} is missing"
    assert path.stat().st_size < 1_000_000
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert HELPERS_CHECK in code[0].source and "pip install" in code[0].source
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"
    assert re.search(r'^profile = "lesson"$', tagged[0].source, re.M)
    text = json.dumps([c.get("outputs", []) for c in code])
    assert '"output_type": "error"' not in text
    for marker in ("/work/", "/tmp/", "/root/", "/home/", "sk-", "Warning", "WARNING"):
        assert marker not in text, f"{path.name} output contains {marker!r}"
    for cell in code:
        for output in cell.get("outputs", []):
            shown = "".join(output.get("text", "")) + "".join(output.get("data", {}).get("text/plain", ""))
            assert not ("0%|" in shown and "100%|" not in shown), f"{path.name}: a progress bar stored at 0%"
    assert all(c.get("execution_count") is not None for c in code if c.source.strip())
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    if path.parent == NOTEBOOK_DIR:  # a lesson: what it teaches and follows, a summary, exercises with solutions
        assert any("NBVAL_CHECK_OUTPUT" in c.source for c in code)
        assert "What you will learn" in markdown and "section" in markdown.split("## ")[0].lower()
        assert re.search(r"^## Summary", markdown, re.M), f"{path.name} has no summary"
        assert "solutions/" in markdown and "**Exercise 1" in markdown
        assert markdown.count("```mermaid") >= DIAGRAMS.get(path.name, 0)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_mermaid_diagram_has_its_picture_beside_it(name):
    """Colab draws no Mermaid: each diagram's cell also carries the PNG of notebooks/diagrams/, as an attachment."""
    import base64

    for cell in nbformat.read(NOTEBOOK_DIR / name, as_version=4).cells:
        if cell.cell_type != "markdown" or "```mermaid" not in cell.source:
            continue
        shown = re.findall(r"!\[[^\]]+\]\(attachment:([^)]+\.png)\)", cell.source)
        assert shown, f"{name}: a Mermaid diagram without its picture"
        for picture in shown:
            stored = base64.b64decode(cell.get("attachments", {})[picture]["image/png"])
            assert stored == (NOTEBOOK_DIR / "diagrams" / picture).read_bytes(), f"{name}: {picture} is stale"
        source = (NOTEBOOK_DIR / "diagrams" / shown[0].replace(".png", ".mmd")).read_text()
        assert source.strip() in cell.source, f"{name}: the Mermaid block differs from diagrams/{shown[0][:-4]}.mmd"


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.name)
def test_every_name_a_notebook_imports_from_helpers_exists(path):
    """A name moved between modules fails here in a second, not twenty minutes later in the notebook run."""
    import ast
    import importlib

    nb = nbformat.read(path, as_version=4)
    missing = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        lines = [line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!"))]
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "helpers":
                module = importlib.import_module(node.module)
                missing += [f"{node.module}.{a.name}" for a in node.names if not hasattr(module, a.name)]
    assert missing == [], f"{path.name} imports names that do not exist: {missing}"


# What may be skipped offline: grading needs an API key, the comparison needs gpt2's weights. Never data.
SKIPS_ALLOWED = ("Judging skipped: set OPENAI_API_KEY", "Judge skipped: no judge configured",
                 "Comparison with 'gpt2' skipped:", "gpt2 comparison skipped:")


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.name)
def test_no_cell_skips_the_papers_data(path):
    """Stored offline (no hub, no ../shared), every lesson measures the paper's data: the shipped samples stand in."""
    nb = nbformat.read(path, as_version=4)
    printed = [line for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               for line in ("".join(o.get("text", "")) if "text" in o else "").splitlines()]
    skipped = [line for line in printed if re.search(r"\bskipp(ed|ing)\b", line, re.I) and not line.startswith(SKIPS_ALLOWED)]
    assert skipped == [], f"{path.name}: {skipped}"


def test_every_exercise_has_a_worked_solution():
    for lesson, solutions in zip(NOTEBOOKS, SOLUTIONS):
        exercises = set(re.findall(r"\*\*Exercise (\d+)", _markdown(NOTEBOOK_DIR / lesson)))
        solved = set(re.findall(r"^## Exercise (\d+)", _markdown(NOTEBOOK_DIR / "solutions" / solutions), re.M))
        assert exercises and exercises == solved, (lesson, sorted(exercises), sorted(solved))


def _markdown(path: Path) -> str:
    return "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")


def test_papermill_injects_parameters_and_lesson_1_runs_offline(tmp_path, monkeypatch):
    """Lesson 1 with no HELPERS_TOKENIZER, no hub and no ../shared: GPT-2's tokenizer comes with the package."""
    monkeypatch.delenv("HELPERS_TOKENIZER", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HELPERS_SHARED", str(tmp_path / "no-shared-data"))
    nb = _run_lesson("01_tokenization.ipynb", tmp_path / "01.ipynb", story_index=7, figures_dir=str(tmp_path / "figs"))
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "story_index = 7" in injected[0].source
    from helpers.stories import generate_story

    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert generate_story(7).text.splitlines()[0] in printed
    assert generate_story(0).text.splitlines()[0] not in printed
    assert "[15496, 995]\n['Hello', 'Ġworld']" in printed and "vocabulary size: 50257" in printed
    assert (tmp_path / "figs" / "token_lengths.png").exists()


def test_lesson_2_without_lesson_3_s_run_trains_a_short_demonstration_and_saves_no_figure(tmp_path):
    """A student who opens lesson 2 first gets a labelled demonstration run (make test runs lesson 3 first)."""
    nb = _run_lesson("02_self_attention.ipynb", tmp_path / "02.ipynb", runs_dir=str(tmp_path / "runs"),
                     figures_dir=str(tmp_path / "figs"), demo_steps=3)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "NOTE: lesson 3's run does not exist yet, so this section shows a SHORT DEMONSTRATION RUN (3 steps" in printed
    assert "demo run: 3 steps" in printed and "Using the pretraining run of lesson 3." not in printed
    assert (tmp_path / "runs" / "attention-demo-lesson-3steps" / "model.safetensors").exists()
    assert not (tmp_path / "figs" / "attention_heads.png").exists()
    assert not (tmp_path / "figs" / "position_embeddings.png").exists()


def test_a_missing_run_names_the_lesson_to_run_first(tmp_path):
    import papermill

    with pytest.raises(papermill.PapermillExecutionError) as err:
        _run_lesson("04_finetuning.ipynb", tmp_path / "04.ipynb", runs_dir=str(tmp_path / "empty"),
                    figures_dir=str(tmp_path / "figs"))
    assert err.value.ename == "MissingPrerequisite"
    assert "run 03_pretraining.ipynb first" in err.value.evalue


PAPER_REHEARSAL_SETTINGS = {  # the paper profile shrunk to seconds: batches, steps and data, nothing else
    "pretrain.max_steps": 6, "pretrain.batch_size": 2, "pretrain.grad_accum": 1, "pretrain.warmup_steps": 2,
    "pretrain.eval_every": 3, "pretrain.save_every": 3, "pretrain.eval_max_batches": 2, "data.train_stories": 300,
    "data.val_stories_count": 20, "finetune.max_steps": 4, "finetune.batch_size": 2, "finetune.grad_accum": 1,
    "finetune.eval_every": 2, "finetune.save_every": 2, "finetune.eval_max_batches": 1,
    "data.instruction_max_length": 256,
}


def test_the_paper_profile_rehearsed_offline_through_the_report_job(tmp_path):
    """All five lessons headless with profile="paper" on the local reference files, as `make report` runs them.

    GPT-2's vocabulary, the 3,582,016-parameter model, per-story blocks, the
    paper's template, fp32 on a CPU; only batches, steps and data are shrunk.
    Hub-only cells (the gpt2 comparison) say so and skip.
    """
    from conftest import ALPACA_335, TINYSTORIES_TRAIN, require_shared

    require_shared()
    lesson_knobs = {"stories": TINYSTORIES_TRAIN, "instructions": ALPACA_335, "alpaca": ALPACA_335, "device": "cpu",
                    "n_train_stories": 300, "n_val_stories": 40, "n_question_stories": 2, "demo_steps": 3,
                    "loop_steps": 2, "loop_batch": 2, "sample_checkpoints": [], "packing_stories": 200,
                    "decoding_stories": 2, "question_stories": 2, "n_shown": 2, "samples": 2, "order_prompts": 4,
                    "order_stories": 2, "copy_sequences": 4, "pieces_steps": 10, "max_new_tokens": 8}
    args = [sys.executable, "-m", "helpers", "report", "--profile", "paper", "--out", str(tmp_path / "build"),
            "--runs", str(tmp_path / "runs"), "--figures", str(tmp_path / "figs")]
    args += [item for key, value in lesson_knobs.items() for item in ("--param", f"{key}={json.dumps(value)}"
                                                                         if not isinstance(value, Path) else
                                                                         f"{key}={value}")]
    args += [item for key, value in PAPER_REHEARSAL_SETTINGS.items() for item in ("--set", f"{key}={value}")]
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9"}  # no hub, whatever this machine can reach
    env.pop("HELPERS_TOKENIZER", None)
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = json.loads((tmp_path / "runs" / "pretrain" / "run.json").read_text())
    assert run["profile"]["name"] == "paper" and run["profile"]["data"]["tokenizer"] == "gpt2"
    assert run["profile"]["data"]["packing"] == "per_story" and run["profile"]["model"]["vocab_size"] == 50257
    assert run["profile"]["data"]["stories"] == str(TINYSTORIES_TRAIN) and run["precision"] == "fp32"
    fine = json.loads((tmp_path / "runs" / "finetune" / "run.json").read_text())
    assert fine["profile"]["data"]["instructions"] == str(ALPACA_335) and fine["profile"]["name"] == "paper"
    evaluation = json.loads((tmp_path / "runs" / "pretrain" / "eval.json").read_text())
    assert evaluation["model"]["parameters"] == 3_582_016 and evaluation["model"]["vocab_size"] == 50257
    assert evaluation["comparison"]["skipped"] == "'gpt2' could not be loaded"
    figures = {p.name for p in (tmp_path / "figs").glob("*.png")}
    assert {"token_lengths.png", "attention_heads.png", "position_embeddings.png", "pretrain_lr.png",
            "pretrain_loss_train.png", "pretrain_loss_eval.png", "pretrain_ppl.png", "finetune_lr.png",
            "finetune_loss_train.png", "finetune_loss_eval.png", "learning_order.png", "repetition.png"} <= figures
    report = (tmp_path / "build" / "report.md").read_text()
    assert "Profile `paper`" in report and "| pretraining | 10.18 |" in report
    executed = {p.name: nbformat.read(p, as_version=4) for p in (tmp_path / "build" / "notebooks").glob("*.ipynb")}
    assert set(executed) == set(NOTEBOOKS)
    printed = "".join(o.get("text", "") for c in executed["05_evaluation.ipynb"].cells if c.cell_type == "code"
                      for o in c.outputs)
    assert "Comparison with 'gpt2' skipped" in printed
