"""Every figure of the course, drawn one way: labelled axes, units, readable on a projector.

Training figures read nothing but a run's ``metrics.jsonl`` (through
:func:`helpers.runs.read_metrics`), so the report's curves are exactly what
the engine logged. Each function returns the matplotlib ``Figure`` and, when
given ``path``, also writes it as a PNG.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from .runs import read_metrics

if matplotlib.get_backend().lower() not in {"module://matplotlib_inline.backend_inline", "inline"}:
    matplotlib.use("Agg")  # files only, outside a notebook: no window, no display needed
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

__all__ = [
    "METRIC_LABELS",
    "save",
    "close",
    "metric_figure",
    "token_length_figure",
    "attention_figure",
    "learning_order_figure",
    "repetition_figure",
]

METRIC_LABELS = {
    "learning_rate": "learning rate",
    "train_loss": "training loss (nats per token)",
    "eval_loss": "validation loss (nats per token)",
    "perplexity": "validation perplexity (exp of loss)",
    "tokens_per_sec": "throughput (tokens / s)",
    "grad_norm": "gradient norm (before clipping)",
}

RC = {
    "figure.figsize": (7.5, 4.5),
    "font.size": 13,
    "axes.titlesize": 15,
    "axes.labelsize": 13,
    "legend.fontsize": 11,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def _pyplot():
    """pyplot with the course's style applied (a notebook may have changed rcParams since)."""
    plt.rcParams.update(RC)
    return plt


def close(fig: Figure) -> None:
    """Free a figure that was only written to a file, never shown."""
    plt.close(fig)


def save(fig: Figure, path: str | Path | None) -> Figure:
    """Write ``fig`` as a 150-dpi PNG (folders created) when ``path`` is given."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return fig


def metric_figure(
    runs: Mapping[str, str | Path | Sequence[dict]],
    metric: str,
    *,
    title: str,
    x: str = "step",
    path: str | Path | None = None,
    logy: bool = False,
) -> Figure:
    """One metric of one or more runs against optimizer steps (or ``x="tokens"``).

    ``runs`` maps a legend label to a run folder or to already-read records.
    """
    plt = _pyplot()
    fig, ax = plt.subplots()
    drawn = 0
    for label, source in runs.items():
        records = read_metrics(source) if isinstance(source, (str, Path)) else list(source)
        points = [(r[x], r[metric]) for r in records if r.get(metric) is not None]
        if not points:
            continue
        xs, ys = zip(*points)
        style = {"marker": "o", "markersize": 4} if len(points) < 30 else {}
        ax.plot(xs, ys, label=label, linewidth=2, **style)
        drawn += 1
    if not drawn:
        plt.close(fig)
        raise ValueError(f"no run has any {metric!r} values to plot")
    ax.set_xlabel("optimizer step" if x == "step" else "training tokens seen")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.set_title(title)
    if logy:
        ax.set_yscale("log")
    if metric == "learning_rate":
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    if drawn > 1:
        ax.legend()
    return save(fig, path)


def token_length_figure(lengths: Mapping[str, Iterable[int]], *, title: str,
                        path: str | Path | None = None) -> Figure:
    """Histogram of token counts per text, one outline per tokenizer."""
    plt = _pyplot()
    fig, ax = plt.subplots()
    data = {name: list(values) for name, values in lengths.items()}
    top = max(max(v) for v in data.values())
    bins = range(0, top + 10, max(1, math.ceil(top / 40)))
    for name, values in data.items():
        ax.hist(values, bins=bins, histtype="step", linewidth=2, label=f"{name} (mean {sum(values) / len(values):.0f})")
    ax.set_xlabel("tokens per story")
    ax.set_ylabel("number of stories")
    ax.set_title(title)
    ax.legend()
    return save(fig, path)


def attention_figure(weights, tokens: Sequence[str], *, title: str, path: str | Path | None = None,
                     columns: int = 4) -> Figure:
    """Heatmaps of attention weights, one panel per head: row = query token, column = key token.

    ``weights`` is a (heads, T, T) array or tensor of softmax probabilities.
    """
    import seaborn as sns  # optional: only this figure draws heatmaps with it

    plt = _pyplot()
    weights = np.asarray(weights.detach().cpu() if hasattr(weights, "detach") else weights)
    heads = weights.shape[0]
    rows = math.ceil(heads / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.4 * rows), squeeze=False)
    labels = [t.replace("\n", "\\n") for t in tokens]
    for head in range(rows * columns):
        ax = axes[head // columns][head % columns]
        if head >= heads:
            ax.axis("off")
            continue
        sns.heatmap(weights[head], ax=ax, vmin=0, vmax=1, cmap="viridis", cbar=head % columns == columns - 1,
                    xticklabels=labels, yticklabels=labels if head % columns == 0 else False, square=True)
        ax.set_title(f"head {head}")
        ax.tick_params(labelsize=8)
        ax.grid(False)  # grid lines would cut through the cells
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)


def learning_order_figure(rows: Sequence[Mapping[str, float]], *, title: str,
                          path: str | Path | None = None) -> Figure:
    """Grammar, consistency and answers (shares, 0-1) against training tokens.

    ``rows`` hold ``tokens`` and any of ``grammar``, ``consistency``,
    ``answer_template``, ``answers``; a measure missing from every row is
    left out. Rows with ``stage="finetune"`` (as from
    :func:`helpers.learning_order.learning_order`) get a dashed line where
    finetuning starts.
    """
    plt = _pyplot()
    fig, ax = plt.subplots()
    names = {"grammar": "grammatical sentences", "consistency": "continuations keeping the prompt's characters",
             "answer_template": "answers of the right form", "answers": "story questions answered exactly"}
    drawn = 0
    for key, label in names.items():
        points = [(r["tokens"], r[key]) for r in rows if r.get(key) is not None]
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", linewidth=2, label=label)
            drawn += 1
    if not drawn:
        plt.close(fig)
        raise ValueError("no learning-order measurements to plot")
    start = min((r["tokens"] for r in rows if r.get("stage") == "finetune"), default=None)
    if start is not None:
        ax.axvline(start, color="gray", linestyle="--", linewidth=1)
        ax.text(start, 0.25, "finetuning ", color="gray", ha="right", va="center", rotation=90)
    ax.set_xlabel("training tokens seen")
    ax.set_ylabel("share (0 to 1)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.legend(loc="best")
    return save(fig, path)


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
    plt = _pyplot()
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
    return save(fig, path)
