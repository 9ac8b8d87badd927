"""helpers.plots: every figure shows exactly the numbers it is given, labelled, and saves as a PNG."""

from __future__ import annotations

import json

import matplotlib.colors as mcolors
import numpy as np
import pytest

from helpers import evaluation_plots, plots
from helpers.runs import read_metrics
from helpers.stats import wilson_interval


def _is_png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_metric_figure_draws_the_logged_values(pretrained_run, tmp_path):
    records = read_metrics(pretrained_run)
    path = tmp_path / "deep" / "loss.png"
    fig = plots.metric_figure({"tiny run": pretrained_run}, "train_loss", title="Training loss", path=path)
    (line,) = fig.axes[0].lines
    assert list(line.get_xdata()) == [r["step"] for r in records]
    assert list(line.get_ydata()) == [r["train_loss"] for r in records]
    assert fig.axes[0].get_xlabel() == "optimizer step"
    assert fig.axes[0].get_ylabel() == "training loss (nats per token)"
    assert fig.axes[0].get_title() == "Training loss"
    assert _is_png(path)
    beside = json.loads(path.with_suffix(".json").read_text())  # the numbers behind the figure
    assert beside["figure"] == "loss.png" and beside["metric"] == "train_loss"
    series = beside["series"]["tiny run"]
    assert series["step"] == [r["step"] for r in records]
    assert series["train_loss"] == pytest.approx([r["train_loss"] for r in records], rel=1e-6)
    assert series["run"]["tokens"] == records[-1]["tokens"]

    evals = [r for r in records if r.get("eval_loss") is not None]
    fig = plots.metric_figure({"a": pretrained_run, "b": evals}, "eval_loss", title="t", x="tokens")
    assert [list(line.get_xdata()) for line in fig.axes[0].lines] == [[r["tokens"] for r in evals]] * 2
    assert fig.axes[0].get_xlabel() == "training tokens seen"
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["a", "b"]


def test_metric_figure_numbers_say_how_far_a_run_went_not_how_long_it_took(tmp_path):
    """The JSON beside a figure is committed: a rerun with the same numbers must write the same bytes."""
    records = [{"step": s, "tokens": 100 * s, "train_loss": 5.0 / s, "elapsed_s": 0.37 * s} for s in (1, 2, 3)]
    path = tmp_path / "loss.png"
    plots.metric_figure({"run": records}, "train_loss", title="t", path=path)
    beside = json.loads(path.with_suffix(".json").read_text())
    assert beside["series"]["run"]["run"] == {"step": 3, "tokens": 300}
    assert "elapsed" not in path.with_suffix(".json").read_text()


def test_metric_figure_refuses_a_metric_no_run_has(pretrained_run):
    with pytest.raises(ValueError, match="no run has any 'bleu' values to plot"):
        plots.metric_figure({"run": pretrained_run}, "bleu", title="t")


def _share(k: int, n: int) -> dict:
    low, high = wilson_interval(k, n)
    return {"share": k / n, "low": low, "high": high, "successes": k, "n": n}


def _ys(ax) -> list[list[float]]:
    return [[float(y) for y in line.get_ydata()] for line in ax.lines]


def _order_row(step: int, k: int) -> dict:
    """A learning-order row whose every share is k of 10 (k + 1 for the lenient ones) and whose savings are k nats."""
    cloze = {"who": _share(k, 10), "where": _share(k, 10), "all": {**_share(2 * k, 20), "chance": 0.2}}
    return {"step": step, "tokens": step * 10,
            "grammar": {"whole": _share(k, 10), "sentences": _share(k, 10), "words": _share(k + 1, 10)},
            "consistency": {"strict": _share(k, 10), "hero_again": _share(k + 1, 10),
                            "first_name_is_hero": _share(k + 1, 10), "first_pronoun_fits": _share(k + 1, 10)},
            "cloze": {name: cloze for name in ("story", "absent", "story without story", "absent without story")},
            "copying": {"repeated_random": {"gain": k}, "name_mentions": {"first": 5.0, "later": 5.0 - k},
                        "far_context": {"value": k / 10}}}


