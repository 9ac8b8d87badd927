"""Every figure of the course, drawn one way: labelled axes, units, readable on a projector.

Training figures read nothing but a run's ``metrics.jsonl`` (through
:func:`helpers.runs.read_metrics`), so the report's curves are exactly what
the engine logged. Each function returns the matplotlib ``Figure`` and, when
given ``path``, also writes it as a PNG and, beside it, the numbers it drew
as JSON (``name.png`` and ``name.json``): the README and the lessons quote
numbers from those files, never from memory.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

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
    "as_stored",
    "metric_figure",
    "token_length_figure",
    "attention_figure",
    "position_figure",
    "decoding_figure",
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


def styled_pyplot():
    """pyplot with the course's style applied (a notebook may have changed rcParams since)."""
    plt.rcParams.update(RC)
    return plt


def close(fig: Figure) -> None:
    """Free a figure that was only written to a file, never shown."""
    plt.close(fig)


def save(fig: Figure, path: str | Path | None, data: Mapping[str, Any] | None = None) -> Figure:
    """Write ``fig`` as a 150-dpi PNG (folders created) when ``path`` is given, and ``data`` beside it as JSON.

    ``data`` is what the figure shows, in numbers (floats rounded to 6
    significant digits); it goes to the same name with ``.json``.
    """
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150, bbox_inches="tight")
        if data is not None:
            text = json.dumps(as_stored({"figure": path.name, **data}), indent=1, ensure_ascii=False)
            path.with_suffix(".json").write_text(text + "\n", encoding="utf-8")
    return fig


def as_stored(value: Any) -> Any:
    """A value as the figures' JSON stores it: floats to 6 significant digits, all the way down (NaN becomes null)."""
    if isinstance(value, float):
        return None if math.isnan(value) else float(f"{value:.6g}")
    if isinstance(value, Mapping):
        return {str(k): as_stored(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_stored(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return as_stored(value.tolist())
    return value


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
    plt = styled_pyplot()
    fig, ax = plt.subplots()
    drawn, series = 0, {}
    for label, source in runs.items():
        records = read_metrics(source) if isinstance(source, (str, Path)) else list(source)
        points = [(r[x], r[metric]) for r in records if r.get(metric) is not None]
        if not points:
            continue
        xs, ys = zip(*points)
        style = {"marker": "o", "markersize": 4} if len(points) < 30 else {}
        ax.plot(xs, ys, label=label, linewidth=2, **style)
        drawn += 1
        last = records[-1]
        # How far the run went, never how long it took: the JSON is committed, and must not change with the clock.
        series[label] = {x: list(xs), metric: list(ys), "run": {k: last.get(k) for k in ("step", "tokens")}}
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
    return save(fig, path, {"title": title, "metric": metric, "x": x, "series": series})


def token_length_figure(lengths: Mapping[str, Iterable[int]], *, title: str,
                        path: str | Path | None = None) -> Figure:
    """Histogram of token counts per text, one outline per tokenizer."""
    plt = styled_pyplot()
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
    summary = {name: {"texts": len(v), "mean": sum(v) / len(v), "min": min(v), "max": max(v), "lengths": v}
               for name, v in data.items()}
    return save(fig, path, {"title": title, "tokenizers": summary})


def attention_figure(weights, tokens: Sequence[str], *, title: str, path: str | Path | None = None,
                     columns: int = 4) -> Figure:
    """Heatmaps of attention weights, one panel per head: row = query token, column = key token.

    ``weights`` is a (heads, T, T) array or tensor of softmax probabilities.
    """
    import seaborn as sns  # optional: only this figure draws heatmaps with it

    plt = styled_pyplot()
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
    return save(fig, path, {"title": title, "tokens": list(tokens), "weights": weights})


def position_figure(positions, *, block_size: int, title: str, path: str | Path | None = None) -> Figure:
    """What a learned position table holds: cosine similarity of the first ``block_size`` rows, and every row's length.

    ``positions`` is the (n_positions, width) table ``wpe``; rows at and
    beyond ``block_size`` never receive a gradient when training blocks are
    ``block_size`` long.
    """
    plt = styled_pyplot()
    table = np.asarray(positions.detach().cpu() if hasattr(positions, "detach") else positions, dtype=np.float64)
    unit = table[:block_size] / np.linalg.norm(table[:block_size], axis=1, keepdims=True)
    similarity, lengths = unit @ unit.T, np.linalg.norm(table, axis=1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    image = left.imshow(similarity, cmap="viridis", vmin=-1, vmax=1)
    left.set_title("cosine similarity of position vectors")
    left.set_xlabel("position")
    left.set_ylabel("position")
    left.grid(False)
    fig.colorbar(image, ax=left, fraction=0.046)
    right.plot(lengths, linewidth=1.5)
    right.axvline(block_size, color="gray", linestyle="--", label=f"block size {block_size}")
    right.set_title("length of each position vector")
    right.set_xlabel("position")
    right.set_ylabel("L2 norm")
    right.legend()
    fig.suptitle(title)
    fig.tight_layout()
    data = {"title": title, "block_size": block_size, "mean_length_trained": float(lengths[:block_size].mean()),
            "mean_length_untrained": float(lengths[block_size:].mean()) if len(lengths) > block_size else None,
            "lengths": lengths, "neighbour_similarity": float(np.diag(similarity, 1).mean())}
    return save(fig, path, data)


def decoding_figure(distributions: Mapping[str, Sequence[float]], tokens: Sequence[str], *, title: str,
                    tokens_left: Mapping[str, int], path: str | Path | None = None) -> Figure:
    """One next-token distribution reshaped several ways (greedy, temperatures, top-k, top-p), as bars.

    ``distributions`` maps a setting's name to the probabilities of
    ``tokens`` (the same tokens, most likely first, in every panel);
    ``tokens_left`` to how many tokens of the whole vocabulary the setting
    can still draw (most of them are not among the bars).
    """
    plt = styled_pyplot()
    n = len(distributions)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 4.2), sharey=True, squeeze=False)
    positions = np.arange(len(tokens))
    for ax, (name, probs) in zip(axes[0], distributions.items()):
        probs = np.asarray(probs, dtype=np.float64)
        ax.bar(positions, probs, color=["tab:blue" if p > 0 else "lightgray" for p in probs])
        left = tokens_left[name]
        ax.set_title(f"{name}\n{left:,} token{'' if left == 1 else 's'} can be drawn")
        ax.set_xticks(positions, [t.replace("\n", "\\n") for t in tokens], rotation=90, fontsize=9)
        ax.set_ylim(0, 1.02)
        ax.grid(axis="x", visible=False)
    axes[0][0].set_ylabel("probability of the next token")
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path, {"title": title, "tokens": list(tokens), "distributions": dict(distributions),
                            "tokens_left": dict(tokens_left)})
