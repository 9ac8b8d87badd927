"""The evaluation's figures: what is learned when, answers along finetuning, repetition.

Each shows a share with its 95% interval as a band, and the line it is read
against (chance, a baseline that needs no model, or the stories' own level),
because a share without its yardstick says little. Like every figure of the
course (:mod:`helpers.plots`), each writes the numbers it draws beside its
PNG.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from matplotlib.figure import Figure

from .copying import saved_beyond_control
from .plots import styled_pyplot, save

__all__ = ["learning_order_figure", "answer_curve_figure", "repetition_figure", "copying_arms_figure",
           "repeat_arms_figure", "copier_stories_figure", "survival_figure", "lengths_figure"]

KIND_COLORS = {"who": "tab:blue", "who/hero": "navy", "who/friend": "tab:cyan", "who/parent": "slateblue",
               "where": "tab:orange", "what": "tab:green", "feeling": "tab:red", "yes_no": "tab:purple", "all": "black"}


def _band(ax, xs, shares: Sequence[Mapping[str, float]], label: str, color: str, width: float = 2) -> None:
    """A share as a line with markers and its 95% interval as a shaded band."""
    ax.plot(xs, [s["share"] for s in shares], marker="o", markersize=4, linewidth=width, color=color, label=label)
    ax.fill_between(xs, [s["low"] for s in shares], [s["high"] for s in shares], color=color, alpha=0.15,
                    linewidth=0)


def _reference(ax, value: float, label: str, style: str = "--", color: str = "gray") -> None:
    ax.axhline(value, color=color, linestyle=style, linewidth=1.2, label=label)


def learning_order_figure(order: Mapping[str, Any], *, title: str, path: str | Path | None = None) -> Figure:
    """Four panels against training tokens: grammar, consistency, story facts, copying.

    ``order`` is :func:`helpers.learning_order.learning_order`'s result. The
    shares are drawn with their 95% intervals: grammar (sentences; whole
    continuations and words only as thin lines), consistency (strict; the
    lenient rules as thin lines), the cloze whose distractors the story never
    names, per kind (its first design and both designs without the story as
    gray lines: the controls). Copying is in nats: what the repeat, the
    hero's later mentions and the story's far context save, against zero
    (no copying) and the copying rule's saving on the repeat.
    """
    rows, refs = order["rows"], order["references"]
    if not rows:
        raise ValueError("no learning-order measurements to plot")
    plt = styled_pyplot()
    fig, (grammar, consistency, facts, copying) = plt.subplots(1, 4, figsize=(22, 5))
    xs = [r["tokens"] for r in rows]
    own = "the stories' own continuations"
    _band(grammar, xs, [r["grammar"]["sentences"] for r in rows], "grammatical sentences", "tab:blue")
    for key, color in (("whole", "tab:cyan"), ("words", "tab:purple")):
        grammar.plot(xs, [r["grammar"][key]["share"] for r in rows], color=color, linewidth=1.2,
                     label={"whole": "continuations all grammatical", "words": "sentences of corpus words"}[key])
    _reference(grammar, refs["grammar"][own]["sentences"]["share"], own, ":")
    _band(consistency, xs, [r["consistency"]["strict"] for r in rows], "strict rule", "tab:blue")
    for key, color in (("hero_again", "tab:green"), ("first_name_is_hero", "tab:orange"),
                       ("first_pronoun_fits", "tab:red")):
        consistency.plot(xs, [r["consistency"][key]["share"] for r in rows], color=color, linewidth=1.2,
                         label=key.replace("_", " "))
    _reference(consistency, refs["consistency"][own]["strict"]["share"], own + " (strict)", ":")
    _reference(consistency, refs["consistency"]["another story's continuation"]["strict"]["share"],
               "another story's continuation (strict)", "--")
    absent = rows[0]["cloze"]["absent"]
    for kind in [k for k in absent if k != "all"]:
        _band(facts, xs, [r["cloze"]["absent"][kind] for r in rows], kind, KIND_COLORS.get(kind, "gray"))
    for name, style in (("story", "-"), ("story without story", "--"), ("absent without story", ":")):
        facts.plot(xs, [r["cloze"][name]["all"]["share"] for r in rows], color="gray", linestyle=style, linewidth=1.2,
                   label={"story": "story's own words as candidates (all)",
                          "story without story": "the same, story removed",
                          "absent without story": "absent words, story removed"}[name])
    chance = absent["all"]["chance"]
    _reference(facts, chance, f"chance (1 / candidates, {chance:.2f})", "-.", "black")
    for key, label, color in (("repeated_random", "random tokens: first minus repeat", "tab:blue"),
                              ("name_mentions", "hero's name: first minus later mentions", "tab:green"),
                              ("far_context", "story text: other minus own far context", "tab:orange")):
        copying.plot(xs, [_saving(r["copying"][key]) for r in rows], marker="o", markersize=4, color=color,
                     label=label)
    _reference(copying, 0.0, "no copying", "-", "black")
    ceiling = _saving(refs["copying"]["repeated_random"])
    copying.set_title(f"copying (the copying rule saves {ceiling:.1f} nats on the repeat)", fontsize=12)
    for ax, name in ((grammar, "grammar"), (consistency, "continuations keeping the story's characters"),
                     (facts, "story facts: answer among absent words")):
        ax.set_title(name, fontsize=12)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("share (95% interval shaded)")
    copying.set_ylabel("nats saved per token (per name)")
    for ax in (grammar, consistency, facts, copying):
        ax.set_xlabel("training tokens seen")
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path, {"title": title, **order})


def _saving(measure: Mapping[str, float]) -> float:
    """What a copying measure says the context saves, in nats."""
    if "gain" in measure:
        return measure["gain"]
    if "later" in measure:
        return measure["first"] - measure["later"]
    return measure["value"]


def answer_curve_figure(curve: Mapping[str, Any], *, title: str, path: str | Path | None = None) -> Figure:
    """Exact answers per kind of question against finetuning steps, each beside its no-model baseline.

    ``curve`` is :func:`helpers.learning_order.answer_curve`'s result. A
    dotted line in a kind's colour is the baseline from the training
    questions; the gray line is the share of answers of the right form.
    """
    rows = curve["rows"]
    if not rows:
        raise ValueError("no answers to plot")
    plt = styled_pyplot()
    fig, ax = plt.subplots(figsize=(9, 5))
    xs = [r["step"] for r in rows]
    kinds = [k for k in rows[0] if k not in {"step", "tokens", "all"}]
    for kind in kinds:
        color = KIND_COLORS.get(kind, "gray")
        _band(ax, xs, [r[kind] for r in rows], kind.replace("_", "/"), color)
        _reference(ax, curve["baselines"][kind]["share"], None, ":", color)
    _band(ax, xs, [r["all"] for r in rows], "all questions", "black", width=3)
    ax.plot(xs, [r["all"]["right_form"] for r in rows], color="gray", linewidth=2, label="answers of the right form")
    ax.plot([], [], color="gray", linestyle=":", label="dotted: most common training answer")
    ax.set_xlabel("finetuning step (0: the pretrained model)")
    ax.set_ylabel("exact answers (95% interval shaded)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return save(fig, path, {"title": title, **curve})


def repetition_figure(rows: Sequence[Mapping[str, object]], *, title: str, colors: Sequence[str],
                      columns: Sequence[tuple[str, str]] = (("repeated_4gram_share", "repeated 4-grams (share)"),
                                                            ("distinct_2", "distinct-2")),
                      label: str = "model", path: str | Path | None = None) -> Figure:
    """Horizontal bars of repetition measures, one panel per ``(column, axis label)`` of ``columns``.

    ``rows`` are :func:`helpers.text_metrics.repetition_table` rows (or any
    rows holding ``label`` and the columns), drawn top to bottom; ``colors``
    gives each row's bar colour. A measure that is ``None`` leaves its bar
    out. Shares lie in 0-1, so every panel spans 0 to 1.1.
    """
    plt = styled_pyplot()
    if not rows:
        raise ValueError("no repetition rows to plot")
    if len(colors) != len(rows):
        raise ValueError(f"{len(rows)} rows but {len(colors)} colours")
    fig, axes = plt.subplots(1, len(columns), figsize=(5.5 * len(columns), 0.45 * len(rows) + 1.6), sharey=True,
                             squeeze=False)
    for ax, (key, axis_label) in zip(axes[0], columns):
        values = [float("nan") if r.get(key) is None else float(r[key]) for r in rows]
        ax.barh(range(len(rows)), values, color=list(colors))
        for y, value in enumerate(values):
            if not math.isnan(value):
                ax.text(value + 0.01, y, f"{value:.2f}", va="center", fontsize=10)
        ax.set_xlim(0, 1.1)
        ax.set_xlabel(axis_label)
        ax.grid(axis="y", visible=False)
    axes[0][0].set_yticks(range(len(rows)), [str(r[label]) for r in rows])
    axes[0][0].invert_yaxis()
    fig.suptitle(title)
    fig.tight_layout()
    shown = [{"label": str(r[label]), **{key: r.get(key) for key, _ in columns}} for r in rows]
    return save(fig, path, {"title": title, "rows": shown})


def copying_arms_figure(table: Mapping[str, Any], *, title: str, path: str | Path | None = None) -> Figure:
    """What each pretraining arm saves by copying, in nats: on a random repeat (beyond its control), on the same
    repeat shifted by fresh tokens (a fixed-distance reader gains nothing there) and on the hero's later
    mentions, with the untrained model and the copying rule as the last bars.

    ``table`` is :func:`helpers.study.run_arms`' result; its numbers go beside the PNG.
    """
    entries = [(r["arm"], r["copying"]) for r in table["rows"]] + list(table["lines"].items())
    if not table["rows"]:
        raise ValueError("no pretraining arms to plot")
    plt = styled_pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(17, 0.5 * len(entries) + 1.8), sharey=True)
    measures = (("random repeat, beyond the control", lambda c: saved_beyond_control(c["repeated_random"])),
                ("the same, shifted by fresh tokens",
                 lambda c: saved_beyond_control(c["repeated_random"], "shifted_gain")),
                ("hero's name: first minus later", lambda c: c["name_mentions"]["first"] - c["name_mentions"]["later"]))
    for ax, (label, value) in zip(axes, measures):
        values = [value(c) for _, c in entries]
        ax.barh(range(len(entries)), values, color=["tab:blue"] * len(table["rows"]) + ["gray"] * len(table["lines"]))
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:+.2f}", va="center", fontsize=9)
        ax.axvline(0, color="black", linewidth=1)
        ax.set_xlabel(f"{label} (nats)")
        ax.grid(axis="y", visible=False)
    axes[0].set_yticks(range(len(entries)), [name for name, _ in entries])
    axes[0].invert_yaxis()
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path, dict(table))


def repeat_arms_figure(table: Mapping[str, Any], *, title: str, path: str | Path | None = None) -> Figure:
    """One panel per arm of :func:`helpers.study.run_repeat_arms`: nats a repeat saves beyond its control, step by
    step, at each probed length (solid) and shifted by fresh tokens (dashed); a copier's dashed lines follow its solid ones."""
    if not table["rows"]:
        raise ValueError("no repeat arms to plot")
    plt = styled_pyplot()
    fig, axes = plt.subplots(1, len(table["rows"]), figsize=(6.5 * len(table["rows"]), 4.5), sharey=True, squeeze=False)
    for ax, row in zip(axes[0], table["rows"]):
        steps = [r["step"] for r in row["curve"]]
        for length, color in zip(row["curve"][0]["saved"], ("tab:blue", "tab:green", "tab:orange", "tab:red")):
            ax.plot(steps, [r["saved"][length] for r in row["curve"]], marker="o", markersize=4, color=color,
                    label=f"repeat of {length} tokens")
            ax.plot(steps, [r["shifted"][length] for r in row["curve"]], linestyle="--", color=color,
                    label=f"repeat of {length}, fresh tokens between")
        ax.axhline(0, color="black", linewidth=1)
        low, high = row["lengths"]
        ax.set_title(f"trained on repeats of {low} tokens" if low == high else
                     f"trained on repeats of {low} to {high} tokens", fontsize=11)
        ax.set_xlabel("training step")
        ax.legend(fontsize=8, loc="best")
    axes[0][0].set_ylabel("nats saved beyond the control")
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path, dict(table))


