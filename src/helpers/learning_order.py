"""What is learned when: probes at every saved model of one pretraining run, and answers along finetuning.

The paper concludes from a few samples that a small model learns grammar
first, then the template of an answer, hardly any logic. Here the order is
measured, not built in. :func:`learning_order` asks every checkpoint of a
*pretraining* run the same three things, none of which pretraining is told
about: grammar (the share of sentences the story grammar can produce),
consistency (continuations that keep the story's characters and things) and
story facts (a cloze: which of the story's own words the model expects after
a cue). Each share comes with its 95% interval and a line to read it against.
:func:`answer_curve` follows exact answers to held-out story questions, kind
by kind, through finetuning, against baselines taken from the training
questions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from .config import Profile
from .devices import resolve_device
from .inference import Decoding, generate
from .model import load_model
from .evaluation_plots import answer_curve_figure, learning_order_figure
from .plots import close
from .probes import cloze_accuracy, qa_accuracy
from .progress import progress_bar
from .runs import has_model, model_stages, read_metrics, read_run_record, require_model, run_profile, tokens_at
from .sources import held_out_questions, load_instructions
from .stats import share
from .stories import corpus, story_prompts
from .story_cloze import cloze_items, frequency_baseline
from .text_metrics import (
    STORY_SENTENCES, answer_tallies, consistent_continuations, grammatical_sentences, majority_baselines,
)

__all__ = ["learning_order", "answer_curve", "learning_order_report"]


def _story_references(prompts, cloze, corpus_seed: int) -> dict[str, Any]:
    """The lines each probe is read against, from the stories themselves (no model)."""
    stories = [story for _, story in prompts]
    real = [story.text[len(beginning):] for beginning, story in prompts]
    borrowed = real[1:] + real[:1]  # fluent story text that belongs to another beginning
    training = [s.text for s in corpus("train", 2000, seed=corpus_seed)]
    chance = {kind: sum(i.chance for i in cloze if i.kind == kind) / sum(i.kind == kind for i in cloze)
              for kind in dict.fromkeys(i.kind for i in cloze)}
    return {
        "grammar": {"the stories' own continuations": share(*grammatical_sentences(real))["share"]},
        "consistency": {"the stories' own continuations":
                        consistent_continuations(list(zip(stories, real))) / len(prompts),
                        "another story's continuation":
                        consistent_continuations(list(zip(stories, borrowed))) / len(prompts)},
        "cloze": {"chance": chance, "word frequency": frequency_baseline(cloze, training)},
    }


def learning_order(pretrain_run: str | Path, *, prompts: int = 200, cloze_stories: int = 60,
                   max_new_tokens: int = 60, seed: int = 0, profile: Profile | None = None,
                   device: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Grammar, consistency and story facts at every checkpoint of one pretraining run.

    ``prompts`` held-out story beginnings are continued (sampled with
    ``seed``): grammar counts their sentences, consistency their
    continuations. The cloze asks four blanks (who, where, what, feeling)
    about each of ``cloze_stories`` held-out stories. Returns ``rows`` (one
    per saved model: ``step``, ``tokens`` and a share with its 95% interval
    per probe, the cloze per kind) and ``references`` (the stories' own
    continuations, another story's continuation, the cloze's chance and
    word-frequency baseline).
    """
    run = require_model(Path(pretrain_run))
    cfg = profile or run_profile(run)
    begin = story_prompts(prompts, seed=cfg.data.corpus_seed, n_sentences=STORY_SENTENCES)
    cloze = [item for story in corpus("validation", cloze_stories, seed=cfg.data.corpus_seed)
             for item in cloze_items(story)]
    tokenizer, records = AutoTokenizer.from_pretrained(str(run)), read_metrics(run)
    dev = resolve_device(device or cfg.device)
    rows = []
    for step, folder in progress_bar(model_stages(run), desc="learning order", unit="checkpoint",
                                     disable=not progress):
        model = load_model(folder).to(dev)
        texts = generate(model, tokenizer, [b for b, _ in begin],
                         Decoding(max_new_tokens=max_new_tokens, do_sample=True, seed=seed), device=dev, progress=False)
        good, total = grammatical_sentences(texts)
        no_sentence = {"share": 0.0, "low": 0.0, "high": 1.0, "successes": 0, "n": 0}  # nothing to count yet
        rows.append({"step": step, "tokens": tokens_at(records, step),
                     "grammar": share(good, total) if total else no_sentence,
                     "consistency": share(consistent_continuations([(s, t) for (_, s), t in zip(begin, texts)]),
                                          len(begin)),
                     "cloze": cloze_accuracy(model, tokenizer, cloze, device=dev)})
    return {"rows": rows, "references": _story_references(begin, cloze, cfg.data.corpus_seed),
            "prompts": len(begin), "cloze_items": len(cloze), "cloze_stories": cloze_stories}


