"""Numbers never drift: a number in a lesson's prose or in the README comes from an output or a results file.

A run-dependent number typed into Markdown goes stale the day the run
changes. So every number in a notebook's Markdown must appear in that
notebook's own code or outputs, in the paper, in the profiles, or be a small
count (a section, an exercise). Every number of the README's results section
is one named value of the JSON the report job writes beside a figure
(``figures/*.json``), checked at the precision the README writes it, so a
number one unit off fails; elsewhere in the README a number comes from the
results file its paragraph names, the paper or the profiles. Code spans and
formulas are left out: they are code and mathematics, not results.
"""

from __future__ import annotations

import json
import math
import re
from functools import cache
from pathlib import Path

import pytest

from conftest import PAPER, ROOT
from helpers.config import get_profile

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
    from helpers.model import build_model, parameter_report
    from helpers.paper import PAPER_PERPLEXITY

    profiles = [get_profile(name) for name in ("paper", "lesson")]
    facts = [p.to_json() for p in profiles]
    facts += [str(v) for p in profiles for v in parameter_report(build_model(p.model)).values()]
    facts += [f"{v:.{d}f}" for v in PAPER_PERPLEXITY.values() for d in (0, 1, 2)]
    return _plain(PAPER.read_text() + " " + " ".join(facts))


@cache  # the one-unit test asks the same numbers of the same texts hundreds of times
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


# ----------------------------------------------------------------- the README

# The README's results section: every number in it is one value of one figure's JSON, named below.
RESULTS = ("## What the lesson run shows", "## Where to run it")
N = r"(\d[\d,]*(?:\.\d+)?%?)"  # a number as the README writes it


def _series(name: str, series: str = "lesson profile"):
    return lambda load: load(name)["series"][series]


PRE, PPL = _series("pretrain_loss_eval.json"), _series("pretrain_ppl.json")
FINE = _series("finetune_loss_eval.json")


def _last(name: str, *keys: str):
    """``rows[-1][key][key]...`` of a figure's JSON."""
    def get(load):
        value = load(name)["rows"][-1]
        for key in keys:
            value = value[key]
        return value
    return get


def _repeat_arm(load, n: int) -> dict:
    """The n-th arm of the repeats-alone table (study_repeats.json)."""
    return load("study_repeats.json")["rows"][n]


def _repeat_probe(row: int, measure: str, *lengths: int) -> list:
    """Getters for the long repeats arm's probe at curve[row]: its step, or what it saves at the n-th probed lengths."""
    def get(n):
        return lambda load: _repeat_arm(load, 1)["curve"][row][measure][str(_probed(n)(load))]
    if measure == "step":
        return [lambda load: _repeat_arm(load, 1)["curve"][row]["step"]]
    return [get(n) for n in lengths]


def _probed(n: int):
    """The n-th repeat length the repeats-alone arms were probed at."""
    return lambda load: load("study_repeats.json")["settings"]["probe_lengths"][n]


# The same copier arms retrained on another machine (python -m helpers study --copier --arm ...)
REPLICATION = "copier-replication/study_copier_stories.json"


def _copier_point(arm: int, point: int, measure: str, table: str = "study_copier_stories.json"):
    """A copier table: an arm's point's step or validation loss, what the hero's later mentions save
    against the first ("names"), or what a repeat saves beyond its control."""
    def get(load):
        at = load(table)["rows"][arm]["curve"][point]
        if measure in ("step", "eval_loss"):
            return at[measure]
        if measure == "names":
            return at["copying"]["name_mentions"]["first"] - at["copying"]["name_mentions"]["later"]
        return at["copying"]["repeated_random"][measure] - at["copying"]["repeated_random"]["control_gain"]
    return get


# The survival runs (python -m helpers study --survival): each recipe from two copier seeds, two pretraining seeds each
SURVIVAL, DRILLS, WARM = "study_copier_survival.json", "copy drills 25%", "copy drills 25%, warm-up 300 steps"
SLOW, HALF = "copy drills 25%, peak rate 1e-3", "copy drills 50%"
# rows: copier seed 0's runs, then seed 1's; per copier each recipe in SURVIVAL's order, pretraining seeds 42 and 43
RUNS = {recipe: [k, k + 1, k + 8, k + 9] for k, recipe in zip((0, 2, 4, 6), (DRILLS, WARM, SLOW, HALF))}


def _survival_saved(rows: list[int], point: int, pick=max):
    """The survival table: the most (or least) a random repeat saves beyond its control among ``rows`` at a point."""
    def get(load):
        table = load(SURVIVAL)["rows"]
        return pick(table[r]["curve"][point]["copying"]["repeated_random"]["gain"]
                    - table[r]["curve"][point]["copying"]["repeated_random"]["control_gain"] for r in rows)
    return get


def _survival_loss(rows: list[int], pick=max):
    """The survival table: the highest (or lowest) validation loss on stories among ``rows`` at their last model."""
    return lambda load: pick(load(SURVIVAL)["rows"][r]["curve"][-1]["eval_loss"] for r in rows)


LENGTHS = "study_lengths.json"  # python -m helpers study --lengths: each pretraining length x each finetuning length


def _cell(load, steps: tuple[int, int]):
    """The cell of the lengths table pretrained and finetuned for ``steps``."""
    return next(c for c in load(LENGTHS)["cells"] if (c["pretrain_steps"], c["finetune_steps"]) == steps)