def copier_stories_figure(table: Mapping[str, Any], *, title: str, path: str | Path | None = None) -> Figure:
    """Pretraining on stories from a copier and from scratch, checkpoint by checkpoint: what a random repeat saves
    beyond its control (solid; shifted by fresh tokens, dashed), what the hero's earlier mention saves, and the
    validation loss on stories, with the copying rule as a line (step 0 of the arm from scratch is the untrained
    model); then, per arm, what a repeat saves after the lesson's finetuning, with its exact answers written beside.
    Arms whose pretraining is the same (they differ in finetuning only) share one curve and one name.

    ``table`` is :func:`helpers.study.run_copier_then_stories`' result; its numbers go beside the PNG.
    """
    if not table["rows"]:
        raise ValueError("no arms to plot")
    plt = styled_pyplot()
    fig = plt.figure(figsize=(18, 10))
    grid = fig.add_gridspec(2, 3, height_ratios=(1, 0.75))
    axes = [fig.add_subplot(grid[0, i]) for i in range(3)] + [fig.add_subplot(grid[1, :])]
    drawn: dict[str, list] = {}  # each pretraining (its start and settings) -> the arms that share it
    for row in table["rows"]:
        drawn.setdefault(repr((row["start"], row["pretraining"])), []).append(row)
    for n, rows in enumerate(drawn.values()):
        steps, color, label = [r["step"] for r in rows[0]["curve"]], f"C{n}", rows[0]["arm"]
        label += f" (and {len(rows) - 1} more with this pretraining, below)" if len(rows) > 1 else ""
        copying = [r["copying"] for r in rows[0]["curve"]]
        repeats = [c["repeated_random"] for c in copying]
        axes[0].plot(steps, [saved_beyond_control(r) for r in repeats], marker="o", markersize=4, color=color,
                     label=label)
        axes[0].plot(steps, [saved_beyond_control(r, "shifted_gain") for r in repeats], linestyle="--", color=color)
        axes[1].plot(steps, [_saving(c["name_mentions"]) for c in copying], marker="o", markersize=4, color=color)
        evaluated = [(r["step"], r["eval_loss"]) for r in rows[0]["curve"] if r.get("eval_loss") is not None]
        axes[2].plot(*zip(*evaluated), marker="o", markersize=4, color=color)
    for name, c in table["lines"].items():
        _reference(axes[0], saved_beyond_control(c["repeated_random"]), name, "-.")
        _reference(axes[1], _saving(c["name_mentions"]), name, "-.")
    tuned = [r for r in table["rows"] if "finetuned" in r]
    saved = [saved_beyond_control(r["finetuned"]["copying"]["repeated_random"]) for r in tuned]
    axes[3].barh(range(len(tuned)), saved, color="tab:blue")
    for y, (row, value) in enumerate(zip(tuned, saved)):
        axes[3].text(max(value, 0), y, f" exact {row['finetuned']['answers']['all']['share']:.0%}", va="center",
                     fontsize=9)
    axes[3].set_yticks(range(len(tuned)), [r["arm"] for r in tuned], fontsize=8)
    axes[3].invert_yaxis()
    labels = ("random repeat: nats saved beyond the control (dashed: fresh tokens between)",
              "hero's name: first minus later mentions (nats)", "validation loss on stories (nats per token)")
    for ax, label in zip(axes, labels):
        ax.set_xlabel("training step on stories")
        ax.set_ylabel(label, fontsize=9)
    axes[3].set_xlabel("after the lesson's finetuning: nats a random repeat saves beyond the control")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="upper center", bbox_to_anchor=(0.5, 0.5), ncol=2, fontsize=9)
    fig.suptitle(title)
    fig.tight_layout(h_pad=9)
    return save(fig, path, dict(table))


