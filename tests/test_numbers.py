"""Numbers never drift: a number in a lesson's prose or in the README comes from an output or a results file.

A run-dependent number typed into Markdown goes stale the day the run
changes. So every number in a notebook's Markdown must appear in that
notebook's own code or outputs, in the paper, in the profiles, or be a small
count (a section, an exercise); and every number in the README must appear
in the numbers the report job writes beside each figure (``figures/*.json``)
or the benchmarks' result files, in the paper or in the profiles. Code spans and formulas are left out: they
are code and mathematics, not results.
"""

from __future__ import annotations

import json
import math
import re
from functools import cache
from pathlib import Path

import pytest

from conftest import PAPER, ROOT

NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(%?)(?![\w])")
SKIP = re.compile(r"`[^`]*`|\$\$.*?\$\$|\$[^$\n]*\$|\]\([^)]*\)|<[^>]+>|```.*?```|\d+(?:\.\d+){2,}", re.S)
SMALL = 20  # counts a reader can check at a glance: sections, exercises, layers, heads
NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").glob("**/[0-9]*.ipynb") if ".ipynb_checkpoints" not in str(p))


def numbers_in(text: str) -> list[str]:
    """Numbers written in prose (commas dropped), with a trailing % kept; code and formulas skipped."""
    return [value.replace(",", "") + percent for value, percent in NUMBER.findall(SKIP.sub(" ", text))]


def _plain(text: str) -> str:
    return text.replace(",", "")


@cache
def _static_text() -> str:
    """What no run changes: the paper (and its numbers as prose rounds them), both profiles and their models."""
    from helpers.config import get_profile
    from helpers.model import build_model, parameter_report
    from helpers.paper import PAPER_PERPLEXITY

    profiles = [get_profile(name) for name in ("paper", "lesson")]
    facts = [p.to_json() for p in profiles]
    facts += [str(v) for p in profiles for v in parameter_report(build_model(p.model)).values()]
    facts += [f"{v:.{d}f}" for v in PAPER_PERPLEXITY.values() for d in (0, 1, 2)]
    return _plain(PAPER.read_text() + " " + " ".join(facts))


def _found(number: str, *texts: str) -> bool:
    value = number.rstrip("%")
    if "." not in value and "%" not in number and int(value) <= SMALL:
        return True
    forms = {value}
    if number.endswith("%"):  # 84% may be printed as 84% or as a share 0.84
        forms = {value + "%", f"{float(value) / 100:g}", f"{float(value) / 100:.2f}"}
    pattern = re.compile("|".join(rf"(?<![\d.]){re.escape(f)}(?![\d])" for f in forms))
    return any(pattern.search(text) for text in texts)


def _notebook_texts(path: Path) -> tuple[list[str], str]:
    cells = json.loads(path.read_text())["cells"]
    markdown = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
    code = []
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        code.append("".join(cell["source"]))
        for output in cell.get("outputs", []):
            code.append("".join(output.get("text", "")))
            code.append("".join(output.get("data", {}).get("text/plain", "")))
            code.append("".join(output.get("data", {}).get("text/markdown", "")))
            code.append("".join(output.get("data", {}).get("text/html", "")))
    return markdown, _plain("\n".join(code))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_number_in_a_lessons_prose_is_backed_by_its_cells(path):
    markdown, cells = _notebook_texts(path)
    missing = [(number, text.strip().splitlines()[0][:60]) for text in markdown for number in numbers_in(text)
               if not _found(number, cells, _static_text())]
    assert not missing, f"{path.name}: numbers in Markdown that no cell prints (type them as outputs): {missing}"


def _figure_numbers() -> str:
    """Every value in figures/*.json, written the ways prose rounds it (and seconds also as minutes)."""
    forms: set[str] = set()

    def walk(value, key=""):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            for v in ([value, value / 60] if key == "elapsed_s" else [value]):
                forms.update({f"{v:.0f}", f"{v:.1f}", f"{v:.2f}", f"{v:.3f}", f"{v * 100:.0f}%", f"{v:g}"})

    for path in sorted((ROOT / "figures").glob("*.json")) + sorted((ROOT / "benchmarks" / "results").glob("*.json")):
        walk(json.loads(path.read_text()))
    return " ".join(sorted(forms))


def test_every_number_in_the_readme_comes_from_the_figures_the_paper_or_the_profiles():
    readme = (ROOT / "README.md").read_text()
    figures = _figure_numbers()
    missing = [n for n in numbers_in(readme) if not _found(n, figures, _static_text(), _readme_code(readme))]
    assert not missing, f"README numbers found in no figures/*.json, profile or the paper: {sorted(set(missing))}"


def _readme_code(readme: str) -> str:
    """The README's code blocks and spans: commands and settings, not results."""
    return _plain(" ".join(re.findall(r"```.*?```|`[^`]*`", readme, re.S)))
