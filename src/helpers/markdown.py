"""Markdown, written in one place: table cells, tables, quotes, and the reports built from them.

The evaluation of a run (``eval.md``), the judge's grade table and the
report job (``build/report.md``) all format numbers with :func:`fmt` and lay
out tables with :func:`table`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from .judge import SCORE_NAMES, Grade, summarise

__all__ = ["fmt", "interval", "difference", "table", "quote", "evaluation_markdown", "grades_table"]


def fmt(value: Any, digits: int = 4, decimals: int | None = None) -> str:
    """One table cell: numbers with thousands separators (``digits`` significant, or ``decimals`` fixed).

    ``None`` is a dash, booleans are yes/no, text is escaped for a table.
    """
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if decimals is not None:
            return f"{value:,.{decimals}f}"
        return f"{value:,.{digits}g}" if abs(value) < 10 ** digits else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", "<br>")


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A markdown table of ``rows`` (dicts) with these ``columns``; a missing value is a dash."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(fmt(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def quote(text: str) -> str:
    """Text as a markdown block quote (``(nothing)`` for empty text)."""
    return "\n".join("> " + line for line in (text.strip() or "(nothing)").splitlines())


def evaluation_markdown(report: Mapping[str, Any]) -> str:
    """An evaluation report (:func:`helpers.evaluate.evaluate_run`) as markdown tables and quoted text."""
    stage = report["stage"]
    ppl = report["perplexity"]
    paper_model = "3.6M GPT-2, TinyStories" if stage == "pretrain" else "3.6M GPT-2 after Alpaca tuning"
    out = [f"# Evaluation of `{report['run']}` ({stage})", "",
           f"{report['model']['parameters']:,} parameters, vocabulary {report['model']['vocab_size']:,}; "
           f"profile `{report['settings']['profile']}`, {report['settings']['samples']} samples, "
           f"{report['settings']['max_new_tokens']} new tokens, seed {report['settings']['seed']}.", "",
           "## Perplexity: paper vs this run", "",
           table([{"model": f"paper ({paper_model})", "perplexity": report["paper"]["perplexity"]},
                   {"model": f"this run ({ppl['data']})", "loss (nats/token)": ppl["loss"],
                    "perplexity": ppl["perplexity"], "scored tokens": ppl["tokens"]}],
                  ["model", "loss (nats/token)", "perplexity", "scored tokens"]), ""]
    if report["qa"]:
        qa = report["qa"]
        rows = [{"kind": k, **v} for k, v in qa["by_kind"].items()]
        rows.append({"kind": "**all**", **{k: qa[k] for k in ("share", "successes", "n", "right_form")}})
        out += ["## Story questions (held-out stories)", "",
                "share: exact answers (match after normalising); right_form: answers of the form the question "
                "asks for, right or wrong.", "",
                table(rows, ["kind", "share", "successes", "n", "right_form"]), "",
                table(qa["examples"], ["question", "expected", "got", "correct", "right_form"]), ""]
    if report["instructions"]:
        out += ["## The paper's instructions", ""]
        for item in report["instructions"]:
            out += [f"**{item['name']}** (greedy):", "", quote(item["greedy"]), ""]
            out += ["(sampled):", "", quote(item["sampled"]), ""] if item["sampled"] is not None else \
                ["(not sampled: the decoder samples at position 0 only, and this run reads from data.position_offset)", ""]
    gens = report["generations"]
    out += ["## Stories", "", f"Paper prompt `{gens['paper_prompt']['prompt']}`, greedy:", "",
            quote(gens["paper_prompt"]["prompt"] + gens["paper_prompt"]["greedy"]), ""]
    for text in gens["paper_prompt"]["sampled"]:
        out += ["sampled:", "", quote(gens["paper_prompt"]["prompt"] + text), ""]
    first = gens["stories"][0]
    out += ["A held-out beginning, continued (greedy, then sampled):", "", quote(first["beginning"]), "",
            quote("… " + first["greedy"]), "", quote("… " + first["sampled"]), "",
            "## Grammar, consistency, repetition", "",
            table([{"decoding": k, "grammatical sentences": report["grammar"][k],
                     "consistent continuations": report["consistency"][k]} for k in report["grammar"]],
                   ["decoding", "grammatical sentences", "consistent continuations"]), "",
            table(report["repetition"], ["model", "texts", "distinct_1", "distinct_2", "distinct_3",
                                          "repeated_4gram_share"]), ""]
    judged = report["judge"]
    if judged is not None:
        out += ["## Judge", ""]
        if "skipped" in judged:
            out += [f"Skipped: {judged['skipped']}.", ""]
        else:
            out += [table([judged["summary"]], [*SCORE_NAMES, "n_items", "n_parsed", "n_failed"]), ""]
    comparison = report["comparison"]
    if comparison is not None:
        out += ["## Comparison", ""]
        if "skipped" in comparison:
            out += [f"Skipped: {comparison['skipped']}.", ""]
        else:
            rows = [{"model": name, **p} for name, p in comparison["perplexity"].items()]
            out += [f"Perplexity on {comparison['texts']} validation stories (each model's own tokenizer; "
                    "compare per word):", "",
                    table(rows, ["model", "word_perplexity", "token_perplexity", "tokens", "words"]), "",
                    table(comparison["repetition"], ["model", "texts", "distinct_1", "distinct_2", "distinct_3",
                                                      "repeated_4gram_share"]), ""]
            if comparison["judge"]:
                out += [table([{"model": n, **s} for n, s in comparison["judge"].items()],
                               ["model", *SCORE_NAMES, "n_parsed"]), ""]
            for name, texts in comparison["generations"].items():
                out += [f"**{name}**, greedy, prompt `{comparison['prompts'][0]}`:", "",
                        quote(comparison["prompts"][0] + texts["greedy"][0]), ""]
    if report["learning_order"] is not None:
        out += _learning_order_section(report["learning_order"])
    out += [f"Evaluated in {report['elapsed_s']['total']:.1f} s.", ""]
    return "\n".join(out)


def interval(value: Mapping[str, Any] | None) -> str:
    """A share with its 95% interval, e.g. ``0.42 (0.35-0.49)``."""
    if value is None:
        return "–"
    return f"{value['share']:.2f} ({value['low']:.2f}-{value['high']:.2f})"


def difference(compared: Mapping[str, Any]) -> str:
    """A :func:`helpers.stats.compare_shares` result: the difference, its 95% interval, the verdict.

    E.g. ``+0.02 (-0.03 to +0.07) not distinguishable``.
    """
    return f"{compared['difference']:+.2f} ({compared['low']:+.2f} to {compared['high']:+.2f}) {compared['verdict']}"


def _learning_order_section(order: Mapping[str, Any]) -> list[str]:
    """Pretraining: the probes per checkpoint; finetuning: exact answers per kind per checkpoint."""
    out = ["## Learning order", ""]
    if "skipped" in order:
        return out + [f"Skipped: {order['skipped']}.", ""]
    if "baselines" in order:  # an answer curve
        kinds = [k for k in order["rows"][0] if k not in {"step", "tokens"}]
        rows = [{"step": r["step"], **{k: interval(r[k]) for k in kinds}} for r in order["rows"]]
        rows.append({"step": "baseline", **{k: fmt(order["baselines"][k]["share"]) for k in kinds if k != "all"}})
        return out + [table(rows, ["step", *kinds]), "", f"![answers]({Path(order['figure']).name})", ""]
    columns = ["step", "tokens", "grammar", "consistency", "story facts", "story facts, story removed",
               "copying: saved on a repeat (nats)"]
    rows = [{"step": r["step"], "tokens": r["tokens"], "grammar": interval(r["grammar"]["sentences"]),
             "consistency": interval(r["consistency"]["strict"]), "story facts": interval(r["cloze"]["absent"]["all"]),
             "story facts, story removed": interval(r["cloze"]["absent without story"]["all"]),
             "copying: saved on a repeat (nats)": f"{r['copying']['repeated_random']['gain']:+.2f}"}
            for r in order["rows"]]
    return out + [table(rows, columns), "", "Story facts: the cloze whose distractors the story never names.", "",
                  f"![learning order]({Path(order['figure']).name})", ""]


def grades_table(grades: Sequence[Grade]) -> str:
    """The judge's grades: one row per item, then the mean over parsed items."""
    header = "| # | grammar | creativity | consistency | plot | age group | status |"
    lines = [header, "|---:|---:|---:|---:|---:|:---:|:---|"]
    for index, g in enumerate(grades, start=1):
        status = f"error: {g.error}" if g.error else ("ok" if g.parsed else "unparsed")
        scores = " | ".join(fmt(getattr(g, name)) for name in SCORE_NAMES)
        lines.append(f"| {index} | {scores} | {g.age_group or '–'} | {status} |")
    summary = summarise(grades)
    means = " | ".join(fmt(summary[n], decimals=2) for n in SCORE_NAMES)
    lines.append(f"| **mean** | {means} | – | {summary['n_parsed']} of {summary['n_items']} parsed |")
    return "\n".join(lines)