def test_learning_order_figure_draws_each_probe_its_interval_and_its_lines(tmp_path):
    rows = [_order_row(10, 1), _order_row(20, 5)]
    own, other = "the stories' own continuations", "another story's continuation"
    refs = {"grammar": {own: {"sentences": _share(10, 10)}},
            "consistency": {own: {"strict": _share(9, 10)}, other: {"strict": _share(0, 10)}},
            "cloze": {"chance": {}, "word frequency": {}},
            "copying": {"repeated_random": {"gain": 7.5}}}
    order = {"rows": rows, "references": refs, "prompts": 50}
    fig = evaluation_plots.learning_order_figure(order, title="order", path=tmp_path / "order.png")
    grammar, consistency, facts, copying = fig.axes
    assert [list(line.get_xdata()) for line in grammar.lines][0] == [100, 200]
    assert _ys(grammar) == [[0.1, 0.5], [0.1, 0.5], [0.2, 0.6], [1.0, 1.0]]
    assert _ys(consistency) == [[0.1, 0.5], [0.2, 0.6], [0.2, 0.6], [0.2, 0.6], [0.9, 0.9], [0.0, 0.0]]
    assert _ys(facts) == [[0.1, 0.5]] * 2 + [[0.1, 0.5]] * 3 + [[0.2, 0.2]]
    assert _ys(copying) == [[1.0, 5.0], [1.0, 5.0], [0.1, 0.5], [0.0, 0.0]]
    assert copying.get_title() == "copying (the copying rule saves 7.5 nats on the repeat)"
    band = grammar.collections[0].get_paths()[0].vertices[:, 1]  # the shaded 95% interval of grammar
    assert min(band) == pytest.approx(rows[0]["grammar"]["sentences"]["low"])
    assert max(band) == pytest.approx(rows[1]["grammar"]["sentences"]["high"])
    assert [t.get_text() for t in facts.get_legend().get_texts()][-1] == "chance (1 / candidates, 0.20)"
    written = json.loads((tmp_path / "order.json").read_text())
    assert written["figure"] == "order.png" and written["rows"][1]["grammar"]["sentences"]["share"] == 0.5
    assert written["references"]["copying"] == refs["copying"] and written["prompts"] == 50
    assert written["references"]["consistency"][own]["strict"]["low"] == pytest.approx(refs["consistency"][own]["strict"]["low"], abs=1e-6)
    assert _is_png(tmp_path / "order.png")
    with pytest.raises(ValueError, match="no learning-order measurements"):
        evaluation_plots.learning_order_figure({"rows": [], "references": refs}, title="t")


def test_answer_curve_figure_draws_each_kind_against_its_baseline(tmp_path):
    def row(step, who, yes_no):
        shares = {"who": _share(who, 10), "yes_no": _share(yes_no, 10), "all": _share(who + yes_no, 20)}
        shares["all"]["right_form"] = step / 100
        return {"step": step, "tokens": step * 8, **shares}

    curve = {"rows": [row(0, 0, 0), row(50, 2, 6)], "questions": 20, "stories": 4,
             "baselines": {"who": {"answer": "mom", "share": 0.1, "n": 10},
                           "yes_no": {"answer": "no", "share": 0.5, "n": 10}}}
    fig = evaluation_plots.answer_curve_figure(curve, title="answers", path=tmp_path / "answers.png")
    ax = fig.axes[0]
    assert [list(line.get_xdata()) for line in ax.lines][0] == [0, 50]
    assert _ys(ax)[:6] == [[0.0, 0.2], [0.1, 0.1], [0.0, 0.6], [0.5, 0.5], [0.0, 0.4], [0.0, 0.5]]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "who", "yes/no", "all questions", "answers of the right form", "dotted: most common training answer"]
    written = json.loads((tmp_path / "answers.json").read_text())
    assert written["baselines"] == curve["baselines"] and written["rows"][1]["who"]["successes"] == 2
    with pytest.raises(ValueError, match="no answers to plot"):
        evaluation_plots.answer_curve_figure({"rows": [], "baselines": {}}, title="t")


