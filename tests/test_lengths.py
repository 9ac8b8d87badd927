"""Pretraining length x finetuning length: the folders, the effects read by the one rule, the command shrunk."""

from __future__ import annotations

import json
import shutil

import pytest

from helpers import lengths
from helpers.sources import held_out_questions
from rigged import one_thread  # noqa: F401 - a fixture
from test_study import SHRUNK

def test_the_study_runs_are_the_cell_trained_as_the_study_and_the_others_are_named():
    from helpers.config import get_profile
    from helpers.study import STUDY_SETTINGS

    study = get_profile("lesson", STUDY_SETTINGS)
    plain = get_profile("lesson", {**STUDY_SETTINGS, **lengths.FINETUNINGS["plain"]})
    assert lengths.cell_folders(3500, "asked_first", get_profile("lesson", {**STUDY_SETTINGS}), study) == (
        "pretrain", "finetune")
    assert lengths.cell_folders(3500, "3500-3000", plain, study) == ("pretrain", "finetune-3500-3000")
    assert lengths.cell_folders(1000, "1000-400", get_profile("lesson", {**STUDY_SETTINGS, "pretrain.max_steps": 1000,
                                                                         "finetune.max_steps": 400}),
                                study) == ("pretrain-1000", "finetune-1000-400")
    # the study finetunes as the echoed way of the table does; every cell of LENGTHS answers plainly
    assert {**STUDY_SETTINGS, **lengths.FINETUNINGS["asked_first"], "finetune.max_steps": 3000} == STUDY_SETTINGS
    assert lengths.FINETUNINGS["plain"] == {"data.yes_no_fact": "none"}
    for changes in lengths.FINETUNINGS.values():  # every way is a profile the settings allow (or this raises)
        get_profile("lesson", {**STUDY_SETTINGS, **changes})


def _cell(pretrain: int, finetune: int, who: int, where: int) -> dict:
    """A cell of 50 who- and 50 where-questions with these many right."""
    answers = {"who": {"successes": who, "n": 50}, "where": {"successes": where, "n": 50},
               "all": {"successes": who + where, "n": 100}, "step": finetune, "tokens": 7}
    return {"pretrain_steps": pretrain, "finetune_steps": finetune, "answers": answers,
            "baselines": {"who": {}, "where": {}}}


def test_each_length_is_read_longer_against_shorter_with_the_other_held():
    cells = [_cell(1000, 400, 5, 10), _cell(1000, 1500, 5, 40), _cell(3500, 400, 6, 30), _cell(3500, 1500, 5, 45)]
    effects = lengths.length_effects(cells)
    assert [(e["varied"], e["from"], e["to"], e["held"], e["at"]) for e in effects] == [
        ("finetune_steps", 400, 1500, "pretrain_steps", 1000), ("pretrain_steps", 1000, 3500, "finetune_steps", 400),
        ("pretrain_steps", 1000, 3500, "finetune_steps", 1500), ("finetune_steps", 400, 1500, "pretrain_steps", 3500)]
    assert [list(e["kinds"]) for e in effects] == [["who", "where", "all"]] * 4  # the kinds, not step or tokens
    # longer finetuning from the short pretraining: where 10 -> 40 of 50 is up 60 points, far outside chance
    where = effects[0]["kinds"]["where"]
    assert where["difference"] == pytest.approx(0.6) and where["verdict"] == "above" and where["low"] > 0.4
    assert effects[0]["kinds"]["who"]["difference"] == 0 and effects[0]["kinds"]["who"]["verdict"] == (
        "not distinguishable")
    assert effects[0]["kinds"]["all"]["difference"] == pytest.approx(0.3)
    # one more right of 50 is no effect; the long pretraining's where gains 20 points at 400 finetuning steps
    assert effects[1]["kinds"]["who"]["difference"] == pytest.approx(0.02)
    assert effects[1]["kinds"]["who"]["verdict"] == "not distinguishable"
    assert effects[1]["kinds"]["where"]["difference"] == pytest.approx(0.4) and effects[1]["kinds"]["where"][
        "verdict"] == "above"
    assert lengths.length_effects(cells[:1]) == []


