"""Pretraining length x finetuning length: which of the two moves the answers?

The lesson pretrains 1000 steps and finetunes 400; the study
(:func:`helpers.study.run_study`) pretrains 3500 and finetunes far longer, and
answers far more questions right. Both changed at once, so the study alone
cannot say which length bought what. :func:`run_lengths` trains every cell of
the table (each pretraining length, each finetuning length from each
pretraining: do the answers keep climbing?), all else held at the study's
settings, and measures every cell the
same way: the exact answers per kind (who split by role) with their 95%
intervals, the no-reading baselines and trivial readers beside them, whether
its who-answers lean toward the story's names at all
(:mod:`helpers.name_lookup`, with its story-swapped control and an untrained
model), the copying probe (:mod:`helpers.copying`) before and after
finetuning, and the validation losses. Each length's effect is then read with
the course's one rule (:func:`helpers.stats.compare_shares`) at each level of
the other length. Every cell answers yes/no plainly (the bare verdict).
:func:`run_finetunings` finetunes the study's pretrained model in other ways
(:data:`FINETUNINGS`), each measured as a cell is and read against the plain
finetuning of the longest cell; the way whose profile is the study's (the
echoed one) is the study's own run, so ``make study`` trains it once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .config import Profile, get_profile
from .copying import held_out_probe, saved_beyond_control
from .evaluation_plots import lengths_figure
from .learning_order import answer_tokens
from .plots import as_stored, close
from .model import build_model, load_model
from .name_lookup import name_lookup, swapped_stories
from .probes import qa_accuracy, verdict_check
from .runs import write_bytes, write_text
from .sources import held_out_questions
from .stats import compare_shares
from .study import STUDY_SETTINGS, finetune_and_ask
from .text_metrics import answer_tallies
from .tokenizer import profile_tokenizer
from .train import ensure_run

__all__ = ["LENGTHS", "FINETUNINGS", "cell_folders", "length_effects", "finetuning_effects", "run_lengths",
           "run_finetunings"]

# The lesson's lengths and the study's, crossed; and finetuning twice the study's: do the answers (and the name
# lookup, which begins only at the study's lengths) keep climbing?
LENGTHS: dict[str, tuple[int, ...]] = {"pretrain_steps": (1000, 3500), "finetune_steps": (400, 1500, 3000)}

# Ways of finetuning the study's pretrained model, each at the longest finetuning of LENGTHS unless its settings
# say otherwise (finetune.max_steps), each against the plain one: yes/no answered with the fact that decides it,
# that fact written before the verdict (a step the verdict can lean on) or after it, or the value the question asks
# about echoed first (the verdict then only has to find the word it has just written in the story), and that for
# twice as long; and the plain and the echoed finetuning twice more, with the batches in other orders (finetune.seed):
# how much of a row is the recipe and how much the run? Then the echo beside the story's own value with the verdict
# after both, twice: a check the verdict can make between two words just written; and that with a quarter of the
# examples verdict drills (the check alone, without story or question), and with nine in ten of them drills, for the
# study's length and twice it: can this model learn the check at all? Last, half the examples drills for twice the
# study's length (about as many drills as nine in ten give in 3000 steps, as many answers as the study's finetuning):
# does the check, once learned, decide the story's yes/no answers?
FINETUNINGS: dict[str, dict[str, Any]] = {
    "plain": {"data.yes_no_fact": "none"},
    "fact_first": {"data.yes_no_fact": "before"},
    "fact_after": {"data.yes_no_fact": "after"},
    "asked_first": {"data.yes_no_fact": "asked"},
    "asked_first_longer": {"data.yes_no_fact": "asked", "finetune.max_steps": 6000},
    "plain_seed43": {"data.yes_no_fact": "none", "finetune.seed": 43},
    "asked_first_seed43": {"data.yes_no_fact": "asked", "finetune.seed": 43},
    "plain_seed44": {"data.yes_no_fact": "none", "finetune.seed": 44},
    "asked_first_seed44": {"data.yes_no_fact": "asked", "finetune.seed": 44},
    "compared": {"data.yes_no_fact": "compared"},
    "compared_seed43": {"data.yes_no_fact": "compared", "finetune.seed": 43},
    "compared_verdict_drills": {"data.yes_no_fact": "compared", "data.finetune_verdict_share": 0.25},
    "mostly_verdict_drills": {"data.yes_no_fact": "compared", "data.finetune_verdict_share": 0.9},
    "mostly_verdict_drills_longer": {"data.yes_no_fact": "compared", "data.finetune_verdict_share": 0.9,
                                     "finetune.max_steps": 6000},
    "half_verdict_drills_longer": {"data.yes_no_fact": "compared", "data.finetune_verdict_share": 0.5,
                                   "finetune.max_steps": 6000},
}


def cell_folders(pretrain_steps: int, name: str, cell: Profile, study: Profile) -> tuple[str, str]:
    """A cell's pretraining and finetuning folders in the study's out folder: "pretrain" where it pretrains as long
    as the ``study`` does, and "finetune" where its whole profile is the study's (the study's own runs), else
    "pretrain-<steps>" and "finetune-<name>"."""
    pretrained = "pretrain" if pretrain_steps == study.pretrain.max_steps else f"pretrain-{pretrain_steps}"
    return pretrained, "finetune" if cell == study else f"finetune-{name}"


def length_effects(cells: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each length made longer with the other held: per kind, the change in exact answers and its verdict.

    ``cells`` hold ``pretrain_steps``, ``finetune_steps``, ``answers`` (per
    kind: successes and n, beside other entries) and ``baselines`` (its keys
    name the kinds; "all" is added). For every pair of cells that differ in one
    length only, the longer against the shorter, by :func:`helpers.stats.compare_shares`.
    """
    effects = []
    for longer in cells:
        for shorter in cells:
            varied = [key for key in ("pretrain_steps", "finetune_steps") if longer[key] != shorter[key]]
            if len(varied) != 1 or longer[varied[0]] < shorter[varied[0]]:
                continue
            held = "finetune_steps" if varied[0] == "pretrain_steps" else "pretrain_steps"
            effects.append({"varied": varied[0], "from": shorter[varied[0]], "to": longer[varied[0]],
                            "held": held, "at": longer[held],
                            "kinds": {kind: compare_shares(got["successes"], got["n"],
                                                           shorter["answers"][kind]["successes"],
                                                           shorter["answers"][kind]["n"])
                                      for kind, got in _kinds(longer)}})
    return effects