def test_repetition_figure_bars_colours_and_labels(tmp_path):
    rows = [{"model": "pretrained, greedy", "label": "A", "repeated_4gram_share": 0.25, "distinct_2": 0.75},
            {"model": "pretrained, sampled", "label": "B", "repeated_4gram_share": 0.0, "distinct_2": 0.95},
            {"model": "the stories themselves", "label": "C", "repeated_4gram_share": 0.5, "distinct_2": 0.5},
            {"model": "gpt2, greedy", "label": "D", "repeated_4gram_share": None, "distinct_2": 0.2}]
    colors = ["tab:red", "tab:green", "tab:gray", "tab:purple"]
    fig = evaluation_plots.repetition_figure(rows, title="Repetition", colors=colors, label="label",
                                             path=tmp_path / "rep.png")
    left, right = fig.axes
    assert [bar.get_width() for bar in left.patches][:3] == [0.25, 0.0, 0.5]
    assert np.isnan(left.patches[3].get_width())
    assert [bar.get_width() for bar in right.patches] == [0.75, 0.95, 0.5, 0.2]
    assert [mcolors.to_hex(bar.get_facecolor()) for bar in right.patches] == [mcolors.to_hex(c) for c in colors]
    assert [t.get_text() for t in left.get_yticklabels()] == ["A", "B", "C", "D"]
    assert left.get_xlabel() == "repeated 4-grams (share)" and right.get_xlabel() == "distinct-2"
    assert _is_png(tmp_path / "rep.png")
    assert json.loads((tmp_path / "rep.json").read_text())["rows"][3] == {
        "label": "D", "repeated_4gram_share": None, "distinct_2": 0.2}
    one = evaluation_plots.repetition_figure(rows, title="t", colors=colors, columns=[("distinct_2", "distinct-2")])
    assert len(one.axes) == 1 and [t.get_text() for t in one.axes[0].get_yticklabels()][0] == "pretrained, greedy"
    with pytest.raises(ValueError, match="no repetition rows"):
        evaluation_plots.repetition_figure([], title="t", colors=[])
    with pytest.raises(ValueError, match="4 rows but 3 colours"):
        evaluation_plots.repetition_figure(rows, title="t", colors=colors[:3])


def test_token_length_figure_names_each_tokenizer_with_its_mean():
    fig = plots.token_length_figure({"bpe": [10, 20, 30], "chars": [100, 140]}, title="lengths")
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["bpe (mean 20)", "chars (mean 120)"]
    assert fig.axes[0].get_xlabel() == "tokens per story"


def test_attention_figure_one_panel_per_head():
    weights = np.tril(np.random.default_rng(0).random((6, 4, 4)) + 0.1)
    weights /= weights.sum(-1, keepdims=True)
    fig = plots.attention_figure(weights, ["a", "b", "\n", "d"], title="heads", columns=4)
    shown = [ax for ax in fig.axes if ax.get_title().startswith("head")]
    for head, ax in enumerate(shown):  # row = query, column = key: each panel is its head, not transposed
        drawn = np.asarray(ax.collections[0].get_array()).reshape(4, 4)
        assert np.array_equal(drawn, weights[head]), head
    assert [ax.get_title() for ax in shown] == [f"head {h}" for h in range(6)]
    assert [t.get_text() for t in shown[0].get_xticklabels()] == ["a", "b", "\\n", "d"]
    assert sum(not ax.axison for ax in fig.axes) == 2  # the two unused panels of the 2 x 4 grid


def test_position_figure_draws_similarities_and_lengths(tmp_path):
    table = np.random.default_rng(1).normal(size=(20, 4))
    fig = plots.position_figure(table, block_size=8, title="positions", path=tmp_path / "pos.png")
    left, right, _ = fig.axes  # the last axes is the colour bar
    unit = table[:8] / np.linalg.norm(table[:8], axis=1, keepdims=True)
    assert np.allclose(left.images[0].get_array(), unit @ unit.T)
    assert np.allclose(right.lines[0].get_ydata(), np.linalg.norm(table, axis=1))
    beside = json.loads((tmp_path / "pos.json").read_text())
    assert beside["mean_length_trained"] == pytest.approx(np.linalg.norm(table[:8], axis=1).mean(), rel=1e-5)
    assert beside["mean_length_untrained"] == pytest.approx(np.linalg.norm(table[8:], axis=1).mean(), rel=1e-5)


def test_decoding_figure_one_panel_per_setting(tmp_path):
    tokens = ["the", "a", "Lily"]
    distributions = {"greedy": [1.0, 0.0, 0.0], "temperature 1": [0.5, 0.3, 0.2], "top-k 2": [0.625, 0.375, 0.0]}
    left = {"greedy": 1, "temperature 1": 2048, "top-k 2": 2}  # over the whole vocabulary, not only the bars
    fig = plots.decoding_figure(distributions, tokens, title="next token", tokens_left=left, path=tmp_path / "dec.png")
    assert [ax.get_title() for ax in fig.axes] == ["greedy\n1 token can be drawn",
                                                  "temperature 1\n2,048 tokens can be drawn",
                                                  "top-k 2\n2 tokens can be drawn"]
    for ax, probs in zip(fig.axes, distributions.values()):
        assert [bar.get_height() for bar in ax.patches] == probs
        assert [t.get_text() for t in ax.get_xticklabels()] == tokens
    saved = json.loads((tmp_path / "dec.json").read_text())
    assert saved["distributions"] == distributions and saved["tokens_left"] == left