def test_each_finetuning_is_read_against_the_plain_one():
    cells = [{**_cell(3500, 3000, 10, 40), "finetuning": name} for name in ("fact_first", "plain")]
    cells[0]["answers"]["who"]["successes"] = 30  # 30 of 50 against the plain finetuning's 10
    effects = lengths.finetuning_effects(cells)
    assert [e["finetuning"] for e in effects] == ["fact_first"]
    who = effects[0]["kinds"]["who"]
    assert who["difference"] == pytest.approx(0.4) and who["verdict"] == "above" and who["low"] > 0.2
    assert effects[0]["kinds"]["where"]["difference"] == 0
    assert lengths.finetuning_effects(cells[:1]) == []  # nothing to read against without the plain one


def test_the_lengths_command_splits_by_pretraining_length_and_reuses_the_study_runs(tmp_path, monkeypatch, capsys,
                                                                                   one_thread):
    from helpers.cli import main

    monkeypatch.setattr(lengths, "LENGTHS", {"pretrain_steps": (3, 6), "finetune_steps": (2, 4)})
    asked_swapped = []  # the questions of each cell's control, as the model got them

    def recording(model, tokenizer, records, **options):
        asked_swapped.append([dict(r) for r in records])
        return real_qa_accuracy(model, tokenizer, records, **options)

    real_qa_accuracy = lengths.qa_accuracy
    monkeypatch.setattr(lengths, "qa_accuracy", recording)
    runs, figs = tmp_path / "runs", tmp_path / "figs"
    command = ["study", "--lengths", "--quiet", "--out", str(runs), "--figures", str(figs), "--stories", "2",
               *[item for key, value in SHRUNK.items() for item in ("--set", f"{key}={value}")]]
    # one process takes the short pretraining only: its run and its two finetunings
    assert main(command + ["--pretrain-steps", "3"]) == 0
    assert sorted(p.name for p in runs.iterdir()) == ["finetune-3-2", "finetune-3-2_measured.json", "finetune-3-4",
                                                      "finetune-3-4_measured.json", "pretrain-3"]
    capsys.readouterr()
    kept = (runs / "finetune-3-2_measured.json").stat().st_mtime_ns
    # the last call assembles all four cells, reusing the short pretraining's three runs; the long pretraining
    # (the study's, 6 steps here) is the study's own, its finetunings not (they answer yes/no plainly)
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in runs.iterdir() if p.is_dir()) == [
        "finetune-3-2", "finetune-3-4", "finetune-6-2", "finetune-6-4", "pretrain", "pretrain-3"]
    assert (runs / "finetune-3-2_measured.json").stat().st_mtime_ns == kept  # measured once, by the first call
    assert sum(f"reusing the finished run in {runs / name} " in printed
               for name in ("pretrain-3", "finetune-3-2", "finetune-3-4")) == 3
    written = json.loads((figs / "study_lengths.json").read_text())
    cells = written["cells"]
    assert [(c["pretrain_steps"], c["finetune_steps"]) for c in cells] == [(3, 2), (3, 4), (6, 2), (6, 4)]
    for cell in cells:
        pretrained, tuned = (json.loads((runs / name / "run.json").read_text()) for name in cell["folders"])
        assert pretrained["profile"]["pretrain"]["max_steps"] == cell["pretrain_steps"]
        assert tuned["profile"]["finetune"]["max_steps"] == cell["finetune_steps"]
        assert tuned["profile"]["data"]["yes_no_fact"] == "none"
        assert tuned["init"] == str(runs / cell["folders"][0])
        assert cell["tokens"]["pretraining"] == cell["pretrain_steps"] * 4 * 128
        assert cell["answers"]["step"] == cell["finetune_steps"] and cell["before"]["step"] == 0
        assert cell["answers"]["all"]["n"] == cell["questions"] > 0
    # the two cells of one pretraining start from the same model, probed the same
    assert cells[0]["pretrained_copying"] == cells[1]["pretrained_copying"] != cells[2]["pretrained_copying"]
    assert cells[0]["before"] == cells[1]["before"]
    assert [(e["varied"], e["from"], e["to"], e["at"]) for e in written["effects"]] == [
        ("finetune_steps", 2, 4, 3), ("pretrain_steps", 3, 6, 2), ("pretrain_steps", 3, 6, 4),
        ("finetune_steps", 2, 4, 6)]
    shares = [f"{c['pretrain_steps']} x {c['finetune_steps']} steps {c['answers']['all']['share']:.0%}"
              for c in cells]
    assert printed.splitlines()[-1] == (f"exact answers, all kinds: {', '.join(shares)}; "
                                        f"table {figs / 'study_lengths.json'}")
    markdown = (figs / "study_lengths.md").read_text().splitlines()
    assert [line.split(" | ")[:2] for line in markdown[4:8]] == [["| 3", "2"], ["| 3", "4"], ["| 6", "2"],
                                                                  ["| 6", "4"]]
    assert markdown[8].startswith("| baseline | – | ") and markdown[9].startswith("| trivial reader | – | ")
    # the control: every cell's questions asked again, each about the next story, scored like the answers
    questions = held_out_questions(2)
    assert len(asked_swapped) == 4 and all(asked == asked_swapped[0] for asked in asked_swapped)
    stories = list(dict.fromkeys(q["input"] for q in questions))
    assert len(stories) == 2 and [q["input"] for q in asked_swapped[0]] == [
        stories[1 - stories.index(q["input"])] for q in questions]
    assert [{k: v for k, v in q.items() if k != "input"} for q in asked_swapped[0]] == [
        {k: v for k, v in q.items() if k != "input"} for q in questions]
    for cell in cells:
        assert cell["answers_swapped"]["all"]["n"] == cell["questions"] and set(cell["answers_swapped"]) == set(
            cell["answers"]) - {"step", "tokens"}
    assert markdown[13].startswith("| pretraining steps | finetuning steps | ")
    assert [line.split(" | ")[:2] for line in markdown[15:19]] == [["| 3", "2"], ["| 3", "4"], ["| 6", "2"],
                                                                    ["| 6", "4"]]
    assert markdown[24].startswith("| finetuning 2 → 4 steps | pretraining 3 steps | ")
    assert markdown[25].startswith("| pretraining 3 → 6 steps | finetuning 2 steps | ")
    losses = markdown.index("| pretraining steps | finetuning steps | validation loss after pretraining "
                            "| after finetuning | random repeat saved beyond the control, pretrained | finetuned |")
    assert [line.split(" | ")[:2] for line in markdown[losses + 2:losses + 6]] == [
        ["| 3", "2"], ["| 3", "4"], ["| 6", "2"], ["| 6", "4"]]
    # the name probe for every cell and the untrained model, each role with its story-swapped control
    roles = list(cells[0]["names"])
    assert roles[-1] == "all" and set(roles) <= {"hero", "friend", "all"}
    heroes = [q for q in questions if q.get("role") in ("hero", "friend")]
    for cell in cells + [written["untrained"]]:
        assert cell["names"]["all"]["right_first"]["n"] == cell["names_control"]["all"]["right_first"]["n"] == len(
            heroes)
    assert markdown[-1].startswith("| untrained | – | all | ") and len(markdown) == losses + 6 + 5 + 5 * len(roles)
    assert (figs / "study_lengths.png").stat().st_size
    # wrong flags are refused by name
    assert main(["study", "--pretrain-steps", "3"]) == 2
    assert capsys.readouterr().err == "error: study: --pretrain-steps chooses cells of --lengths\n"
    assert main(["study", "--lengths", "--pretrain-steps", "5"]) == 2
    assert capsys.readouterr().err == ("error: study --pretrain-steps 5: not a pretraining length of "
                                       "helpers.lengths.LENGTHS; choose among [3, 6]\n")
    with pytest.raises(ValueError, match="at least one pretraining length"):
        lengths.run_lengths(runs, figs, lengths={"pretrain_steps": (), "finetune_steps": (2,)})