def survival_figure(table: Mapping[str, Any], *, title: str, path: str | Path | None = None) -> Figure:
    """One column per recipe of :func:`helpers.survival.run_survival`: every run's random-repeat saving beyond the
    control (top) and validation loss (bottom) along pretraining on stories, a color per copier seed and a line style
    per pretraining seed, with the line a run must reach at its end to count as copying, the copying rule and the
    untrained model."""
    recipes = list(table["summary"])
    if not recipes:
        raise ValueError("no survival runs to plot")
    plt = styled_pyplot()
    fig, axes = plt.subplots(2, len(recipes), figsize=(5.5 * len(recipes), 8), sharex=True, sharey="row",
                             squeeze=False)
    copiers = sorted({r["copier_seed"] for r in table["rows"]})
    seeds = sorted({r["pretrain_seed"] for r in table["rows"]})
    for column, recipe in enumerate(recipes):
        top, bottom = axes[0][column], axes[1][column]
        for row in (r for r in table["rows"] if r["recipe"] == recipe):
            color = f"C{copiers.index(row['copier_seed'])}"
            style = ("-", "--", ":", "-.")[seeds.index(row["pretrain_seed"]) % 4]
            label = f"copier seed {row['copier_seed']}, pretraining seed {row['pretrain_seed']}"
            top.plot([p["step"] for p in row["curve"]],
                     [saved_beyond_control(p["copying"]["repeated_random"]) for p in row["curve"]],
                     color=color, linestyle=style, marker="o", markersize=3, label=label)
            losses = [(p["step"], p["eval_loss"]) for p in row["curve"] if p.get("eval_loss") is not None]
            if losses:
                bottom.plot(*zip(*losses), color=color, linestyle=style, marker="o", markersize=3)
        _reference(top, table["kept"], f"kept: {table['kept']:g} or more at the end", ":", "black")
        for (name, c), style in zip(table["lines"].items(), ("-.", "--", ":")):
            _reference(top, saved_beyond_control(c["repeated_random"]), name, style)
        kept = table["summary"][recipe]["survived"]
        top.set_title(f"{recipe}: kept copying in {kept['successes']} of {kept['n']} runs", fontsize=11)
        bottom.set_xlabel("training step on stories (0: the copier)")
    axes[0][0].legend(fontsize=8, loc="center right")  # the same lines in every column
    axes[0][0].set_ylabel("random repeat: nats saved\nbeyond the control")
    axes[1][0].set_ylabel("validation loss on stories\n(nats per token)")
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path, dict(table))


