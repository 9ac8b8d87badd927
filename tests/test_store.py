"""A stored lesson is canonical: the same executed content gives the same bytes, with no clock in them.

`make report` stores the five lessons back into the repository; rerun on
another day (or machine) with the same numbers, it must leave the files
byte for byte as they were. The kernel sends printed text in pieces cut
wherever timing cuts them, and papermill records when each cell ran: both
differ from run to run, and neither may reach the committed file.
"""

from __future__ import annotations

import contextlib
import io
import json
import random

from helpers.lessons import store_lesson
from helpers.progress import progress_bar

# What one cell printed: a progress bar redrawn with carriage returns (once with a wider state, so a later
# one is padded with spaces), a Windows-style line end and ordinary lines.
PRINTED = ("device auto: cpu\r\n"
           "\rtrain:   0%|          | 0/3\rtrain:  33%|###3      | 1/3, train_loss=10.25"
           "\rtrain: 100%|##########| 3/3, train_loss=3.5   \n"
           "done: 3 steps\n")
SHOWN = ["device auto: cpu\n", "train: 100%|##########| 3/3, train_loss=3.5\n", "done: 3 steps\n"]
FIGURE = {"output_type": "display_data", "data": {"text/plain": ["<Figure>"]}, "metadata": {}}


def _pieces(text: str, rng: random.Random) -> list[str]:
    """``text`` cut at random places, as a kernel may send it (a ``\\r\\n`` may be cut in two)."""
    cuts = sorted(rng.sample(range(1, len(text)), rng.randint(0, 8)))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]


def _executed(seed: int) -> dict:
    """One execution of a two-cell lesson: its own chunking of the printed text, its own timings and paths."""
    rng = random.Random(seed)
    streams = [{"output_type": "stream", "name": "stdout", "text": piece if rng.random() < 0.5 else [piece]}
               for piece in _pieces(PRINTED, rng)]
    after = [{"output_type": "stream", "name": "stdout", "text": piece} for piece in _pieces("after the figure\n", rng)]
    warning = [{"output_type": "stream", "name": "stderr", "text": piece} for piece in _pieces("a warning\n", rng)]
    timings = {"papermill": {"duration": rng.random(), "start_time": f"2026-12-0{seed % 9 + 1}T10:00:0{seed % 10}",
                             "status": "completed"},
               "execution": {"iopub.status.busy": f"2026-12-02T10:{seed % 60:02}:00.1Z"},
               "ExecuteTime": {"end_time": f"2026-12-02T10:{seed % 60:02}:01Z"}, "tags": []}
    cell = {"cell_type": "code", "execution_count": 2, "id": "c1", "source": ["train()"], "metadata": timings,
            "outputs": [*streams, FIGURE, *after, *warning]}
    injected = {"cell_type": "code", "execution_count": 1, "id": "c0", "source": ["profile = 'lesson'"],
                "metadata": {**timings, "tags": ["injected-parameters"]}, "outputs": []}
    return {"cells": [injected, cell], "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3"},
                         "language_info": {"name": "python", "version": f"3.11.{seed}"},
                         "papermill": {"input_path": f"/home/run{seed}/x.ipynb", "duration": 100 + seed}}}


def _store(tmp_path, executed: dict, name: str) -> bytes:
    (tmp_path / f"{name}.executed.ipynb").write_text(json.dumps(executed))
    return store_lesson(tmp_path / f"{name}.executed.ipynb", tmp_path / f"{name}.ipynb").read_bytes()


def test_the_same_printed_text_is_stored_as_the_same_bytes_however_it_was_chunked(tmp_path):
    stored = {_store(tmp_path, _executed(seed), str(seed)) for seed in range(30)}
    assert len(stored) == 1
    (cell,) = json.loads(stored.pop())["cells"]
    assert cell["outputs"] == [{"output_type": "stream", "name": "stdout", "text": SHOWN}, FIGURE,
                               {"output_type": "stream", "name": "stdout", "text": ["after the figure\n"]},
                               {"output_type": "stream", "name": "stderr", "text": ["a warning\n"]}]


def _keys(value) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    return {k for v in value for k in _keys(v)} if isinstance(value, list) else set()


def test_a_stored_lesson_keeps_no_timing(tmp_path):
    stored = json.loads(_store(tmp_path, _executed(7), "lesson"))
    assert not _keys(stored) & {"papermill", "execution", "ExecuteTime", "duration", "start_time", "end_time"}
    assert stored["metadata"] == {"kernelspec": {"name": "python3"}, "language_info": {"name": "python"}}
    assert [c["metadata"] for c in stored["cells"]] == [{"tags": []}]


def test_a_text_progress_bar_is_stored_without_clock_or_rates(tmp_path, monkeypatch):
    """The bar's last line, as the report job stores it: no elapsed time, no steps per second, no tokens/s."""
    monkeypatch.setenv("HELPERS_PROGRESS", "text")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        bar = progress_bar(total=3, desc="pretrain", unit="step", mininterval=0)
        for loss in (9.0, 4.25, 2.5):
            bar.update(1)
            bar.set_postfix({"train_loss": f"{loss:.4g}", "tokens_per_sec": "1.52e+04"}, refresh=False)
        bar.close()
    executed = _executed(0)
    executed["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": printed.getvalue()}]
    (cell,) = json.loads(_store(tmp_path, executed, "bar"))["cells"]
    assert cell["outputs"][0]["text"] == ["pretrain: 100%|##########| 3/3, train_loss=2.5\n"]


def test_a_bar_that_clears_itself_leaves_no_output(tmp_path):
    """A bar drawn with ``leave=False`` ends by blanking its line: a terminal shows nothing, nor does the lesson."""
    executed = _executed(0)
    executed["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": piece}
                                       for piece in ["\rscoring:  50%|#####     | 1/2", "\r                  \r"]]
    (cell,) = json.loads(_store(tmp_path, executed, "cleared"))["cells"]
    assert cell["outputs"] == []