def test_the_finetunings_start_from_the_study_pretraining_and_are_read_against_the_plain_one(tmp_path, monkeypatch,
                                                                                         capsys, one_thread):
    from helpers.cli import main

    # the plain finetuning is the longest of LENGTHS (5 steps), not the study's own (4 in SHRUNK)
    monkeypatch.setattr(lengths, "LENGTHS", {"pretrain_steps": (3, 6), "finetune_steps": (2, 5)})
    monkeypatch.setattr(lengths, "FINETUNINGS", {"plain": {"data.yes_no_fact": "none"},
                                                 "drilled": {"data.yes_no_fact": "compared",
                                                             "data.finetune_verdict_share": 0.25},
                                                 "longer": {"finetune.max_steps": 6}})
    runs, figs = tmp_path / "runs", tmp_path / "figs"
    command = ["study", "--finetunings", "--quiet", "--out", str(runs), "--figures", str(figs), "--stories", "2",
               *[item for key, value in SHRUNK.items() for item in ("--set", f"{key}={value}")]]
    assert main(command + ["--finetuning", "drilled"]) == 0  # one process: the study's pretraining, one finetuning
    assert sorted(p.name for p in runs.iterdir()) == ["finetune-drilled", "finetune-drilled_measured.json",
                                                      "pretrain"]
    capsys.readouterr()
    assert main(command) == 0
    printed = capsys.readouterr().out
    # the pretraining three times, the first finetuning once, and the two new ones once more as they are measured
    assert printed.count("reusing the finished run") == 6
    assert f"finetune: reusing the finished run in {runs / 'finetune-drilled'} " in printed
    written = json.loads((figs / "study_finetunings.json").read_text())
    cells = written["cells"]
    assert [(c["finetuning"], c["folders"], c["finetune_steps"]) for c in cells] == [
        ("plain", ["pretrain", "finetune-6-5"], 5), ("drilled", ["pretrain", "finetune-drilled"], 5),
        ("longer", ["pretrain", "finetune-longer"], 6)]
    for cell in cells:
        tuned = json.loads((runs / cell["folders"][1] / "run.json").read_text())
        assert tuned["profile"]["finetune"]["max_steps"] == cell["finetune_steps"] == cell["answers"]["step"]
        assert tuned["profile"]["data"]["yes_no_fact"] == {"plain": "none", "drilled": "compared"}.get(
            cell["finetuning"], "asked")  # "longer" finetunes as the study does, but longer
        assert tuned["init"] == str(runs / "pretrain")
    # the same pretrained model under every finetuning; the yes/no answers of drilled are scored by their verdict,
    # and its verdicts also checked on the two words alone
    assert cells[0]["pretrained_copying"] == cells[1]["pretrained_copying"] == cells[2]["pretrained_copying"]
    assert "fact_right" in cells[1]["answers"]["yes_no"] and "fact_right" not in cells[0]["answers"]["yes_no"]
    assert cells[1]["answers"]["yes_no"]["n"] == cells[0]["answers"]["yes_no"]["n"] == cells[1]["verdict_check"]["n"] > 0
    assert [("verdict_check" in cell) for cell in cells] == [False, True, False]
    assert [e["finetuning"] for e in written["effects"]] == ["drilled", "longer"]
    for effect, cell in zip(written["effects"], cells[1:]):
        got, plain = cell["answers"]["all"], cells[0]["answers"]["all"]
        assert effect["kinds"]["all"]["difference"] == pytest.approx(got["share"] - plain["share"])
    markdown = (figs / "study_finetunings.md").read_text().splitlines()
    assert [line.split(" | ")[:2] for line in markdown[4:7]] == [
        ["| plain", "finetune.max_steps=5, data.yes_no_fact=none"],
        ["| drilled", "finetune.max_steps=5, data.yes_no_fact=compared, data.finetune_verdict_share=0.25"],
        ["| longer", "finetune.max_steps=6"]]
    assert markdown[7].startswith("| baseline | – | ")
    assert markdown.index("| finetuning | against | " + " | ".join(list(cells[0]["baselines"]) + ["all"]) + " |") > 7
    fact = markdown.index("| finetuning | fact right | verdict right when the fact is | echo right | verdict right "
                          "when the echo is |")
    checked = markdown.index('| finetuning | verdict right | always "no" |')
    assert [line.split(" | ")[0] for line in markdown[fact + 2:checked - 3]] == ["| drilled", "| longer"]
    got = cells[1]["verdict_check"]
    assert markdown[checked + 2:] == [f"| drilled | {got['share']:.0%} ({got['low']:.0%}-{got['high']:.0%}) of {got['n']} "
                                      f"| {got['always_no']['share']:.0%} |"]
    assert printed.splitlines()[-1].startswith("exact answers, all kinds: plain ")
    with pytest.raises(ValueError, match="no finetuning named 'sideways'; choose among"):
        lengths.run_finetunings(runs, figs, names=["sideways"])