def _lengths(steps: tuple[int, int], kind: str, key: str = "share"):
    """The table of lengths: one cell's exact answers of a kind (the share or an end of its interval)."""
    return lambda load: _cell(load, steps)["answers"][kind][key]


def _swapped(steps: tuple[int, int], kind: str):
    """The table of lengths: one cell's exact answers of a kind with each question asked about the next story."""
    return lambda load: _cell(load, steps)["answers_swapped"][kind]["share"]


def _lengths_rank(steps: tuple[int, int], control: bool = False):
    """The table of lengths: the right name's mean rank for main-character questions, with the story or swapped."""
    return lambda load: _cell(load, steps)["names_control" if control else "names"]["hero"]["mean_rank"]


def _lengths_steps(stage: str, k: int):
    return lambda load: load(LENGTHS)["lengths"][stage][k]


FINETUNINGS = "study_finetunings.json"  # python -m helpers study --finetunings: ways of finetuning the study's model


def _tuned_cell(load, name: str) -> dict:
    """The row of the finetunings table finetuned the ``name`` way."""
    return next(c for c in load(FINETUNINGS)["cells"] if c["finetuning"] == name)


def _tuned(name: str, kind: str, key: str = "share"):
    """The table of finetunings: one finetuning's exact answers of a kind (the share or an end of its interval)."""
    return lambda load: _tuned_cell(load, name)["answers"][kind][key]


def _told(name: str, measure: str):
    """The table of finetunings: the share of yes/no facts right, or of verdicts right among them."""
    return lambda load: _tuned_cell(load, name)["answers"]["yes_no"][measure]["share"]


def _tuned_rank(name: str, control: bool = False):
    """The table of finetunings: the main character's mean rank, with the story or another story."""
    return lambda load: _tuned_cell(load, name)["names_control" if control else "names"]["hero"]["mean_rank"]


def _tuned_saved(name: str, sign: int = 1):
    """The table of finetunings: nats a random repeat saves beyond its control after finetuning (times ``sign``)."""
    def get(load):
        scores = _tuned_cell(load, name)["copying"]["repeated_random"]
        return sign * (scores["gain"] - scores["control_gain"])
    return get


def _survival_step(point: int):
    return lambda load: load(SURVIVAL)["rows"][0]["curve"][point]["step"]


def _survival_kept(recipe: str, key: str):
    """The survival table: a recipe's runs that kept copying (a count, the runs, or the interval's ends)."""
    return lambda load: load(SURVIVAL)["summary"][recipe]["survived"][key]


def _copier_tuned(arm: int, measure: str, table: str = "study_copier_stories.json"):
    """A copier table: an arm after the lesson's finetuning: what a repeat saves beyond its control
    ("gain"), or the exact share of one kind of question."""
    def get(load):
        tuned = load(table)["rows"][arm]["finetuned"]
        if measure == "gain":
            return tuned["copying"]["repeated_random"]["gain"] - tuned["copying"]["repeated_random"]["control_gain"]
        return tuned["answers"][measure]["share"]
    return get


def _copier_baseline(kind: str):
    """study_copier_stories.json: the no-reading baseline of one kind (the training questions' commonest answer)."""
    return lambda load: load("study_copier_stories.json")["rows"][0]["finetuned"]["baselines"][kind]["share"]


def _overall_baseline(name: str):
    """The baselines of all kinds together: each kind's share weighted by its questions."""
    def get(load):
        baselines = [b for kind, b in load(name)["baselines"].items() if "/" not in kind]  # who's roles are in who
        return sum(b["share"] * b["n"] for b in baselines) / sum(b["n"] for b in baselines)
    return get


def _kind_row(label: str, kind: str):
    """One row of the README's per-kind table: lesson run (answers.json), then the study (study_answers.json)."""
    lesson, study = (lambda load: load("answers.json")), (lambda load: load("study_answers.json"))
    return (rf"\| {label} \| {N} \| {N} \| {N} \({N}-{N}\) \| {N} \| {N} \({N}-{N}\) \|",
            [lambda load: lesson(load)["baselines"][kind]["n"],
             lambda load: lesson(load)["baselines"][kind]["share"],
             _last("answers.json", kind, "share"), _last("answers.json", kind, "low"),
             _last("answers.json", kind, "high"),
             lambda load: study(load)["baselines"][kind]["share"],
             _last("study_answers.json", kind, "share"), _last("study_answers.json", kind, "low"),
             _last("study_answers.json", kind, "high")])


