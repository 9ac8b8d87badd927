"""The report job's summary: the lessons' numbers beside the paper's, and every figure, in ``build/report.md``.

It reads only what the lessons left behind (each run's ``run.json``,
``metrics.jsonl`` and ``eval.json``, and the figures folder), so the report
says exactly what the stored runs say.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from .lessons import LessonPaths
from .markdown import fmt, table
from .paper import PAPER_PERPLEXITY
from .runs import read_evaluation, read_metrics, read_run_record, write_text

__all__ = ["FIGURES", "write_report"]

FIGURES = (  # (file, caption): the report shows those that exist, in this order
    ("pretrain_lr.png", "Pretraining learning rate (the paper's Fig. 10)"),
    ("pretrain_loss_train.png", "Pretraining loss on training data (Fig. 11)"),
    ("pretrain_loss_eval.png", "Pretraining loss on validation data (Fig. 12)"),
    ("pretrain_ppl.png", "Validation perplexity during pretraining"),
    ("finetune_lr.png", "Finetuning learning rate (Fig. 15)"),
    ("finetune_loss_train.png", "Finetuning loss on training data (Fig. 16)"),
    ("finetune_loss_eval.png", "Finetuning loss on validation data (Fig. 17)"),
    ("learning_order.png", "What is learned when: grammar, consistency, answers"),
    ("repetition.png", "Repetition of generated text"),
    ("attention_heads.png", "Attention heads of a trained model"),
    ("token_lengths.png", "Tokens per story under four tokenizers"),
)


def _perplexity_rows(paths: LessonPaths) -> list[dict]:
    rows = []
    for stage, folder in (("pretraining", paths.pretrain), ("finetuning", paths.finetune)):
        paper = PAPER_PERPLEXITY["pretrain" if stage == "pretraining" else "finetune"]
        run = read_run_record(folder)
        if run is None:
            rows.append({"stage": stage, "paper": paper, "this run": "not run"})
            continue
        records = read_metrics(folder)
        last_eval = next((r for r in reversed(records) if r.get("eval_loss") is not None), {})
        measured = ((read_evaluation(folder) or {}).get("perplexity") or {}).get("perplexity", last_eval.get("perplexity"))
        rows.append({"stage": stage, "paper": paper, "this run": measured, "steps": run.total_steps,
                     "training tokens": records[-1]["tokens"],
                     "training time": f"{fmt(records[-1]['elapsed_s'] / 60, 3)} min on {run.device} "
                                      f"({run.precision})"})
    return rows


def write_report(paths: LessonPaths, out: str | Path, *, profile: str = "lesson") -> Path:
    """A markdown report: the key numbers beside the paper's, and every figure that exists."""
    out = Path(out)
    lines = [
        "# Story-based QA GPT, rebuilt: report", "",
        f"Profile `{profile}`, written {datetime.date.today().isoformat()} from the runs in "
        f"`{os.path.relpath(paths.runs, out.parent)}` and the figures in `{os.path.relpath(paths.figures, out.parent)}`.",
        "", "## Perplexity: the paper and this run", "",
        "Not comparable across profiles: the lesson profile uses its own 2048-token vocabulary and the embedded "
        "stories and story questions; only the `paper` profile measures what the paper measured.", "",
        table(_perplexity_rows(paths), ["stage", "paper", "this run", "steps", "training tokens", "training time"]),
        "",
    ]
    pre_eval, fine_eval = read_evaluation(paths.pretrain) or {}, read_evaluation(paths.finetune) or {}
    if pre_eval.get("repetition"):
        rows = [{"decoding": r["model"], "distinct-2": r.get("distinct_2"),
                 "repeated 4-grams": r.get("repeated_4gram_share")} for r in pre_eval["repetition"]]
        lines += ["## Repetition (the paper: gpt2 loops, the small model does not)", "",
                  table(rows, ["decoding", "distinct-2", "repeated 4-grams"])]
        comparison = pre_eval.get("comparison") or {}
        if comparison.get("skipped"):
            lines.append(f"\ngpt2 comparison skipped: {comparison['skipped']}.")
        lines.append("")
    if fine_eval.get("qa"):
        qa = fine_eval["qa"]
        rows = [{"kind": kind, "exact answers": t["share"], "answers of the right form": t["right_form"]}
                for kind, t in qa["by_kind"].items()]
        rows.append({"kind": "all", "exact answers": qa["share"], "answers of the right form": qa["right_form"]})
        lines += ["## Story questions after finetuning", "",
                  table(rows, ["kind", "exact answers", "answers of the right form"]), ""]
    lines += ["## Figures", ""]
    for name, caption in FIGURES:
        figure = paths.figures / name
        if figure.exists():
            lines += [f"### {caption}", "", f"![{caption}]({os.path.relpath(figure, out.parent)})", ""]
    write_text(out, "\n".join(lines))
    return out