def test_a_new_finetuning_joins_the_table_of_the_same_pretraining_without_the_others_trained_again(
        tmp_path, monkeypatch, capsys, one_thread):
    from helpers.cli import main

    monkeypatch.setattr(lengths, "LENGTHS", {"pretrain_steps": (6,), "finetune_steps": (2,)})
    monkeypatch.setattr(lengths, "FINETUNINGS", {"plain": {"data.yes_no_fact": "none"},
                                                 "fact_after": {"data.yes_no_fact": "after"}})
    runs, figs = tmp_path / "runs", tmp_path / "figs"
    command = ["study", "--finetunings", "--quiet", "--out", str(runs), "--figures", str(figs), "--stories", "2",
               *[item for key, value in SHRUNK.items() for item in ("--set", f"{key}={value}")]]
    assert main(command) == 0
    table = figs / "study_finetunings.json"
    before = json.loads(table.read_text())["cells"]
    for folder in ("finetune-6-2", "finetune-fact_after"):  # gone: a row kept from the table is not trained again
        shutil.rmtree(runs / folder)
        (runs / f"{folder}_measured.json").unlink()
    monkeypatch.setattr(lengths, "FINETUNINGS", {**lengths.FINETUNINGS, "asked_first": {"data.yes_no_fact": "asked"}})
    assert main(command + ["--finetuning", "asked_first"]) == 0
    cells = json.loads(table.read_text())["cells"]
    assert [c["finetuning"] for c in cells] == ["plain", "fact_after", "asked_first"] and cells[:2] == before
    assert sorted(p.name for p in runs.iterdir()) == ["finetune-asked_first", "finetune-asked_first_measured.json",
                                                      "pretrain"]
    assert "| asked_first | " in (figs / "study_finetunings.md").read_text()
    marked = [cells[0], {**cells[1], "mark": 1}, cells[2]]
    table.write_text(json.dumps({**json.loads(table.read_text()), "cells": marked}))
    assert main(command + ["--finetuning", "fact_after"]) == 0  # a row measured again replaces the table's
    assert json.loads(table.read_text())["cells"] == cells
    # rows of another pretraining, or finetuned otherwise than FINETUNINGS now says, are not kept
    for stale in ({**before[0], "eval_loss": {**before[0]["eval_loss"], "pretraining": 9.0}},
                  {**before[0], "changes": {"finetune.max_steps": 1}}):
        table.write_text(json.dumps({**json.loads(table.read_text()), "cells": [stale, *cells[1:]]}))
        assert main(command + ["--finetuning", "asked_first"]) == 0
        assert [c["finetuning"] for c in json.loads(table.read_text())["cells"]] == ["asked_first"]
        table.write_text(json.dumps({**json.loads(table.read_text()), "cells": cells}))
