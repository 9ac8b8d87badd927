"""Does copying survive pretraining on stories? Each recipe run several times, and the survivors counted.

In the copier study (:func:`helpers.study.run_copier_then_stories`) one run
of "copy drills in the data" kept a copier's skill alive through the lesson's
pretraining on stories; a copier retrained the same way on another machine
lost it within 200 steps, drills and all (``figures/copier-replication``).
One run cannot tell a recipe from luck. :func:`run_survival` repeats each
recipe of :data:`SURVIVAL` from several copiers (trained alike but for their
seed) and with several pretraining seeds (the order in which stories and
drills arrive), probes every saved model with :func:`helpers.copying.copying_probe`,
and counts the runs in which copying survived: a random repeat still saves at
least :data:`KEPT` nats beyond its control at the last model. The count
comes with its 95% interval: with a handful of runs it is wide, and says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from .config import get_profile
from .copying import CopyingOracle, held_out_probe, saved_beyond_control
from .evaluation_plots import survival_figure
from .model import build_model, load_model
from .plots import close
from .runs import write_bytes, write_json
from .stats import share
from .study import ensure_copier, probed_curve
from .tokenizer import profile_tokenizer
from .train import ensure_run

__all__ = ["SURVIVAL", "KEPT", "survived", "survival_summary", "run_survival"]

# Each recipe on top of the lesson profile, from each copier seed and with each pretraining seed. The lesson's
# peak rate with drills (the arm that kept copying once and lost it once), and the same with a warm-up six times
# longer: the collapse came in the first 100-200 steps, while the rate was at its peak. Then the two ways out
# that reading suggests: a third of the peak rate with the same drills, and twice the drills at the lesson's rate.
SURVIVAL: dict[str, Any] = {
    "copier_seeds": (0, 1),
    "pretrain_seeds": (42, 43),
    "recipes": {
        "copy drills 25%": {"folder": "drills", "pretrain": {"data.copy_share": 0.25}},
        "copy drills 25%, warm-up 300 steps": {"folder": "drills-warm300",
                                               "pretrain": {"data.copy_share": 0.25, "pretrain.warmup_steps": 300}},
        "copy drills 25%, peak rate 1e-3": {"folder": "drills-lr1e-3",
                                            "pretrain": {"data.copy_share": 0.25, "pretrain.learning_rate": 1e-3}},
        "copy drills 50%": {"folder": "drills50", "pretrain": {"data.copy_share": 0.5}},
    },
}

# Copying counts as kept when a random repeat still saves this many nats beyond its control at the last model.
# The copying rule saves about 7.6 on the lesson's tokens and an untrained model 0; every run that lost the skill
# in the copier study ended below 0.25, every one that kept it above 5.
KEPT = 1.0


def survived(curve: Sequence[Mapping[str, Any]], kept: float = KEPT) -> bool:
    """Whether the last model of a probed curve still copies: a random repeat saves ``kept`` nats or more."""
    return saved_beyond_control(curve[-1]["copying"]["repeated_random"]) >= kept


def survival_summary(rows: Sequence[Mapping[str, Any]], kept: float = KEPT) -> dict[str, dict[str, Any]]:
    """Per recipe: the runs in which copying survived (a share with its 95% interval), and what a random repeat
    saved beyond its control at the last model, run by run."""
    runs: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        runs.setdefault(row["recipe"], []).append(row)
    return {recipe: {"survived": share(sum(survived(r["curve"], kept) for r in group), len(group)),
                     "saved_at_end": [saved_beyond_control(r["curve"][-1]["copying"]["repeated_random"])
                                      for r in group]}
            for recipe, group in runs.items()}


def run_survival(out_dir: str | Path, figures_dir: str | Path, *, plan: Mapping[str, Any] | None = None,
                 copier: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None,
                 stories: int = 60, progress: bool = True) -> dict[str, Any]:
    """Every recipe of ``plan`` (:data:`SURVIVAL`) from every copier seed with every pretraining seed, probed.

    Copiers are :func:`helpers.study.ensure_copier`'s (``copier``: lengths and
    steps, :data:`helpers.study.COPIER` by default), so the copier study's
    seed-0 copier is reused. Each run pretrains the lesson profile with
    ``overrides``, the recipe's settings and its seed, into
    ``out_dir / "survival-copier{c}-{folder}-seed{p}"``; finished runs and their
    probed curves (a JSON file beside the folder) are reused, so the plan can be
    split across processes by its seeds and assembled by a last call. Written
    to ``study_copier_survival.png``, ``.json`` and ``.md`` in ``figures_dir``.
    """
    plan, out = SURVIVAL if plan is None else plan, Path(out_dir)
    if not (plan["copier_seeds"] and plan["pretrain_seeds"] and plan["recipes"]):
        raise ValueError("run_survival needs at least one copier seed, one pretraining seed and one recipe")
    profile = get_profile("lesson", overrides)
    tokenizer, probe = profile_tokenizer(profile), held_out_probe(profile, stories)
    rows, copiers = [], {}
    for copier_seed in plan["copier_seeds"]:
        start, trained = ensure_copier(out, copier, seed=copier_seed, progress=progress)
        copiers[str(copier_seed)] = trained[-1]
        for recipe, settings in plan["recipes"].items():
            for seed in plan["pretrain_seeds"]:
                folder = out / f"survival-copier{copier_seed}-{settings['folder']}-seed{seed}"
                run_profile = get_profile("lesson", {**(overrides or {}), **settings["pretrain"],
                                                     "pretrain.seed": seed})
                ensure_run("pretrain", run_profile, folder, init=start, progress=progress)
                curve = _cached_curve(folder, start, probe, stories)
                rows.append({"recipe": recipe, "copier_seed": copier_seed, "pretrain_seed": seed,
                             "pretraining": dict(settings["pretrain"]), "curve": curve})
    table = {"what": "pretraining on stories from copiers trained on random repeats, each recipe from several copier "
                     "seeds and pretraining seeds; the copying probe (helpers.copying) at every saved model",
             "kept": KEPT, "copiers": copiers, "settings": dict(overrides or {}), "stories": stories,
             "summary": survival_summary(rows), "rows": rows,
             "lines": {"the copying rule": probe(CopyingOracle(len(tokenizer))),
                       "untrained": probe(build_model(profile.model, seed=profile.pretrain.seed))}}
    stem = Path(figures_dir) / "study_copier_survival"
    close(survival_figure(table, title="Does copying survive pretraining on stories? Every run of each recipe",
                          path=stem.with_suffix(".png")))
    write_bytes(stem.with_suffix(".md"), _survival_markdown(table).encode())
    return {**table, "path": str(stem.with_suffix(".json"))}


def _cached_curve(folder: Path, start: Path, probe, stories: int) -> list[dict[str, Any]]:
    """The run's probed curve (:func:`helpers.study.probed_curve`, step 0 the copier), kept beside its folder with
    the number of stories it was probed on, and probed again when asked for another number."""
    cached = folder.with_name(folder.name + "_copying.json")
    if not cached.exists() or json.loads(cached.read_text())["stories"] != stories:
        write_json(cached, {"stories": stories, "curve": probed_curve(folder, load_model(start), probe)})
    return json.loads(cached.read_text())["curve"]


def _survival_markdown(table: Mapping[str, Any]) -> str:
    """Per recipe the survivors with their interval, then every run: copier and seed, what a random repeat saves
    beyond its control at each probed model, and the validation loss at the last."""
    unit = "nat" if table["kept"] == 1 else "nats"
    out = [f"Copying counts as kept when a random repeat saves at least {table['kept']:g} {unit} beyond its control "
           "at the last model.", "", "| recipe | runs that kept copying (95% interval) |", "|---|---|"]
    for recipe, entry in table["summary"].items():
        s = entry["survived"]
        out.append(f"| {recipe} | {s['successes']} of {s['n']} ({s['low']:.0%}-{s['high']:.0%}) |")
    steps = [p["step"] for p in table["rows"][0]["curve"]]
    out += ["", "| recipe | copier seed (saves at its end) | pretraining seed | " + " | ".join(
        f"step {s}" for s in steps) + " | validation loss at the end |", "|" + "---|" * (4 + len(steps))]
    for row in table["rows"]:
        copier = saved_beyond_control(row["curve"][0]["copying"]["repeated_random"])
        saved = [f"{saved_beyond_control(p['copying']['repeated_random']):+.2f}" for p in row["curve"]]
        loss = row["curve"][-1].get("eval_loss")
        out.append(f"| {row['recipe']} | {row['copier_seed']} ({copier:+.2f}) | {row['pretrain_seed']} | "
                   + " | ".join(saved) + f" | {'–' if loss is None else f'{loss:.3f}'} |")
    rule, untrained = (saved_beyond_control(table["lines"][name]["repeated_random"])
                       for name in ("the copying rule", "untrained"))
    out += ["", f"On the same repeats the copying rule (helpers.copying.CopyingOracle) saves {rule:+.2f} nats beyond "
                f"the control, an untrained model {untrained:+.2f}."]
    return "\n".join(out) + "\n"