CLAIMS = [
    (rf"\*\*Pretraining\*\* \(lesson 3\): {N} steps, {N} tokens;\s+validation loss {N} at step {N} "
     rf"to {N}, perplexity {N}",
     [lambda load: PRE(load)["run"]["step"], lambda load: PRE(load)["run"]["tokens"],
      lambda load: PRE(load)["eval_loss"][0],
      lambda load: PRE(load)["step"][0], lambda load: PRE(load)["eval_loss"][-1],
      lambda load: PPL(load)["perplexity"][-1]]),
    (rf"at the last\s+checkpoint {N} of sampled sentences", [_last("learning_order.json", "grammar", "sentences", "share")]),
    (rf"{N} of continuations keep the story's characters \(the stories themselves:\s+{N}\)",
     [_last("learning_order.json", "consistency", "strict", "share"),
      lambda load: load("learning_order.json")["references"]["consistency"]["the stories' own continuations"]["strict"]["share"]]),
    (rf"random tokens read a second time cost it\s+{N} nats against {N} the first time \(a rule that copies:\s+{N}\)",
     [_last("learning_order.json", "copying", "repeated_random", "repeat"),
      _last("learning_order.json", "copying", "repeated_random", "first"),
      lambda load: load("learning_order.json")["references"]["copying"]["repeated_random"]["repeat"]]),
    (rf"it is right on\s+{N} of blanks \(chance {N}\), and on {N} with the story\s+removed",
     [_last("learning_order.json", "cloze", "absent", "all", "share"),
      _last("learning_order.json", "cloze", "absent", "all", "chance"),
      _last("learning_order.json", "cloze", "absent without story", "all", "share")]),
    (rf"among the story's own words it scores\s+{N} with the story and {N} without",
     [_last("learning_order.json", "cloze", "story", "all", "share"),
      _last("learning_order.json", "cloze", "story without story", "all", "share")]),
    (rf"{N} pretraining arms", [lambda load: len(load("study_arms.json")["rows"])]),
    (rf"none saves more than {N} nats on a random repeat beyond its control \(the copying rule:\s+{N}\)",
     [lambda load: max(r["copying"]["repeated_random"]["gain"] - r["copying"]["repeated_random"]["control_gain"]
                       for r in load("study_arms.json")["rows"]),
      lambda load: (load("study_arms.json")["lines"]["the copying rule"]["repeated_random"]["gain"]
                    - load("study_arms.json")["lines"]["the copying rule"]["repeated_random"]["control_gain"])]),
    (rf"Random repeats alone \(`study_repeats.md`, `study_repeats.png`\), with no stories: trained for {N} steps on one\s+"
     rf"length \({N} tokens\) the model saves {N} nats on a {N}-token repeat beyond its control, yet {N} nats\s+"
     rf"less than nothing on a {N}-token one, and {N} less when {N} fresh tokens separate {N}-token writings:[\s\S]*?"
     rf"Trained on\s+lengths {N} to {N} it saves {N} nats on a {N}-token repeat after {N} steps and still only {N} after\s+"
     rf"{N}; then it learns to copy, at once: {N} nats at step {N}, and after {N} steps {N}, {N} and\s+"
     rf"{N} nats on repeats of {N}, {N} and {N} tokens, as much with {N} fresh tokens between the writings\s+"
     rf"\({N}, {N} and {N}\)",
     [lambda load: _repeat_arm(load, 0)["steps"],
      lambda load: _repeat_arm(load, 0)["lengths"][0], lambda load: _repeat_arm(load, 0)["curve"][-1]["saved"]["50"],
      _probed(1), lambda load: -_repeat_arm(load, 0)["curve"][-1]["saved"]["30"], _probed(0),
      lambda load: -_repeat_arm(load, 0)["curve"][-1]["shifted"]["30"],
      lambda load: load("study_repeats.json")["settings"]["gap"], _probed(0),
      lambda load: _repeat_arm(load, 1)["lengths"][0], lambda load: _repeat_arm(load, 1)["lengths"][1],
      *_repeat_probe(3, "saved", 1), _probed(1), *_repeat_probe(3, "step"),
      *_repeat_probe(10, "saved", 1), *_repeat_probe(10, "step"),
      *_repeat_probe(12, "saved", 1), *_repeat_probe(12, "step"), *_repeat_probe(-1, "step"),
      *_repeat_probe(-1, "saved", 0, 1, 2), _probed(0), _probed(1), _probed(2),
      lambda load: load("study_repeats.json")["settings"]["gap"], *_repeat_probe(-1, "shifted", 0, 1, 2)]),
    (rf"A copier trained for {N} steps on repeats of {N} to\s+{N} tokens \(saving {N} nats on a random repeat beyond its "
     rf"control, {N} shifted\)[\s\S]*?after {N} steps of stories it saves\s+{N}, and at step {N} {N}, against {N} from "
     rf"scratch, while its validation loss\s+is {N} against {N}\.[\s\S]*?either \({N} at step {N}\)\. Copy drills kept "
     rf"in a quarter of the blocks do: {N} nats at\s+step {N}, and the hero's later mentions then cost {N} nats less than "
     rf"the first \(from scratch: {N}\),[\s\S]*?a validation loss of {N}\.[\s\S]*?\({N} after it\), unless drills stay "
     rf"in its examples too\s+\({N}\)\.[\s\S]*?the finetuned model copies \({N}\) and answers[\s\S]*?\({N} against {N}, "
     rf"{N} against {N}\), yet names the main character {N} of the time, and\s+its who-answers \({N}\) are no better "
     rf"than always giving the commonest one \({N}\)\. Finetuned for {N} steps\s+instead of {N}, it answers \*what\* "
     rf"right {N} of the time, and still names the main character {N} of the\s+time\.",
     [lambda load: load("study_copier_stories.json")["copier"]["steps"],
      lambda load: load("study_copier_stories.json")["copier"]["lengths"][0],
      lambda load: load("study_copier_stories.json")["copier"]["lengths"][1],
      _copier_point(0, 0, "gain"), _copier_point(0, 0, "shifted_gain"),
      _copier_point(0, 1, "step"), _copier_point(0, 1, "gain"), _copier_point(0, -1, "step"),
      _copier_point(0, -1, "gain"), _copier_point(1, -1, "gain"),
      _copier_point(0, -1, "eval_loss"), _copier_point(1, -1, "eval_loss"),
      _copier_point(3, -1, "gain"), _copier_point(3, -1, "step"),
      _copier_point(2, -1, "gain"), _copier_point(2, -1, "step"), _copier_point(2, -1, "names"),
      _copier_point(1, -1, "names"), _copier_point(2, -1, "eval_loss"),
      _copier_tuned(2, "gain"), _copier_tuned(5, "gain"), _copier_tuned(6, "gain"),
      _copier_tuned(6, "where"), _copier_baseline("where"), _copier_tuned(6, "what"), _copier_baseline("what"),
      _copier_tuned(6, "who/hero"), _copier_tuned(6, "who"), _copier_baseline("who"),
      lambda load: load("study_copier_stories.json")["rows"][7]["finetuning"]["finetune.max_steps"],
      lambda load: load("study_copier_stories.json")["rows"][6]["finetuned"]["answers"]["step"],
      _copier_tuned(7, "what"), _copier_tuned(7, "who/hero")]),
    (rf"retrained by the same recipe, jumped\s+in the same steps but saves {N} nats beyond its control, not {N} "
     rf"[\s\S]*?did \*not\* keep copying: {N} nats at step {N} against {N} from the first copier, and as little with "
     rf"the\s+training questions mixed in \({N}\); after {N} steps of stories the skill was gone \({N}\)\. The hero's"
     rf"\s+later mentions still got {N} nats cheaper than the first\. Finetuned with drills kept, the model with"
     rf"\s+the questions mixed in answers "
     rf"{N} of the questions exactly; with {N} of the finetuning examples\s+answer-dense[\s\S]*?every answer scored\),"
     rf"\s+{N}; the main character {N} in both\.",
     [_copier_point(0, 0, "gain", REPLICATION), _copier_point(0, 0, "gain"),
      _copier_point(0, -1, "gain", REPLICATION), _copier_point(0, -1, "step", REPLICATION), _copier_point(2, -1, "gain"),
      _copier_point(1, -1, "gain", REPLICATION), _copier_point(0, 2, "step", REPLICATION),
      _copier_point(0, 2, "gain", REPLICATION), _copier_point(0, -1, "names", REPLICATION),
      _copier_tuned(1, "all", REPLICATION),
      lambda load: load(REPLICATION)["rows"][2]["finetuning"]["data.finetune_dense_share"],
      _copier_tuned(2, "all", REPLICATION), _copier_tuned(2, "who/hero", REPLICATION)]),
    (rf"trained twice more, with seeds {N} and {N} \(saving {N} and {N} nats on a random repeat\s+beyond its control\)"
     rf"[\s\S]*?at the lesson's rate kept copying in {N} of {N} runs\s+\({N}-{N}\): after {N} steps none "
     rf"saved more than {N}\. With a warm-up of {N} steps instead of {N}, the\s+copiers still saved {N} to {N} nats at "
     rf"step {N}, then[\s\S]*?at\s+step {N} none saved more than {N}\. One of them learned part of it back, from {N} at "
     rf"step {N} to {N}\s+at step {N}, just on the line[\s\S]*?kept copying in {N} of {N} runs\s+\({N}-{N}\)\.",
     [lambda load: load(SURVIVAL)["rows"][0]["copier_seed"], lambda load: load(SURVIVAL)["rows"][8]["copier_seed"],
      _survival_saved([0], 0), _survival_saved([8], 0),
      _survival_kept(DRILLS, "successes"), _survival_kept(DRILLS, "n"), _survival_kept(DRILLS, "low"),
      _survival_kept(DRILLS, "high"), _survival_step(1), _survival_saved(RUNS[DRILLS], 1),
      lambda load: load(SURVIVAL)["rows"][2]["pretraining"]["pretrain.warmup_steps"],
      lambda load: get_profile("lesson").pretrain.warmup_steps,
      _survival_saved(RUNS[WARM], 1, min), _survival_saved(RUNS[WARM], 1), _survival_step(1),
      _survival_step(4), _survival_saved(RUNS[WARM], 4), _survival_saved([2], 4), _survival_step(4),
      _survival_saved([2], -1), _survival_step(-1),
      _survival_kept(WARM, "successes"), _survival_kept(WARM, "n"), _survival_kept(WARM, "low"),
      _survival_kept(WARM, "high")]),
    (rf"Two recipes kept it in every run, {N} of {N} \({N}-{N}\) each: the same drills at a third of the peak\s+"
     rf"rate \(1e-3\), saving {N} to {N} nats at step {N}, and twice the drills \(half the blocks\) at the\s+"
     rf"lesson's rate, where copying fell to {N} to {N} nats at step {N} and came back, to {N} to {N} at\s+"
     rf"step {N}\. Neither is free: at step {N} the validation loss on stories is {N} to {N} at the lower\s+"
     rf"rate and {N} to {N} with half the blocks drills, against {N} to {N} with a quarter \(which lost\s+"
     rf"copying\) and {N} for the lesson's recipe from scratch\.",
     [_survival_kept(SLOW, "successes"), _survival_kept(SLOW, "n"), _survival_kept(SLOW, "low"),
      _survival_kept(SLOW, "high"), _survival_saved(RUNS[SLOW], -1, min), _survival_saved(RUNS[SLOW], -1),
      _survival_step(-1), _survival_saved(RUNS[HALF], 1, min), _survival_saved(RUNS[HALF], 1), _survival_step(1),
      _survival_saved(RUNS[HALF], -1, min), _survival_saved(RUNS[HALF], -1), _survival_step(-1), _survival_step(-1),
      _survival_loss(RUNS[SLOW], min), _survival_loss(RUNS[SLOW]), _survival_loss(RUNS[HALF], min),
      _survival_loss(RUNS[HALF]), _survival_loss(RUNS[DRILLS], min), _survival_loss(RUNS[DRILLS]),
      _copier_point(1, -1, "eval_loss")]),
    (rf"study's settings with {N} or {N} pretraining steps, each pretraining finetuned for {N}, {N} or\s+{N} steps\. "
     rf"All kinds together: {N}, {N} and {N} after the short pretraining, {N}, {N} and {N}\s+\({N}-{N}\) after the "
     rf"long one\. After the short pretraining only \*feeling\* moves, at {N} finetuning\s+steps \({N}\)\. The "
     rf"longer pretraining lifts \*where\* from {N} to {N} at {N} finetuning steps; at {N}\s+\*where\* reaches {N} "
     rf"and \*what\* {N}; at {N} the who-questions[\s\S]*?Grandpa\) {N} of {N}, the main character {N} and the "
     rf"friend {N},\s+against {N}, {N} and {N} at {N} steps\.[\s\S]*?answers the parent {N} \(always \"Mom\" gets as "
     rf"much\), the main character {N},\s+\*where\* {N} and all kinds {N}\. \*Yes/no\* stays where always \"no\" is "
     rf"\({N} against {N} there,[\s\S]*?mean rank among the {N}\s+names is {N} in the longest cell, {N} after {N} "
     rf"finetuning steps and {N} after {N} \(chance\s+{N}; the same questions about another story: {N}, {N} and "
     rf"{N}\), and {N}, {N} and {N}\s+after the short pretraining\.[\s\S]*?where this table was\s+measured, the study's own run was then its {N} x {N} cell\.",
     [_lengths_steps("pretrain_steps", 0), _lengths_steps("pretrain_steps", 1), _lengths_steps("finetune_steps", 0),
      _lengths_steps("finetune_steps", 1), _lengths_steps("finetune_steps", 2),
      *(_lengths((1000, steps), "all") for steps in (400, 1500, 3000)),
      *(_lengths((3500, steps), "all") for steps in (400, 1500, 3000)),
      _lengths((3500, 3000), "all", "low"), _lengths((3500, 3000), "all", "high"),
      _lengths_steps("finetune_steps", 2), _lengths((1000, 3000), "feeling"),
      _lengths((1000, 400), "where"), _lengths((3500, 400), "where"), _lengths_steps("finetune_steps", 0),
      _lengths_steps("finetune_steps", 1), _lengths((3500, 1500), "where"), _lengths((3500, 1500), "what"),
      _lengths_steps("finetune_steps", 2), _lengths((3500, 3000), "who/parent"),
      _lengths((3500, 3000), "who/parent", "n"), _lengths((3500, 3000), "who/hero"),
      _lengths((3500, 3000), "who/friend"), _lengths((3500, 1500), "who/parent"), _lengths((3500, 1500), "who/hero"),
      _lengths((3500, 1500), "who/friend"), _lengths_steps("finetune_steps", 1),
      *(_swapped((3500, 3000), kind) for kind in ("who/parent", "who/hero", "where", "all")),
      _lengths((3500, 3000), "yes_no"), lambda load: _cell(load, (3500, 3000))["baselines"]["yes_no"]["share"],
      lambda load: 1 / _cell(load, (1000, 400))["names"]["hero"]["right_chance"], _lengths_rank((3500, 3000)),
      _lengths_rank((3500, 1500)), _lengths_steps("finetune_steps", 1), _lengths_rank((3500, 400)),
      _lengths_steps("finetune_steps", 0),
      lambda load: (1 / _cell(load, (1000, 400))["names"]["hero"]["right_chance"] + 1) / 2,
      *(_lengths_rank((3500, steps), control=True) for steps in (3000, 1500, 400)),
      *(_lengths_rank((1000, steps)) for steps in (400, 1500, 3000)),
      _lengths_steps("pretrain_steps", 1), _lengths_steps("finetune_steps", 1)]),
    (rf"the study's {N}-step model, pretrained again on the Intel Xeon, finetuned {N} steps each way[\s\S]*?the "
     rf"echoed way also for {N} steps[\s\S]*?All kinds\s+together: plain {N}, {N} and {N}, the fact first {N}, the "
     rf"fact after {N}, echoed {N} \({N}-{N}\), {N}\s+and {N}, echoed twice as long {N}, compared {N} and {N};"
     rf"[\s\S]*?\(100% and 100%, then 100% and 100%\), the third {N} and {N}; the three plain runs name the\s+main "
     rf"character {N}, {N} and {N} of the time and the friend {N}, {N} and {N}\.[\s\S]*?the parent {N} in one echoed\s+run and {N} in the other, \*feeling\* {N} and {N}; and the "
     rf"plain recipe of the {N} x {N} cell above,\s+on the AMD CPU, named the main character {N} and the parent {N} "
     rf"of the time, where the same recipe\s+here names them {N} and {N}\.[\s\S]*?every row \({N} to {N}, against "
     rf"{N}\): the echo is right on {N} of those\s+questions and the fact on {N}, yet given a right echo the verdict "
     rf"is right only {N} and {N} of the\s+time\.[\s\S]*?misses on the parent\s+\({N}\), \*what\* \({N}\) and "
     rf"\*yes/no\* \({N}\)\.",
     [lambda load: _tuned_cell(load, "plain")["pretrain_steps"], lambda load: _tuned_cell(load, "plain")["finetune_steps"],
      lambda load: _tuned_cell(load, "asked_first_longer")["finetune_steps"],
      _tuned("plain", "all"), _tuned("plain_seed43", "all"), _tuned("plain_seed44", "all"), _tuned("fact_first", "all"),
      _tuned("fact_after", "all"),
      _tuned("asked_first", "all"), _tuned("asked_first", "all", "low"), _tuned("asked_first", "all", "high"),
      _tuned("asked_first_seed43", "all"), _tuned("asked_first_seed44", "all"), _tuned("asked_first_longer", "all"),
      _tuned("compared", "all"), _tuned("compared_seed43", "all"),
      _tuned("asked_first_seed44", "who/hero"), _tuned("asked_first_seed44", "who/friend"),
      _tuned("plain", "who/hero"), _tuned("plain_seed43", "who/hero"), _tuned("plain_seed44", "who/hero"),
      _tuned("plain", "who/friend"), _tuned("plain_seed43", "who/friend"), _tuned("plain_seed44", "who/friend"),
      _tuned("asked_first", "who/parent"), _tuned("asked_first_seed43", "who/parent"),
      _tuned("asked_first", "feeling"), _tuned("asked_first_seed43", "feeling"),
      _lengths_steps("pretrain_steps", 1), _lengths_steps("finetune_steps", 2),
      _lengths((3500, 3000), "who/hero"), _lengths((3500, 3000), "who/parent"),
      _tuned("plain", "who/hero"), _tuned("plain", "who/parent"),
      lambda load: min(c["answers"]["yes_no"]["share"] for c in load(FINETUNINGS)["cells"]),
      lambda load: max(c["answers"]["yes_no"]["share"] for c in load(FINETUNINGS)["cells"]),
      lambda load: _tuned_cell(load, "plain")["baselines"]["yes_no"]["share"],
      _told("asked_first", "echo_right"), _told("asked_first", "fact_right"),
      _told("asked_first", "verdict_when_echo_right"), _told("asked_first_seed43", "verdict_when_echo_right"),
      _tuned("asked_first_seed43", "who/parent"), _tuned("asked_first_seed43", "what"),
      _tuned("asked_first_seed43", "yes_no")]),
    (rf"the compared answers write the echo right {N} of the time and the story's value {N} and\s+{N}, and their "
     rf"verdicts stay at {N} and {N}\.",
     [_told("compared", "echo_right"), _told("compared", "fact_right"), _told("compared_seed43", "fact_right"),
      _tuned("compared", "yes_no"), _tuned("compared_seed43", "yes_no")]),
    (rf"name the main character and the friend right\s+every time \({N} and {N}, then {N} and {N}\)",
     [_tuned("asked_first", "who/hero"), _tuned("asked_first", "who/friend"),
      _tuned("asked_first_seed43", "who/hero"), _tuned("asked_first_seed43", "who/friend")]),
    (rf"\*\*Finetuning\*\* \(lesson 4\): {N} steps; answer-token validation loss\s+{N} to {N}\.",
     [lambda load: FINE(load)["run"]["step"],
      lambda load: FINE(load)["eval_loss"][0], lambda load: FINE(load)["eval_loss"][-1]]),
    (rf"costs {N} nats at the first evaluation and {N} at the last",
     [lambda load: (_series("finetune_positions.json", "beyond")(load)["eval_loss"][0]
                    - _series("finetune_positions.json", "inside")(load)["eval_loss"][0]),
      lambda load: (_series("finetune_positions.json", "beyond")(load)["eval_loss"][-1]
                    - _series("finetune_positions.json", "inside")(load)["eval_loss"][-1])]),
    (rf"`answers.png`, {N} questions about {N} held-out stories\):\s+right form {N} at step {N} and {N} at the end; "
     rf"exact answers\s+{N} \({N}-{N}\) against {N} for always",
     [lambda load: load("answers.json")["questions"], lambda load: load("answers.json")["stories"],
      lambda load: load("answers.json")["rows"][0]["all"]["right_form"],
      lambda load: load("answers.json")["rows"][0]["step"], _last("answers.json", "all", "right_form"),
      _last("answers.json", "all", "share"), _last("answers.json", "all", "low"), _last("answers.json", "all", "high"),
      _overall_baseline("answers.json")]),
    (rf"\(`make study`, `study_answers.png`\): {N} pretraining steps\s+\({N} tokens\) and {N} finetuning "
     rf"steps\s+reach {N} \({N}-{N}\) exact answers against {N}\.",
     [lambda load: load("study_answers.json")["settings"]["pretrain.max_steps"],
      lambda load: load("study_answers.json")["tokens"]["pretraining"],
      lambda load: load("study_answers.json")["settings"]["finetune.max_steps"],
      _last("study_answers.json", "all", "share"), _last("study_answers.json", "all", "low"),
      _last("study_answers.json", "all", "high"), _overall_baseline("study_answers.json")]),
    (rf"who-answers by role: main character {N}, friend {N}, parent {N}; answering with the\s+story's first name "
     rf"gets {N}, {N} and {N}, and looking the word up answers {N} of yes/no questions",
     [_last("answers.json", "who/hero", "share"), _last("answers.json", "who/friend", "share"),
      _last("answers.json", "who/parent", "share"),
      *(lambda load, role=role: load("answers.json")["readers"][f"who/{role}"]["share"] for role in ("hero", "friend", "parent")),
      lambda load: load("answers.json")["readers"]["yes_no"]["share"]]),
    (rf"By role the study model names\s+the main character {N} of the time, the friend {N} and the parent {N}\.",
     [_last("study_answers.json", f"who/{role}", "share") for role in ("hero", "friend", "parent")]),
    (rf"five absent words of the same sort it ends right on {N} of blanks \(chance {N}\), {N} with the story\s+"
     rf"removed, and what lies more than {N} tokens back is worth {N} nats; yet random tokens read twice\s+"
     rf"cost it {N} nats more than the control allows",
     [_last("study_learning_order.json", "cloze", "absent", "all", "share"),
      _last("study_learning_order.json", "cloze", "absent", "all", "chance"),
      _last("study_learning_order.json", "cloze", "absent without story", "all", "share"),
      _last("study_learning_order.json", "copying", "far_context", "window"),
      _last("study_learning_order.json", "copying", "far_context", "value"),
      lambda load: (_last("study_learning_order.json", "copying", "repeated_random", "control_gain")(load)
                    - _last("study_learning_order.json", "copying", "repeated_random", "gain")(load))]),
    _kind_row("who", "who"), _kind_row("what", "what"), _kind_row("where", "where"),
    _kind_row("feeling", "feeling"), _kind_row("yes/no", "yes_no"),
    (rf"held-out beginnings: greedy {N}, sampled {N}, the stories themselves {N}\.",
     [lambda load: load("repetition.json")["rows"][0]["repeated_4gram_share"],
      lambda load: load("repetition.json")["rows"][1]["repeated_4gram_share"],
      lambda load: load("repetition.json")["rows"][4]["repeated_4gram_share"]]),
]