def finetuning_effects(cells: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each finetuning against the plain one (the cell whose ``finetuning`` is "plain"; none without it): per kind,
    the change in exact answers and its verdict by :func:`helpers.stats.compare_shares`."""
    plain = next((cell for cell in cells if cell["finetuning"] == "plain"), None)
    if plain is None:
        return []
    return [{"finetuning": cell["finetuning"],
             "kinds": {kind: compare_shares(got["successes"], got["n"], plain["answers"][kind]["successes"],
                                            plain["answers"][kind]["n"]) for kind, got in _kinds(cell)}}
            for cell in cells if cell is not plain]


def run_lengths(out_dir: str | Path, figures_dir: str | Path, *, lengths: Mapping[str, tuple[int, ...]] | None = None,
                overrides: Mapping[str, Any] | None = None, stories: int = 60, question_stories: int = 64,
                progress: bool = True) -> dict[str, Any]:
    """Train every cell of ``lengths`` (:data:`LENGTHS`) on top of the study's settings and ``overrides``, and
    measure it.

    Folders come from :func:`cell_folders`; finished runs are reused and
    their measurements kept beside them, so the cells can be split across
    processes by pretraining length and assembled by a last call. Each cell
    holds its lengths, folders, tokens and validation losses, the copying
    probe on ``stories`` held-out stories after pretraining and after
    finetuning, the exact answers before and after finetuning to the
    questions about ``question_stories`` held-out stories, and the name probe
    (:func:`helpers.name_lookup.name_lookup`) of the finetuned model with its
    control. Training minutes are a measurement of the machine and stay in
    the runs' records. Written to ``study_lengths.png``, ``.json`` and ``.md``
    in ``figures_dir``.
    """
    lengths, out = LENGTHS if lengths is None else lengths, Path(out_dir)
    if not (lengths["pretrain_steps"] and lengths["finetune_steps"]):
        raise ValueError("run_lengths needs at least one pretraining length and one finetuning length")
    study = get_profile("lesson", {**STUDY_SETTINGS, **(overrides or {})})
    cells = []
    for pretrain_steps in lengths["pretrain_steps"]:
        settings = {**STUDY_SETTINGS, **(overrides or {}), "pretrain.max_steps": pretrain_steps}
        for finetune_steps in lengths["finetune_steps"]:
            changes = {"finetune.max_steps": finetune_steps, **FINETUNINGS["plain"]}
            folders = cell_folders(pretrain_steps, f"{pretrain_steps}-{finetune_steps}",
                                   get_profile("lesson", {**settings, **changes}), study)
            cells.append({"pretrain_steps": pretrain_steps, "finetune_steps": finetune_steps,
                          **_measured_cell(out, folders, settings, changes, stories, question_stories, progress)})
    table = {"what": "the study's settings with each pretraining length crossed with each finetuning length; exact "
                     "answers per kind and the copying probe of every cell",
             "lengths": {key: list(values) for key, values in lengths.items()},
             "settings": dict(overrides or {}), "stories": stories, "cells": cells,
             "untrained": _names(build_model(study.model, seed=study.pretrain.seed), study, question_stories),
             "effects": length_effects(cells)}
    stem = Path(figures_dir) / "study_lengths"
    close(lengths_figure(table, title="Pretraining length x finetuning length: exact answers per kind",
                         path=stem.with_suffix(".png")))
    write_bytes(stem.with_suffix(".md"), _lengths_markdown(table).encode())
    return {**table, "path": str(stem.with_suffix(".json"))}


def run_finetunings(out_dir: str | Path, figures_dir: str | Path, *, names: Sequence[str] | None = None,
                    overrides: Mapping[str, Any] | None = None, stories: int = 60, question_stories: int = 64,
                    progress: bool = True) -> dict[str, Any]:
    """Finetune the study's pretrained model each way of :data:`FINETUNINGS` (``names``: only these), measure each
    as a cell of :func:`run_lengths` is measured, and compare each with the plain finetuning by the one rule.

    The plain finetuning is the cell of :data:`LENGTHS` at the study's
    pretraining and the longest finetuning, and the one finetuned as the
    study's settings say is the study's own run, so ``make study`` trains each once.
    As with the lengths, processes can share the finetunings by name and a
    last call with every name assembles the table: ``study_finetunings.png``,
    ``.json`` and ``.md`` in ``figures_dir``. A call with some names keeps the
    other rows of the table already there when they were measured the same
    way after the same pretraining (:func:`_beside_earlier`), so a new way of
    finetuning joins the table without the others trained again.
    """
    unknown = [name for name in names or () if name not in FINETUNINGS]
    if unknown:
        raise ValueError(f"no finetuning named {unknown[0]!r}; choose among {list(FINETUNINGS)}")
    out, settings = Path(out_dir), {**STUDY_SETTINGS, **(overrides or {})}
    study = get_profile("lesson", settings)
    plain_steps = max(LENGTHS["finetune_steps"])
    cells = []
    for name in names or FINETUNINGS:
        changes = {"finetune.max_steps": plain_steps, **FINETUNINGS[name]}
        folders = cell_folders(study.pretrain.max_steps, f"{study.pretrain.max_steps}-{plain_steps}"
                               if name == "plain" else name, get_profile("lesson", {**settings, **changes}), study)
        cells.append({"finetuning": name, "changes": changes, "pretrain_steps": study.pretrain.max_steps,
                      "finetune_steps": changes["finetune.max_steps"],
                      **_measured_cell(out, folders, settings, changes, stories, question_stories, progress)})
    stem = Path(figures_dir) / "study_finetunings"
    cells = _beside_earlier(stem.with_suffix(".json"), cells, dict(overrides or {}), stories, plain_steps)
    table = {"what": "the study's pretrained model finetuned each way of helpers.lengths.FINETUNINGS; exact answers "
                     "per kind and the copying probe of each, and each against the plain finetuning",
             "settings": dict(overrides or {}), "stories": stories, "cells": cells,
             "effects": finetuning_effects(cells)}
    close(lengths_figure(table, title="Ways of finetuning the study's model: exact answers per kind",
                         path=stem.with_suffix(".png")))
    write_bytes(stem.with_suffix(".md"), _finetunings_markdown(table).encode())
    return {**table, "path": str(stem.with_suffix(".json"))}


def _beside_earlier(path: Path, cells: list[dict[str, Any]], settings: Mapping[str, Any], stories: int,
                    plain_steps: int) -> list[dict[str, Any]]:
    """The measured ``cells`` and the rows of the table at ``path`` not measured now, in :data:`FINETUNINGS`' order:
    those rows only if that table had the same settings and stories, each row still finetunes as
    :data:`FINETUNINGS` says, and each started from the same pretrained model (its length and validation loss) and
    answered as many questions; else the measured cells alone."""
    if not path.exists():
        return cells
    earlier, first = json.loads(path.read_text()), cells[0]
    same_start = as_stored([first["pretrain_steps"], first["eval_loss"]["pretraining"], first["answers"]["all"]["n"]])
    if (earlier.get("settings"), earlier.get("stories")) != (settings, stories) or any(
            cell["finetuning"] not in FINETUNINGS
            or cell["changes"] != {"finetune.max_steps": plain_steps, **FINETUNINGS[cell["finetuning"]]}
            or [cell["pretrain_steps"], cell["eval_loss"]["pretraining"], cell["answers"]["all"]["n"]] != same_start
            for cell in earlier["cells"]):
        return cells
    by_name = {cell["finetuning"]: cell for cell in [*earlier["cells"], *cells]}  # the measured ones win
    return [by_name[name] for name in FINETUNINGS if name in by_name]


def _measured_cell(out: Path, folders: tuple[str, str], settings: Mapping[str, Any], changes: Mapping[str, Any],
                   stories: int, question_stories: int, progress: bool) -> dict[str, Any]:
    """Pretrain with ``settings`` and finetune with ``changes`` on top (each reused when finished), then measure:
    the copying probe before and after finetuning, the exact answers and their controls (cached beside the
    finetuning folder), the tokens and the validation losses."""
    pretrained, tuned = folders
    profile = get_profile("lesson", {**settings, **changes})
    pre = ensure_run("pretrain", get_profile("lesson", settings), out / pretrained, progress=progress)
    fin = ensure_run("finetune", profile, out / tuned, init=out / pretrained, progress=progress)

    def measure() -> dict[str, Any]:
        probe, model = held_out_probe(profile, stories), load_model(out / tuned)
        questions = held_out_questions(question_stories, profile.data.corpus_seed, profile.data.yes_no_fact)
        asked = qa_accuracy(model, profile_tokenizer(profile), swapped_stories(questions), examples=len(questions),
                            max_new_tokens=answer_tokens(profile.data.yes_no_fact),
                            position_offset=profile.data.position_offset, progress=False)
        checked = ({"verdict_check": verdict_check(model, profile_tokenizer(profile), questions)}
                   if profile.data.yes_no_fact == "compared" else {})
        return {"pretrained_copying": probe(load_model(out / pretrained)),
                **finetune_and_ask(out / pretrained, out / tuned, profile, probe, question_stories, progress),
                **_names(model, profile, question_stories), "answers_swapped": answer_tallies(asked["examples"]),
                **checked}

    asked = {"stories": stories, "question_stories": question_stories, "story swapped": True}
    return {"folders": list(folders), "tokens": {"pretraining": pre.tokens, "finetuning": fin.tokens},
            "eval_loss": {"pretraining": pre.eval_loss, "finetuning": fin.eval_loss},
            **_cached(out / tuned, asked, measure)}


def _names(model, profile, question_stories: int) -> dict[str, dict]:
    """The name probe of a model's who-answers (:func:`helpers.name_lookup.name_lookup`) and its story-swapped
    control."""
    tokenizer = profile_tokenizer(profile)
    questions = held_out_questions(question_stories, profile.data.corpus_seed)
    return {"names": name_lookup(model, tokenizer, questions),
            "names_control": name_lookup(model, tokenizer, questions, control=True)}


def _cached(folder: Path, asked: Mapping[str, Any], measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A finished cell's measurements, kept beside its finetuning folder and measured again only when ``asked``
    (the numbers of stories) changes, so that the call assembling the cells does not measure them twice."""
    cached = folder.with_name(folder.name + "_measured.json")
    if not cached.exists() or json.loads(cached.read_text())["asked"] != dict(asked):
        write_text(cached, json.dumps({"asked": dict(asked), "measured": measure()}, indent=1))  # in its order
    return json.loads(cached.read_text())["measured"]


def _kinds(cell: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """The cell's exact answers, kind by kind (who by role), then all kinds together."""
    return [(kind, cell["answers"][kind]) for kind in [*cell["baselines"], "all"]]


def _lengths_markdown(table: Mapping[str, Any]) -> str:
    """Every cell's exact answers per kind with intervals, the baselines and trivial readers under them, then
    what making each length longer did, kind by kind, by the one rule; then copying and losses per cell."""
    heads = ["pretraining steps", "finetuning steps"]

    def label(cell: Mapping[str, Any]) -> list[str]:
        return [str(cell["pretrain_steps"]), str(cell["finetune_steps"])]

    rows = []
    for effect in table["effects"]:
        what = "pretraining" if effect["varied"] == "pretrain_steps" else "finetuning"
        held = "finetuning" if what == "pretraining" else "pretraining"
        rows.append(([f"{what} {effect['from']} → {effect['to']} steps", f"{held} {effect['at']} steps"],
                     effect["kinds"]))
    return _cells_markdown(table, heads, label, "Each length made longer, the other held: the change in exact answers "
                           "in percentage points, its 95% interval and the verdict of the one rule "
                           "(helpers.stats.compare_shares):", ["change", "held at"], rows,
                           [("untrained", "–")] if "untrained" in table else [])


def _finetunings_markdown(table: Mapping[str, Any]) -> str:
    """As :func:`_lengths_markdown`, a row per finetuning, each compared with the plain one; and for yes/no answers
    written with their fact, how often the fact (and an echo of the question) was right and, when it was, the
    verdict."""
    heads = ["finetuning", "settings"]

    def label(cell: Mapping[str, Any]) -> list[str]:
        return [cell["finetuning"], ", ".join(f"{key}={value}" for key, value in cell["changes"].items())]

    rows = [([effect["finetuning"], "plain"], effect["kinds"]) for effect in table["effects"]]
    out = _cells_markdown(table, heads, label, "Each finetuning against the plain one: the change in exact answers "
                          "in percentage points, its 95% interval and the verdict of the one rule "
                          "(helpers.stats.compare_shares):", ["finetuning", "against"], rows, [])
    told = [cell for cell in table["cells"] if "fact_right" in cell["answers"]["yes_no"]]
    if told:
        out += ("\nYes/no answers written with their deciding fact: the fact right, and the verdict right among the "
                "answers whose fact is (all of them if the verdict followed from its fact; chance about half); where "
                "the answer first echoes what the question asks about, the echo right and the verdict right among "
                "those:\n\n| finetuning | fact right | verdict right when the fact is | echo right | verdict right "
                "when the echo is |\n|---|---|---|---|---|\n")
        for cell in told:
            got = [cell["answers"]["yes_no"].get(key) for key in ("fact_right", "verdict_when_fact_right",
                                                                  "echo_right", "verdict_when_echo_right")]
            out += f"| {cell['finetuning']} | " + " | ".join(
                "–" if g is None else f"{g['share']:.0%} ({g['low']:.0%}-{g['high']:.0%}) of {g['n']}"
                for g in got) + " |\n"
    checked = [cell for cell in table["cells"] if "verdict_check" in cell]
    if checked:
        out += ("\nThe check alone (helpers.probes.verdict_check): each held-out yes/no answer cut before its verdict "
                "and read without its story or question; right when the right verdict is the likelier next word. A "
                "reader that cannot compare scores what always saying \"no\" scores:\n\n"
                "| finetuning | verdict right | always \"no\" |\n|---|---|---|\n")
        for cell in checked:
            got, floor = cell["verdict_check"], cell["verdict_check"]["always_no"]
            out += (f"| {cell['finetuning']} | {got['share']:.0%} ({got['low']:.0%}-{got['high']:.0%}) of {got['n']} "
                    f"| {floor['share']:.0%} |\n")
    return out


def _cells_markdown(table: Mapping[str, Any], heads: list[str], label: Callable[[Mapping[str, Any]], list[str]],
                    effects_intro: str, effect_heads: list[str], effects: list[tuple[list[str], Mapping[str, Any]]],
                    extra_names: list[tuple[str, str]]) -> str:
    """The tables of a set of measured cells, each cell named by ``label`` under ``heads``: exact answers per kind
    (baselines and trivial readers under them), the story-swapped control, ``effects`` by the one rule (under
    ``effects_intro``, each row named under ``effect_heads``), copying
    and losses, and the name probe (``extra_names``: the untrained model's row, when the table has one)."""
    cells = table["cells"]
    kinds = [kind for kind, _ in _kinds(cells[0])]
    lead, rule = "| " + " | ".join(heads) + " | ", "|" + "---|" * (len(kinds) + len(heads))
    blank = " | ".join("–" for _ in heads[1:])
    out = ["Exact answers (95% interval) to the questions about held-out stories:", "",
           lead + " | ".join(kinds) + " |", rule]
    for cell in cells:
        out.append("| " + " | ".join(label(cell)) + " | " + " | ".join(
            f"{got['share']:.0%} ({got['low']:.0%}-{got['high']:.0%})" for _, got in _kinds(cell)) + " |")
    for name, lines in (("baseline", cells[0]["baselines"]), ("trivial reader", cells[0]["readers"])):
        out.append(f"| {name} | {blank} | " + " | ".join(
            f"{lines[k]['share']:.0%}" if k in lines else "–" for k in kinds) + " |")
    out += ["", "The same questions, each asked about the next story (the control: an answer the story decides must "
                "fall to what the question alone gives away):", "", lead + " | ".join(kinds) + " |", rule]
    for cell in cells:
        out.append("| " + " | ".join(label(cell)) + " | " + " | ".join(
            f"{got['share']:.0%} ({got['low']:.0%}-{got['high']:.0%})"
            for got in (cell["answers_swapped"][kind] for kind in kinds)) + " |")
    if effects:
        out += ["", effects_intro, "",
                "| " + " | ".join(effect_heads) + " | " + " | ".join(kinds) + " |",
                "|" + "---|" * (len(kinds) + len(effect_heads))]
        for names, compared in effects:
            out.append("| " + " | ".join(names) + " | " + " | ".join(
                f"{100 * c['difference']:+.0f} ({100 * c['low']:+.0f} to {100 * c['high']:+.0f}), {c['verdict']}"
                for c in compared.values()) + " |")
    out += ["", lead + "validation loss after pretraining | after finetuning "
                "| random repeat saved beyond the control, pretrained | finetuned |", "|" + "---|" * (len(heads) + 4)]
    for cell in cells:
        saved = [saved_beyond_control(c["repeated_random"]) for c in (cell["pretrained_copying"], cell["copying"])]
        losses = ["–" if loss is None else f"{loss:.3f}" for loss in cell["eval_loss"].values()]
        out.append("| " + " | ".join(label(cell))
                   + f" | {losses[0]} | {losses[1]} | {saved[0]:+.2f} | {saved[1]:+.2f} |")
    out += ["", "Who-answers that are names, read at the answer's first token (helpers.name_lookup): the right name "
                "ranked first among all 200 names, a name the story mentions (and the question does not) ranked "
                "first, and the right name's mean rank (1 is first; 100.5 is chance); then the same with each "
                "question asked about another story, a control that must fall to chance. Chance: the right name "
                "first, then a story name first.", "",
            lead + "role | right name first | story name first | mean rank "
            "| story swapped: right name first | story name first | mean rank | chance |",
            "|" + "---|" * (len(heads) + 8)]
    rows = [(label(c), c) for c in cells] + [(list(names), table["untrained"]) for names in extra_names]
    for names, cell in rows:
        for role, got in cell["names"].items():
            cells_of = [f"{m['share']:.0%} ({m['low']:.0%}-{m['high']:.0%})" for m in (got["right_first"],
                                                                                     got["story_first"])]
            swapped = cell["names_control"][role]
            control = [f"{m['share']:.0%} ({m['low']:.0%}-{m['high']:.0%})" for m in (swapped["right_first"],
                                                                                    swapped["story_first"])]
            out.append("| " + " | ".join(names) + f" | {role} | {' | '.join(cells_of)} | {got['mean_rank']:.1f} | "
                       f"{' | '.join(control)} | {swapped['mean_rank']:.1f} | "
                       f"{got['right_chance']:.1%}, {got['story_chance']:.1%} |")
    return "\n".join(out) + "\n"