def answer_curve(finetune_run: str | Path, *, stories: int = 64, max_new_tokens: int = 12,
                 profile: Profile | None = None, device: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Exact answers to held-out story questions, kind by kind, from the model finetuning started at to its end.

    The questions are all those about the first ``stories`` held-out
    stories. Baselines come from the *training* questions only: always the
    most common training answer of the question's kind ("no" for yes/no, if
    that is the most common). Rows hold ``step`` (0: the init model),
    ``tokens`` and, per kind and for all, the exact share with its 95%
    interval and the share of answers of the right form.
    """
    run = require_model(Path(finetune_run))
    cfg = profile or run_profile(run)
    if cfg.data.instructions != "embedded":
        return {"skipped": "answers are scored on the embedded story questions only"}
    questions = held_out_questions(stories, cfg.data.corpus_seed)
    baselines = majority_baselines(load_instructions(cfg.data)[0], questions)
    tokenizer, records = AutoTokenizer.from_pretrained(str(run)), read_metrics(run)
    record = read_run_record(run)
    init = record.init if record else None  # the pretrained model is the answers' step 0
    stages = ([(0, Path(init))] if init and has_model(init) else []) + model_stages(run)
    dev = resolve_device(device or cfg.device)
    rows = []
    for step, folder in progress_bar(stages, desc="answers", unit="checkpoint", disable=not progress):
        scored = qa_accuracy(load_model(folder).to(dev), tokenizer, questions, max_new_tokens=max_new_tokens,
                             examples=len(questions), position_offset=cfg.data.position_offset, device=dev,
                             progress=False)
        rows.append({"step": step, "tokens": 0 if step == 0 else tokens_at(records, step),
                     **answer_tallies(scored["examples"])})
    return {"rows": rows, "baselines": baselines, "questions": len(questions), "stories": stories}


def learning_order_report(run_dir: Path, stage: str, profile: Profile, seed: int, device: str, progress: bool,
                          prompts: int = 200, stories: int = 60) -> dict[str, Any]:
    """The learning order of a pretraining run, or the answer curve of a finetuning run, with its figure.

    ``prompts`` continuations and ``stories`` cloze stories per checkpoint for
    a pretraining run; the questions about ``stories`` held-out stories for a
    finetuning run. The figure is written beside the run
    (``learning_order.png`` or ``answers.png``).
    """
    if stage == "finetune":
        curve = answer_curve(run_dir, stories=stories, profile=profile, device=device, progress=progress)
        if "skipped" in curve:
            return curve
        figure = run_dir / "answers.png"
        close(answer_curve_figure(curve, title="Exact answers to held-out story questions", path=figure))
        return {**curve, "figure": str(figure)}
    order = learning_order(run_dir, prompts=prompts, cloze_stories=stories, seed=seed, profile=profile,
                           device=device, progress=progress)
    figure = run_dir / "learning_order.png"
    close(learning_order_figure(order, title="What pretraining teaches, checkpoint by checkpoint", path=figure))
    return {**order, "figure": str(figure)}
