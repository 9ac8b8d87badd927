"""Copying's survival across runs: the rule that counts a run as kept, the summary, and the command shrunk to seconds."""

from __future__ import annotations

import json

import pytest

from helpers import study, survival
from helpers.config import get_profile
from rigged import one_thread  # noqa: F401 - a fixture
from test_study import TINY_STORIES


def _point(step: int, saved: float, control: float = 0.25) -> dict:
    """A probed model whose random repeat saves ``saved`` nats beyond a control that gains ``control``."""
    return {"step": step, "copying": {"repeated_random": {"gain": saved + control, "control_gain": control}}}


def test_a_run_counts_as_kept_only_by_its_last_model_at_or_above_the_line():
    assert survival.survived([_point(0, 7.0), _point(100, 0.0), _point(1000, 1.0)])  # exactly the line: kept
    assert not survival.survived([_point(0, 7.0), _point(1000, 0.96875)])
    assert not survival.survived([_point(0, 7.0), _point(500, 6.0), _point(1000, 0.5)])  # lost at the end
    assert survival.survived([_point(0, 0.0), _point(1000, 0.5)], kept=0.5)


def test_the_summary_counts_survivors_per_recipe_with_an_interval():
    rows = [{"recipe": "drills", "curve": [_point(0, 7.0), _point(1000, 6.0)]},
            {"recipe": "drills", "curve": [_point(0, 7.0), _point(1000, 0.0)]},
            {"recipe": "warm", "curve": [_point(0, 7.0), _point(1000, 3.0)]},
            {"recipe": "drills", "curve": [_point(0, 7.0), _point(1000, 1.5)]}]
    summary = survival.survival_summary(rows)
    assert list(summary) == ["drills", "warm"]
    assert summary["drills"]["survived"]["successes"] == 2 and summary["drills"]["survived"]["n"] == 3
    assert summary["drills"]["survived"]["low"] == pytest.approx(0.2077, abs=1e-4)  # Wilson, 2 of 3
    assert summary["drills"]["saved_at_end"] == pytest.approx([6.0, 0.0, 1.5])
    assert summary["warm"]["survived"]["successes"] == summary["warm"]["survived"]["n"] == 1


PLAN = {"copier_seeds": (0, 1), "pretrain_seeds": (42, 43),
        "recipes": {"drills": {"folder": "drills", "pretrain": {"data.copy_share": 0.25}}}}