def _as_written(number: str, value: float) -> str:
    """``value`` written with the README number's precision (a share as a percentage where it has a %)."""
    plain = number.rstrip("%").replace(",", "")
    decimals = len(plain.partition(".")[2])
    return f"{value * 100 if number.endswith('%') else value:.{decimals}f}"


def _blanked(text: str) -> str:
    """``text`` with code spans and formulas replaced by spaces (positions kept)."""
    return SKIP.sub(lambda m: " " * len(m.group()), text)


def _named_sources(block: str, figures: Path, results: Path) -> list[Path]:
    """The results files a README paragraph names: ``x.png`` (its ``figures/x.json``) and benchmark results."""
    paths = [figures / f"{name}.json" for name in re.findall(r"([\w-]+)\.png", block)]
    paths += [results / name for name in re.findall(r"benchmarks/results/([\w.-]+\.json)", block)]
    return [p for p in paths if p.exists()]


def _file_numbers(paths: list[Path]) -> str:
    """Every value in the files, written the ways prose rounds it (and seconds also as minutes)."""
    return _numbers_of_files(tuple((path, path.stat().st_mtime_ns) for path in paths))


@cache
def _numbers_of_files(stamped: tuple[tuple[Path, int], ...]) -> str:
    """:func:`_file_numbers` of files as they were when last changed (each modification time is part of the key)."""
    forms: set[str] = set()

    def walk(value, key=""):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            for v in ([value, value / 60] if key.endswith("_s") else [value]):
                forms.update({f"{v:.0f}", f"{v:.1f}", f"{v:.2f}", f"{v:.3f}", f"{v * 100:.0f}%", f"{v:g}"})

    for path, _ in stamped:
        walk(json.loads(path.read_text()))
    return " ".join(sorted(forms))


