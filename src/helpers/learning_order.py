"""What is learned when: the same probes at every saved model of a pretraining (and finetuning) run.

The paper concludes from a few samples that a small model learns grammar
first, then the template of an answer, hardly any logic. Measured at every
checkpoint, that order becomes curves over the training tokens seen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from .config import Profile, get_profile
from .devices import resolve_device
from .model import load_model
from .plots import close, learning_order_figure
from .probes import qa_accuracy, story_measures
from .progress import progress_bar
from .runs import has_model, model_stages, read_metrics, read_run_info, require_model, tokens_at
from .sources import load_instructions
from .stories import story_prompts
from .text_metrics import STORY_SENTENCES

__all__ = ["learning_order", "learning_order_report"]


def _run_profile(run_dir: Path) -> Profile:
    """The settings a run was trained with (the lesson profile for a bare model folder)."""
    saved = read_run_info(run_dir).get("profile")
    return Profile.from_dict(saved) if saved else get_profile("lesson")


def _plan(pretrain_run: Path, finetune_run: Path | None) -> list[tuple[str, Path, int, Path]]:
    """(stage, run, step, model folder) of every model to measure, in training order.

    Finetuning gets a step-0 row: the model it started from, before any answer was taught.
    """
    plan = [("pretrain", pretrain_run, step, folder) for step, folder in model_stages(pretrain_run)]
    if finetune_run is not None:
        init = Path(read_run_info(finetune_run).get("init") or pretrain_run)
        plan.append(("finetune", finetune_run, 0, init if has_model(init) else pretrain_run))  # a relative init may not resolve here
        plan += [("finetune", finetune_run, step, folder) for step, folder in model_stages(finetune_run)]
    return plan


def learning_order(pretrain_run: str | Path, *, finetune_run: str | Path | None = None, prompts: int = 32,
                   questions: int = 32, max_new_tokens: int = 60, do_sample: bool = True, seed: int = 0,
                   profile: Profile | None = None, device: str | None = None,
                   progress: bool = True) -> list[dict[str, Any]]:
    """Grammar, consistency and answer accuracy at every checkpoint: what is learned when.

    For each checkpoint of ``pretrain_run`` (and its final model when no
    checkpoint has its step), ``prompts`` beginnings of held-out stories are
    continued (sampled with ``seed``, or greedy) and measured with
    :func:`helpers.text_metrics.grammar_share` and
    :func:`helpers.text_metrics.consistency_share`. Each row holds ``stage``,
    ``step``, ``tokens`` (training tokens seen, from ``metrics.jsonl``) and
    the two shares. With ``finetune_run``, a row at finetuning step 0
    measures the model it started from (its ``init``), and its checkpoints
    follow, their ``tokens`` counted on top of the whole pretraining, each
    with ``answers`` (exact-match accuracy) and ``answer_template`` (answers
    of the right form) from :func:`helpers.probes.qa_accuracy` on
    ``questions`` held-out story questions (both ``None`` when the run's
    instructions are not the embedded story questions). ``profile``
    defaults to each run's own.
    """
    pretrain_run = Path(pretrain_run)
    finetune_run = Path(finetune_run) if finetune_run is not None else None
    for run in (pretrain_run, finetune_run):
        if run is not None:
            require_model(run)
    plan = _plan(pretrain_run, finetune_run)
    pre_records = read_metrics(pretrain_run)
    pre_total = tokens_at(pre_records, max(r["step"] for r in pre_records)) or 0
    rows: list[dict[str, Any]] = []
    cache: dict[Path, tuple] = {}
    for stage, run, step, folder in progress_bar(plan, desc="learning order", unit="checkpoint", disable=not progress):
        if run not in cache:
            run_profile = profile or _run_profile(run)
            qa = None
            if stage == "finetune" and run_profile.data.instructions == "embedded":
                qa = load_instructions(run_profile.data)[1][:questions]
            story_set = story_prompts(prompts, seed=run_profile.data.corpus_seed, n_sentences=STORY_SENTENCES)
            cache[run] = (AutoTokenizer.from_pretrained(str(run)), read_metrics(run), qa, story_set,
                          resolve_device(device or run_profile.device))
        tokenizer, records, qa, story_set, dev = cache[run]
        model = load_model(folder).to(dev)
        tokens = 0 if step == 0 else tokens_at(records, step)
        row: dict[str, Any] = {"stage": stage, "step": step,
                               "tokens": tokens if stage == "pretrain" else pre_total + (tokens or 0)}
        if stage == "finetune":
            answered = qa_accuracy(model, tokenizer, qa, progress=False) if qa else {}
            row.update(answers=answered.get("accuracy"), answer_template=answered.get("template"))
        row.update(story_measures(model, tokenizer, story_set, max_new_tokens=max_new_tokens,
                                  do_sample=do_sample, seed=seed, device=dev))
        rows.append(row)
    return rows


def learning_order_report(run_dir: Path, stage: str, info: dict, profile: Profile, samples: int, seed: int,
                          device: str, progress: bool) -> dict[str, Any]:
    """Learning-order rows for a run (and the pretraining run it started from) and their figure.

    The figure is written to ``<run>/learning_order.png``. A finetuning run
    whose pretraining run is not there is skipped with one printed line.
    """
    if stage == "finetune":
        init = Path(info["init"]) if info.get("init") else None
        if init is None or not init.is_dir():
            print(f"Learning order skipped: the pretraining run {str(init)!r} this run started from is not there.")
            return {"skipped": f"pretraining run {str(init)!r} not found"}
        rows = learning_order(init, finetune_run=run_dir, prompts=samples, questions=2 * samples, seed=seed,
                              profile=profile, device=device, progress=progress)
    else:
        rows = learning_order(run_dir, prompts=samples, seed=seed, profile=profile, device=device,
                              progress=progress)
    figure = run_dir / "learning_order.png"
    close(learning_order_figure(rows, title="What the model learns first", path=figure))
    return {"rows": rows, "figure": str(figure)}