def lengths_figure(table: Mapping[str, Any], *, title: str, path: str | Path | None = None) -> Figure:
    """Exact answers per kind (who by role), a bar per cell of :func:`helpers.lengths.run_lengths` with its 95%
    interval and a cross where the same questions about the next story land (the control), and per kind the most
    common training answer (a black tick) and a trivial reader (a dashed one)."""
    cells = table["cells"]
    if not cells:
        raise ValueError("no cells to plot")
    kinds = [*cells[0]["baselines"], "all"]
    plt = styled_pyplot()
    fig, ax = plt.subplots(figsize=(12, 5))
    width = 0.8 / len(cells)
    for i, cell in enumerate(cells):
        xs = [k + (i - (len(cells) - 1) / 2) * width for k in range(len(kinds))]
        got = [cell["answers"][kind] for kind in kinds]
        ax.bar(xs, [g["share"] for g in got], width * 0.95, color=f"C{i}",
               yerr=[[max(g["share"] - g["low"], 0) for g in got], [max(g["high"] - g["share"], 0) for g in got]],
               capsize=2,
               label=f"pretrained {cell['pretrain_steps']} steps, finetuned {cell['finetune_steps']}"
               + (f" ({cell['finetuning']})" if "finetuning" in cell else ""))
        ax.scatter(xs, [cell["answers_swapped"][kind]["share"] for kind in kinds], marker="x", color="black", s=14,
                   zorder=3, label="the same, each question about the next story" if i == 0 else None)
    for lines, style, name in ((cells[0]["baselines"], "-", "most common training answer"),
                               (cells[0]["readers"], "--", "trivial reader")):
        for k, kind in enumerate(kinds):
            if kind in lines:
                ax.hlines(lines[kind]["share"], k - 0.45, k + 0.45, color="black", linestyle=style, linewidth=1.5,
                          label=name if k == min(i for i, q in enumerate(kinds) if q in lines) else None)
    ax.set_xticks(range(len(kinds)), [kind.replace("_", "/") for kind in kinds], fontsize=10, rotation=15)
    ax.set_ylabel("exact answers (95% interval)")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return save(fig, path, dict(table))