def readme_problems(readme: Path, figures: Path = ROOT / "figures",
                    results: Path = ROOT / "benchmarks" / "results") -> list[str]:
    """Every README number that does not come from where the README says it does.

    In the results section each number must be the value its claim names (:data:`CLAIMS`), written to
    the README's precision; a number no claim covers must be a small count or a fact of the paper or
    the profiles. Elsewhere a number must be a small count, a fact of the paper or the profiles, part
    of the README's code, or a value of a results file the same paragraph names; a paragraph that
    names a benchmark result (``benchmarks/results/*.json``) takes its numbers from that file alone.
    """
    text = readme.read_text()
    begin, end = text.index(RESULTS[0]), text.index(RESULTS[1])
    section = text[begin:end]
    cache: dict[str, dict] = {}

    def load(name: str) -> dict:
        if name not in cache:
            cache[name] = json.loads((figures / name).read_text())
        return cache[name]

    problems, covered = [], []
    for pattern, getters in CLAIMS:
        found = list(re.finditer(pattern, section))
        if len(found) != 1:
            problems.append(f"the README's results section no longer reads {pattern!r} ({len(found)} matches)")
            continue
        match = found[0]
        for group, get in enumerate(getters, start=1):
            written, expected = match.group(group), _as_written(match.group(group), get(load))
            covered.append(match.span(group))
            if written.rstrip("%").replace(",", "") != expected:
                problems.append(f"{written} in {match.group(0)[:60]!r}... is {expected} in the figures")
    blank = _blanked(section)
    for match in NUMBER.finditer(blank):
        number = match.group(1).replace(",", "") + match.group(2)
        inside = any(a <= match.start() and match.end() <= b for a, b in covered)
        if not inside and not _found(number, _static_text()):
            problems.append(f"{number} in the results section is claimed by no figure value")
    rest = text[:begin] + "\n\n" + text[end:]
    code = _readme_code(text) + " " + _interval_level()
    for block in re.split(r"\n\s*\n|\n(?=- |\|)", rest):
        sources = _named_sources(block, figures, results)
        named = _file_numbers(sources)
        # a paragraph that cites a benchmark result takes its numbers from it, not from the paper
        facts = "" if any(p.parent == results for p in sources) else _static_text()
        for number in numbers_in(block):
            if not _found(number, named, facts, code):
                problems.append(f"{number} in {block.strip()[:60]!r}... is in no file the paragraph names, "
                                "nor the paper or the profiles")
    return problems


