"""The study command, shrunk to seconds: it trains, reuses what it trained, and writes its figure and numbers."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from helpers import study
from helpers.config import get_profile
from rigged import one_thread  # noqa: F401 - a fixture

SHRUNK = {"pretrain.max_steps": 6, "pretrain.warmup_steps": 2, "pretrain.save_every": 3, "pretrain.eval_every": 3,
          "pretrain.batch_size": 4,
          "data.train_stories": 300, "data.val_stories_count": 20, "data.block_size": 128,
          "data.instruction_limit": 200, "finetune.max_steps": 4,
          "finetune.save_every": 2, "finetune.eval_every": 2, "finetune.warmup_steps": 0, "finetune.batch_size": 4,
          "finetune.eval_max_batches": 1, "device": "cpu"}


def test_study_writes_its_answer_curve(tmp_path):
    args = [sys.executable, "-m", "helpers", "study", "--quiet", "--out", str(tmp_path / "runs"),
            "--figures", str(tmp_path / "figs"), "--stories", "2", "--prompts", "3"]
    args += [item for key, value in SHRUNK.items() for item in ("--set", f"{key}={value}")]
    first = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900, env=os.environ)
    assert first.returncode == 0, first.stderr
    result = json.loads((tmp_path / "figs" / "study_answers.json").read_text())
    assert [r["step"] for r in result["rows"]] == [0, 2, 4]  # the pretrained model, then every checkpoint
    assert result["settings"]["finetune.max_steps"] == 4 and result["stories"] == 2
    assert set(result["baselines"]) == set(result["rows"][0]) - {"step", "tokens", "all"}
    assert result["tokens"]["finetuning"] == result["rows"][-1]["tokens"] > 0
    assert "minutes" not in result  # the machine's times go to benchmarks/results beside the figures folder
    timing = json.loads((tmp_path / "benchmarks" / "results" / "study-timing.json").read_text())
    assert set(timing["minutes"]) == {"pretraining", "finetuning", "measuring"}
    final = result["rows"][-1]["all"]
    assert first.stdout.strip().endswith(
        f"study done: exact answers {final['share']:.3f} (95% {final['low']:.3f}-{final['high']:.3f}) on "
        f"{result['questions']} questions; figure {tmp_path / 'figs' / 'study_answers.png'}")
    again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900, env=os.environ)
    assert again.returncode == 0 and "reusing the finished run" in again.stdout  # it only measures again
    assert json.loads((tmp_path / "figs" / "study_answers.json").read_text())["rows"] == result["rows"]
    order = json.loads((tmp_path / "figs" / "study_learning_order.json").read_text())
    assert [r["step"] for r in order["rows"]] == [3, 6] and order["prompts"] == 3 and order["cloze_stories"] == 2


def test_the_study_timing_is_a_benchmark_result_that_names_its_machine(tmp_path):
    """Minutes mean nothing without the machine, and change on every rerun: not in figures/, in benchmarks/results/."""
    path = study.write_timing(tmp_path / "benchmarks" / "results" / "study-timing.json",
                              {"pretraining": 8.69622, "finetuning": 3.03846}, settings={"pretrain.max_steps": 3500},
                              device="cpu")
    written = json.loads(path.read_text())
    assert written["minutes"] == {"pretraining": 8.7, "finetuning": 3.04}
    assert written["settings"] == {"pretrain.max_steps": 3500} and written["date"][:2] == "20"
    machine = written["machine"]
    assert machine["platform"] == platform.platform() and machine["cores"] == os.cpu_count() > 0
    assert machine["torch"] == torch.__version__ and machine["device"] == "cpu" and machine["gpu"] is None
    assert machine["cpu"] and machine["cpu"] != "unknown CPU"


def test_the_study_keeps_its_minutes_out_of_its_figures(tmp_path, monkeypatch):
    """run_study with its training and measuring replaced by stand-ins: where each of its numbers goes."""
    class Run:
        def __init__(self, tokens, elapsed_s):
            self.tokens, self.eval_loss, self.elapsed_s = tokens, 1.0, elapsed_s

    runs = {"pretrain": Run(700, 120.0), "finetune": Run(300, 60.0)}
    drawn = {}
    monkeypatch.setattr(study, "ensure_run", lambda stage, *args, **kwargs: runs[stage])
    monkeypatch.setattr(study, "answer_curve", lambda *args, **kwargs: {"rows": []})
    monkeypatch.setattr(study, "learning_order", lambda *args, **kwargs: {})
    monkeypatch.setattr(study, "learning_order_figure", lambda *args, **kwargs: None)
    monkeypatch.setattr(study, "answer_curve_figure", lambda curve, **kwargs: drawn.update(curve))
    monkeypatch.setattr(study, "close", lambda figure: None)
    result = study.run_study(tmp_path / "runs", tmp_path / "figures", progress=False)
    assert "minutes" not in drawn and drawn["tokens"] == {"pretraining": 700, "finetuning": 300}
    timing = json.loads((tmp_path / "benchmarks" / "results" / "study-timing.json").read_text())
    assert result["timing"] == str(tmp_path / "benchmarks" / "results" / "study-timing.json")
    assert timing["minutes"]["pretraining"] == 2.0 and timing["minutes"]["finetuning"] == 1.0


def test_the_pretraining_arms_table_measures_each_arm_and_reuses_its_run(tmp_path, capsys):
    tiny = {key: value for key, value in SHRUNK.items() if key.startswith(("pretrain.", "data.")) and "instruction" not in key}
    arms = {"plain": tiny, "half drills": {**tiny, "data.copy_share": 0.5}}
    table = study.run_arms(tmp_path / "runs", tmp_path / "figs", arms=arms, stories=4, progress=False)
    rows = table["rows"]
    assert [r["arm"] for r in rows] == ["plain", "half drills"] and rows[1]["settings"]["data.copy_share"] == 0.5
    assert [r["steps"] for r in rows] == [6, 6] and rows[0]["tokens"] == 6 * 4 * 128
    drilled = json.loads((tmp_path / "runs" / "arms" / "1" / "pretrain" / "run.json").read_text())
    assert drilled["data"]["train_blocks"] == 2 * json.loads(
        (tmp_path / "runs" / "arms" / "0" / "pretrain" / "run.json").read_text())["data"]["train_blocks"]
    assert table["lines"]["the copying rule"]["repeated_random"]["gain"] > 7  # the ceiling; the floor beside it
    assert set(table["lines"]) == {"untrained", "the copying rule"}
    written = json.loads((tmp_path / "figs" / "study_arms.json").read_text())
    assert written["figure"] == "study_arms.png" and (tmp_path / "figs" / "study_arms.png").stat().st_size > 0
    assert written["rows"][1]["copying"]["name_mentions"]["first_mentions"] == 4
    markdown = (tmp_path / "figs" / "study_arms.md").read_text().splitlines()
    assert len(markdown) == 2 + 2 + 2 and markdown[3].startswith("| half drills | ") and "data.copy_share=0.5" in markdown[3]
    capsys.readouterr()
    again = study.run_arms(tmp_path / "runs", tmp_path / "figs", arms=arms, stories=4, progress=False)
    assert "reusing the finished run" in capsys.readouterr().out and again["rows"] == rows


def test_the_arms_table_writes_each_measure_in_its_column():
    """Hand-made numbers, all different, so a column filled from the wrong measure shows."""
    copying = {"repeated_random": {"first": 7.6, "repeat": 5.1, "gain": 2.5, "control_gain": 0.25, "shifted_gain": 0.75},
               "name_mentions": {"first": 4.5, "later": 3.25}, "far_context": {"value": 0.125}}
    table = {"rows": [{"arm": "fixed repeats", "settings": {"data.copy_share": 0.5}, "steps": 900, "minutes": 6.5,
                       "eval_loss": 1.2344, "copying": copying}], "lines": {"untrained": copying}}
    lines = study._arms_markdown(table).splitlines()
    assert lines[2] == ("| fixed repeats | data.copy_share=0.5 | 900 | 6.5 | 1.234 | 7.60 / 5.10 | +2.25 | +0.50 "
                        "| 4.50 / 3.25 | +0.125 |")
    assert lines[3] == "| untrained | – | – | – | – | 7.60 / 5.10 | +2.25 | +0.50 | 4.50 / 3.25 | +0.125 |"
    assert len(lines[0].split("|")) == len(lines[1].split("|")) == len(lines[2].split("|"))


def test_a_repeat_batch_is_the_start_token_then_the_same_random_tokens_twice():
    pool, gen = torch.arange(1, 2048), torch.Generator().manual_seed(0)
    fixed = study.repeat_batch(pool, 0, 3, (50, 50), gen)
    assert fixed.shape == (3, 101) and (fixed[:, 0] == 0).all() and (fixed[:, 1:] > 0).all()
    assert torch.equal(fixed[:, 1:51], fixed[:, 51:]) and not torch.equal(fixed[0, 1:51], fixed[1, 1:51])
    widths = {study.repeat_batch(pool, 0, 2, (3, 5), gen).shape[1] for _ in range(40)}
    assert widths == {7, 9, 11}  # every length from 3 to 5, each written twice after the start token


def test_training_on_repeats_is_deterministic_and_probes_every_length_plain_and_shifted(one_thread):
    settings = dict(steps=4, batch_size=2, probe_every=2, probe_lengths=(5, 8), progress=False)
    curve = study.train_on_repeats((5, 8), **settings)
    assert [r["step"] for r in curve] == [2, 4]
    assert set(curve[0]["saved"]) == set(curve[0]["shifted"]) == {"5", "8"}
    assert curve == study.train_on_repeats((5, 8), **settings)
    assert curve != study.train_on_repeats((5, 8), **{**settings, "seed": 1})
    assert curve[0]["loss"] != curve[1]["loss"]  # it trains
    assert curve[1]["shifted"]["5"] != curve[1]["saved"]["5"]  # two measures on different sequences
    assert curve[1]["shifted"] != study.train_on_repeats((5, 8), **{**settings, "gap": 3})[1]["shifted"]


def test_the_repeats_table_writes_each_arm_s_last_probe(tmp_path, one_thread):
    arms = {"one": {"lengths": (6, 6), "steps": 2}, "two": {"lengths": (4, 6), "steps": 3}}
    table = study.run_repeat_arms(tmp_path, arms=arms, batch_size=2, probe_every=1, probe_lengths=(6,), gap=4,
                                  progress=False)
    written = json.loads((tmp_path / "study_repeats.json").read_text())
    assert [r["step"] for r in written["rows"][0]["curve"]] == [1, 2]  # each arm trains its own number of steps
    assert [r["step"] for r in written["rows"][1]["curve"]] == [1, 2, 3]
    assert [r["steps"] for r in written["rows"]] == [2, 3] and written["rows"][1]["lengths"] == [4, 6]
    # the figure's JSON keeps 6 significant digits
    assert written["rows"][0]["curve"][1]["shifted"]["6"] == pytest.approx(table["rows"][0]["curve"][1]["shifted"]["6"], rel=1e-5)
    assert written["settings"]["gap"] == 4 and (tmp_path / "study_repeats.png").stat().st_size > 0
    # a shorter run of the same lengths is the start of a longer one (a constant rate, the same seed)
    assert table["rows"][1]["curve"][:2] == study.run_repeat_arms(
        tmp_path / "short", arms={"two": {"lengths": (4, 6), "steps": 2}}, batch_size=2, probe_every=1,
        probe_lengths=(6,), gap=4, progress=False)["rows"][0]["curve"]
    overridden = study.run_repeat_arms(tmp_path / "all", arms=arms, steps=1, batch_size=2, probe_every=1,
                                       probe_lengths=(6,), gap=4, progress=False)
    assert [r["steps"] for r in overridden["rows"]] == [1, 1]
    hand = {"rows": [{"arm": "one length", "lengths": [50, 50], "curve": [
        {"step": 300, "saved": {"30": 0.5, "50": 0.25}, "shifted": {"30": 0.125, "50": -0.75}},
        {"step": 900, "saved": {"30": 0.01, "50": 2.07}, "shifted": {"30": 0.03, "50": -0.07}}]}]}
    assert study._repeats_markdown(hand).splitlines() == [
        "| arm | lengths trained | steps | saved at 30 | shifted at 30 | saved at 50 | shifted at 50 |",
        "|---|---|---|---|---|---|---|",
        "| one length | 50-50 | 900 | +0.01 | +0.03 | +2.07 | -0.07 |"]


def test_the_study_command_trains_the_repeat_arms_it_names(tmp_path, monkeypatch, capsys, one_thread):
    from helpers.cli import main

    monkeypatch.setattr(study, "REPEAT_ARMS", {"tiny": {"lengths": (4, 5), "steps": 2}})
    assert main(["study", "--repeats", "--quiet", "--figures", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"1 repeat arms measured; table {tmp_path / 'study_repeats.json'}\n"
    written = json.loads((tmp_path / "study_repeats.json").read_text())
    assert [(r["arm"], r["steps"], [p["step"] for p in r["curve"]]) for r in written["rows"]] == [("tiny", 2, [2])]
    assert (tmp_path / "study_repeats.md").read_text().splitlines()[2].startswith("| tiny | 4-5 | 2 | ")


TINY_STORIES = {key: value for key, value in SHRUNK.items()
                if key.startswith(("pretrain.", "data.")) and "instruction" not in key}


def test_the_study_command_trains_the_pretraining_arms_it_names(tmp_path, monkeypatch, capsys, one_thread):
    from helpers.cli import main

    monkeypatch.setattr(study, "PRETRAINING_ARMS", {"tiny": TINY_STORIES})
    runs, figs = tmp_path / "runs", tmp_path / "figs"
    assert main(["study", "--arms", "--quiet", "--out", str(runs), "--figures", str(figs)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"1 pretraining arms measured; table {figs / 'study_arms.json'}"
    written = json.loads((figs / "study_arms.json").read_text())
    assert [(r["arm"], r["steps"]) for r in written["rows"]] == [("tiny", 6)] and written["stories"] == 60
    assert json.loads((runs / "arms" / "0" / "pretrain" / "run.json").read_text())["profile"]["pretrain"]["max_steps"] == 6


# Four arms of study.COPIER_ARMS: both starts, and two that share the pretraining that changes the most settings.
QA_DRILLS = "from the copier, copy drills and questions 25% each, drills in finetuning too"
QA_DENSE = "from the copier, copy drills and questions 25% each, answer-dense and drills in finetuning"
FOUR_ARMS = {name: study.COPIER_ARMS[name] for name in ("from the copier", "from scratch", QA_DRILLS, QA_DENSE)}


def test_every_copier_arm_is_a_valid_profile_and_arms_share_only_a_pretraining_they_agree_on():
    folders = study.copier_arm_folders(study.COPIER_ARMS)
    assert list(folders) == list(study.COPIER_ARMS)
    assert folders[QA_DRILLS] == ("copier-qa-stories", "copier-qa-stories-drills-finetune")
    assert folders["from the copier"] == ("copier-stories", "copier-stories-finetune")
    for arm in study.COPIER_ARMS.values():
        assert arm["start"] in ("copier", None)
        settings = {**arm["pretrain"], **arm["finetune"]}
        profile = get_profile("lesson", settings)  # a key or value the profile refuses raises here
        assert all(study._setting(profile, key) == value for key, value in settings.items())
        assert not {key for key in arm["pretrain"] if key.startswith(("finetune.", "data.finetune_"))}
    other = {**study.COPIER_ARMS[QA_DRILLS], "pretrain": {"data.copy_share": 0.25}}
    with pytest.raises(ValueError, match=r"^copier arm 'other': folder 'copier-qa-stories' holds another arm's "
                                         r"pretraining \(start 'copier', settings \{'data.copy_share': 0.25, "
                                         r"'data.qa_share': 0.25\}\); name a folder of its own$"):
        study.copier_arm_folders({QA_DRILLS: study.COPIER_ARMS[QA_DRILLS], "other": other})
    with pytest.raises(ValueError, match="every finetuning needs a folder of its own"):
        study.copier_arm_folders({QA_DRILLS: study.COPIER_ARMS[QA_DRILLS],
                                  "again": {**study.COPIER_ARMS[QA_DRILLS], "finetune": {}}})
    with pytest.raises(ValueError, match="every finetuning needs a folder of its own"):
        study.copier_arm_folders({"a": {"start": None, "pretrain": {}, "finetune": {}, "folder": "x",
                                        "finetuned": "copier"}})


def test_the_study_command_trains_a_copier_then_stories_in_each_arm(tmp_path, monkeypatch, capsys, one_thread):
    from helpers.cli import main
    from helpers.copying import copying_probe
    from helpers.model import load_model
    from helpers.stories import corpus
    from helpers.tokenizer import profile_tokenizer

    monkeypatch.setattr(study, "COPIER", {"lengths": (4, 6), "steps": 3})
    runs, figs = tmp_path / "runs", tmp_path / "figs"
    command = ["study", "--copier", "--quiet", "--out", str(runs), "--figures", str(figs), "--stories", "2",
               *[item for key, value in SHRUNK.items() for item in ("--set", f"{key}={value}")],
               *[item for name in FOUR_ARMS for item in ("--arm", name)]]
    assert main(command) == 0
    written = json.loads((figs / "study_copier_stories.json").read_text())
    rows = written["rows"]
    last = [row["curve"][-1]["copying"]["repeated_random"] for row in rows]
    assert capsys.readouterr().out.splitlines()[-1] == (
        "saved on a random repeat beyond its control at the last model: "
        + ", ".join(f"{row['arm']} {r['gain'] - r['control_gain']:+.2f}" for row, r in zip(rows, last))
        + f"; table {figs / 'study_copier_stories.json'}")
    assert written["copier"]["steps"] == 3 and len(written["copier"]["curve"]) == 1  # probed at its last step
    assert written["settings"]["pretrain.max_steps"] == 6 and written["stories"] == 60
    assert [row["arm"] for row in rows] == list(FOUR_ARMS)
    assert [(row["pretraining"], row["finetuning"]) for row in rows] == [
        (arm["pretrain"], arm["finetune"]) for arm in FOUR_ARMS.values()]
    for row in rows:
        assert [p["step"] for p in row["curve"]] == [0, 3, 6] and row["curve"][0]["tokens"] == 0
        assert [p["eval_loss"] is None for p in row["curve"]] == [True, False, False]
        assert row["curve"][2]["tokens"] == 6 * 4 * 128
    for arm in FOUR_ARMS.values():
        init = None if arm["start"] is None else str(runs / "copier")
        assert json.loads((runs / arm["folder"] / "run.json").read_text())["init"] == init
    # each arm trained with its own settings on top of the command's; the last two share one pretraining
    assert sorted(p.name for p in runs.iterdir() if p.is_dir()) == sorted(
        ["copier", "copier-stories", "copier-stories-finetune", "scratch-stories", "scratch-stories-finetune",
         "copier-qa-stories", "copier-qa-stories-drills-finetune", "copier-qa-stories-dense-finetune"])
    described = json.loads((runs / "copier-qa-stories" / "run.json").read_text())
    assert described["profile"]["data"]["qa_share"] == 0.25 and described["profile"]["pretrain"]["max_steps"] == 6
    assert described["data"]["qa_blocks"] == described["data"]["copy_drills"] > 0
    tuned = json.loads((runs / "copier-qa-stories-drills-finetune" / "run.json").read_text())["data"]
    assert tuned["copy_drills"] == round(tuned["train_examples"] * 0.25)  # a quarter of the examples are drills
    dense = json.loads((runs / "copier-qa-stories-dense-finetune" / "run.json").read_text())["data"]
    assert dense["dense_examples"] == round(dense["train_examples"] * 0.35) > 0 and "dense_examples" not in tuned
    assert dense["copy_drills"] == round(dense["train_examples"] * 0.25)
    # step 0 of the copier arm is the copier itself, probed on the same held-out stories
    profile = get_profile("lesson", TINY_STORIES)
    facts = corpus("validation", 60, seed=profile.data.corpus_seed)
    expected = copying_probe(load_model(runs / "copier"), profile_tokenizer(profile), facts, 128)["repeated_random"]
    assert rows[0]["curve"][0]["copying"]["repeated_random"] == pytest.approx(expected, rel=1e-5)
    assert rows[0]["curve"][1]["copying"] != rows[1]["curve"][1]["copying"]
    # then each arm finetuned the lesson's way from its last model: probed again, and asked the questions of 2 stories
    for row, (folder, finetuned) in zip(rows, study.copier_arm_folders(FOUR_ARMS).values()):
        tuned = json.loads((runs / finetuned / "run.json").read_text())
        assert tuned["init"] == str(runs / folder) and tuned["profile"]["finetune"]["max_steps"] == 4
        answers, before = row["finetuned"]["answers"], row["finetuned"]["before"]
        assert answers["step"] == 4 and answers["all"]["n"] == row["finetuned"]["questions"] > 0
        assert before["step"] == 0 and before["all"]["n"] == answers["all"]["n"]
        tuned_probe = copying_probe(load_model(runs / finetuned), profile_tokenizer(profile), facts, 128)
        assert row["finetuned"]["copying"]["repeated_random"] == pytest.approx(tuned_probe["repeated_random"], rel=1e-5)
    assert set(written["lines"]) == {"the copying rule"} and (figs / "study_copier_stories.png").stat().st_size
    markdown = (figs / "study_copier_stories.md").read_text().splitlines()
    assert markdown[2].startswith("| from the copier | 0 | – | ")
    assert markdown[2 + 4 * 3].startswith("| from the copier, finetuned | – | – | +")
    assert markdown[2 + 4 * 3 + 4].startswith("| the copying rule | – | – | +")
    assert markdown[-10].startswith("| from the copier, before finetuning | ")
    assert markdown[-9].startswith("| from the copier | ") and markdown[-2].startswith("| baseline | ")
    assert markdown[-1].startswith("| trivial reader | ") and len(markdown) == 2 + 4 * 3 + 4 + 1 + 15
    # run again: the copier and every run are reused, the numbers measured again are the same
    copier_made = (runs / "copier" / "model.safetensors").stat().st_mtime_ns
    assert main(command) == 0
    assert capsys.readouterr().out.count("reusing the finished run") == 8  # 4 pretrainings asked for, 4 finetunings
    assert (runs / "copier" / "model.safetensors").stat().st_mtime_ns == copier_made
    assert json.loads((figs / "study_copier_stories.json").read_text()) == written
    # one choice at a time, and no settings for the arms that take none
    assert main(["study", "--arms", "--repeats"]) == 2
    assert capsys.readouterr().err == ("error: study: choose one of --arms, --repeats, --copier, --survival, "
                                       "--lengths and --finetunings\n")
    assert main(["study", "--repeats", "--set", "pretrain.max_steps=5"]) == 2
    assert "--set changes the study's settings" in capsys.readouterr().err
    assert main(["study", "--arm", "from scratch"]) == 2
    assert capsys.readouterr().err == "error: study: --arm chooses arms of --copier\n"
    assert main(["study", "--copier", "--arm", "from scratch", "--arm", "from nowhere"]) == 2
    assert capsys.readouterr().err.startswith("error: study --arm 'from nowhere': no such copier arm; choose among "
                                              "['from the copier', 'from scratch', ")


def test_the_copier_table_writes_each_measure_in_its_column():
    """Hand-made numbers, all different, so a column filled from the wrong measure shows."""
    copying = {"repeated_random": {"gain": 2.5, "control_gain": 0.25, "shifted_gain": 0.75},
               "name_mentions": {"first": 4.5, "later": 3.25}, "far_context": {"value": 0.125}}
    table = {"rows": [{"arm": "from the copier", "curve": [{"step": 0, "eval_loss": None, "copying": copying},
                                                            {"step": 100, "eval_loss": 2.3456, "copying": copying}]}],
             "lines": {"the copying rule": copying}}
    assert study._copier_markdown(table).splitlines()[2:] == [
        "| from the copier | 0 | – | +2.25 | +0.50 | +1.25 | +0.125 |",
        "| from the copier | 100 | 2.346 | +2.25 | +0.50 | +1.25 | +0.125 |",
        "| the copying rule | – | – | +2.25 | +0.50 | +1.25 | +0.125 |"]