def test_the_survival_command_runs_every_seed_reuses_runs_and_splits_by_copier(tmp_path, monkeypatch, capsys,
                                                                             one_thread):
    from helpers.cli import main
    from helpers.copying import copying_probe
    from helpers.model import load_model
    from helpers.stories import corpus
    from helpers.tokenizer import profile_tokenizer

    monkeypatch.setattr(study, "COPIER", {"lengths": (4, 6), "steps": 3})
    monkeypatch.setattr(survival, "SURVIVAL", PLAN)
    runs, figs = tmp_path / "runs", tmp_path / "figs"
    command = ["study", "--survival", "--quiet", "--out", str(runs), "--figures", str(figs),
               *[item for key, value in TINY_STORIES.items() for item in ("--set", f"{key}={value}")]]
    # one process takes copier seed 1 only: its copier and its two runs, nothing of seed 0
    assert main(command + ["--copier-seed", "1"]) == 0
    assert sorted(p.name for p in runs.iterdir()) == [
        "copier-seed1", "copier-seed1_curve.json", "survival-copier1-drills-seed42",
        "survival-copier1-drills-seed42_copying.json", "survival-copier1-drills-seed43",
        "survival-copier1-drills-seed43_copying.json"]
    capsys.readouterr()
    kept_curve = (runs / "survival-copier1-drills-seed42_copying.json").stat().st_mtime_ns
    # the last call assembles the whole plan, reusing what seed 1's process made
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert printed.count("reusing the finished run") == 2
    assert (runs / "survival-copier1-drills-seed42_copying.json").stat().st_mtime_ns == kept_curve
    written = json.loads((figs / "study_copier_survival.json").read_text())
    rows = written["rows"]
    assert [(r["copier_seed"], r["pretrain_seed"]) for r in rows] == [(0, 42), (0, 43), (1, 42), (1, 43)]
    for row in rows:
        folder = runs / f"survival-copier{row['copier_seed']}-drills-seed{row['pretrain_seed']}"
        record = json.loads((folder / "run.json").read_text())
        assert record["init"] == str(runs / ("copier" if row["copier_seed"] == 0 else "copier-seed1"))
        assert record["profile"]["pretrain"]["seed"] == row["pretrain_seed"]
        assert record["profile"]["data"]["copy_share"] == 0.25 and record["profile"]["pretrain"]["max_steps"] == 6
        assert [p["step"] for p in row["curve"]] == [0, 3, 6]
    # the seeds matter: two copiers, and two orders of the same data from one copier
    assert rows[0]["curve"][0] == rows[1]["curve"][0] != rows[2]["curve"][0]
    assert rows[0]["curve"][-1]["copying"] != rows[1]["curve"][-1]["copying"]
    # step 0 is the copier itself, on the study's held-out stories
    profile = get_profile("lesson", TINY_STORIES)
    facts = corpus("validation", 60, seed=profile.data.corpus_seed)
    expected = copying_probe(load_model(runs / "copier-seed1"), profile_tokenizer(profile), facts, 128)
    assert rows[2]["curve"][0]["copying"]["repeated_random"] == pytest.approx(expected["repeated_random"], rel=1e-5)
    kept = [survival.survived(r["curve"]) for r in rows]
    assert written["summary"]["drills"]["survived"]["successes"] == sum(kept)
    assert printed.splitlines()[-1] == (f"runs that kept copying: drills {sum(kept)} of 4; "
                                        f"table {figs / 'study_copier_survival.json'}")
    markdown = (figs / "study_copier_survival.md").read_text().splitlines()
    assert markdown[4] == f"| drills | {sum(kept)} of 4 ({written['summary']['drills']['survived']['low']:.0%}-" \
                          f"{written['summary']['drills']['survived']['high']:.0%}) |"
    assert markdown[8].startswith("| drills | 0 (") and markdown[-3].startswith("| drills | 1 (")
    assert (figs / "study_copier_survival.png").stat().st_size
    # wrong flags are refused by name
    assert main(["study", "--copier-seed", "1"]) == 2
    assert capsys.readouterr().err == "error: study: --copier-seed chooses copiers of --survival\n"
    assert main(["study", "--survival", "--copier-seed", "7"]) == 2
    assert capsys.readouterr().err == ("error: study --copier-seed 7: not a copier seed of helpers.survival.SURVIVAL; "
                                       "choose among [0, 1]\n")
    assert main(["study", "--survival", "--copier"]) == 2
    assert capsys.readouterr().err == ("error: study: choose one of --arms, --repeats, --copier, --survival, "
                                       "--lengths and --finetunings\n")


def test_a_probed_curve_is_kept_beside_its_run_and_probed_again_for_another_number_of_stories(pretrained_run,
                                                                                               tmp_path):
    import shutil

    run = tmp_path / "survival-copier0-drills-seed42"
    shutil.copytree(pretrained_run, run)
    calls = []

    def probe(model):
        calls.append(model)
        return {"probed": len(calls)}

    first = survival._cached_curve(run, pretrained_run, probe, stories=60)
    assert [p["step"] for p in first] == [0, 10, 20, 30] and len(calls) == 4
    assert json.loads((tmp_path / "survival-copier0-drills-seed42_copying.json").read_text()) == {
        "stories": 60, "curve": first}
    assert survival._cached_curve(run, pretrained_run, probe, stories=60) == first and len(calls) == 4
    again = survival._cached_curve(run, pretrained_run, probe, stories=8)
    assert len(calls) == 8 and [p["copying"]["probed"] for p in again] == [5, 6, 7, 8]