def _interval_level() -> str:
    """The confidence of every interval the course draws, from helpers.stats: "95%"."""
    from statistics import NormalDist

    from helpers.stats import Z95

    return f"{(2 * NormalDist().cdf(Z95) - 1) * 100:.0f}%"


def test_every_number_in_the_readme_comes_from_the_file_it_names():
    problems = readme_problems(ROOT / "README.md")
    assert not problems, "README numbers without their source:\n" + "\n".join(problems)


def _readme_code(readme: str) -> str:
    """The README's code blocks and spans: commands and settings, not results."""
    return _plain(" ".join(re.findall(r"```.*?```|`[^`]*`", readme, re.S)))


def _one_unit_more(number: str) -> str:
    """``number`` changed by one unit of its last digit (9 becomes 8)."""
    i = max(k for k, c in enumerate(number) if c.isdigit())
    return number[:i] + ("8" if number[i] == "9" else str(int(number[i]) + 1)) + number[i + 1:]


def test_a_readme_number_changed_by_one_unit_is_caught(tmp_path):
    """Every number of the results section, and some elsewhere, planted one unit off in a copy of the README."""
    text = (ROOT / "README.md").read_text()
    begin = text.index(RESULTS[0])
    spans = []
    for pattern, getters in CLAIMS:
        match = re.search(pattern, text[begin:])
        spans += [(begin + match.start(g), begin + match.end(g)) for g in range(1, len(getters) + 1)]
    for phrase in (r"cell took\s+\d", r"took\s+\d", r"limit of 25 minutes", r"3,582,016 parameters",
                   r"\(496,640 parameters\)"):  # elsewhere: make-test.json, the profiles
        at = re.search(phrase, text).start()
        found = NUMBER.search(text, at)
        spans.append(found.span(1) if not found.group(2) else (found.start(1), found.end(2)))
    # 85 before the copying probe, the two cloze designs and the answers by role; 9 on the study's roles and what
    # its pretraining reads; 29 on the repeats alone; 33 on the copier pretrained on stories and finetuned; 13 on the
    # same arms from a copier retrained on another machine; 46 on the survival runs; 51 on the table of lengths;
    # 30 on the ways of finetuning
    assert len(spans) == 335
    copy = tmp_path / "README.md"
    missed = []
    for start, end in spans:
        number = text[start:end]
        copy.write_text(text[:start] + _one_unit_more(number) + text[end:])
        if not readme_problems(copy):
            missed.append(f"{number} -> {_one_unit_more(number)} at {text[start - 30:start]!r}")
    assert not missed, missed
    copy.write_text(text.replace("it is right on", "it gets"))  # a claim that no longer reads is an error
    assert any("no longer reads" in p for p in readme_problems(copy))
    copy.write_text(text)
    assert readme_problems(copy) == []


def test_the_readme_calls_above_baseline_exactly_the_kinds_the_course_rule_does():
    """The study's sentence on which kinds beat their baseline, against helpers.text_metrics.versus_baselines."""
    from helpers.text_metrics import versus_baselines

    study = json.loads((ROOT / "figures" / "study_answers.json").read_text())
    verdicts = versus_baselines(study["rows"][-1], study["baselines"])
    text = " ".join((ROOT / "README.md").read_text().split())
    said = re.search(r"is not reached: (?P<above>.+?) climb above their baselines, (?P<level>.+?) cannot be told "
                     r"from theirs\.", text)
    assert said, "the README no longer says which kinds of the study beat their baseline"
    kinds = {group: {k.replace("/", "_") for k in re.findall(r"\*([a-z/]+)\*", said[group])} for group in ("above", "level")}
    kinds_asked = {k: v for k, v in verdicts.items() if k != "all" and "/" not in k}  # who's roles have their own line
    assert kinds["above"] == {k for k, v in kinds_asked.items() if v["verdict"] == "above"}
    assert kinds["level"] == {k for k, v in kinds_asked.items() if v["verdict"] == "not distinguishable"}
