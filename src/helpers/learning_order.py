"""What is learned when: probes at every saved model of one pretraining run, and answers along finetuning.

The paper concludes from a few samples that a small model learns grammar
first, then the template of an answer, hardly any logic. Here the order is
measured, not built in. :func:`learning_order` asks every checkpoint of a
*pretraining* run the same four things, none of which pretraining is told
about: grammar (sentences the story grammar can produce, and two looser
counts), consistency (continuations that keep the story's characters and
things, and three lenient rules), story facts (a cloze in two designs, each
also without the story) and copying from the context
(:mod:`helpers.copying`). Each comes with the lines it is read against: the
stories' own text, a control that must fail, the untrained model, and for
copying a rule that copies perfectly.
:func:`answer_curve` follows exact answers to held-out story questions, kind
by kind, through finetuning, against baselines taken from the training
questions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from .config import Profile
from .copying import CopyingOracle, copying_probe
from .devices import resolve_device
from .inference import Decoding, generate
from .model import build_model, load_model
from .evaluation_plots import answer_curve_figure, learning_order_figure
from .plots import close
from .probes import cloze_accuracies, qa_accuracy
from .progress import progress_bar
from .runs import has_model, model_stages, read_metrics, read_run_record, require_model, run_profile, tokens_at
from .sources import held_out_questions, load_instructions
from .stats import share
from .stories import corpus, story_prompts
from .story_cloze import CLOZE_DESIGNS, cloze_items, frequency_baseline, without_story
from .text_metrics import (
    STORY_SENTENCES, answer_tallies, consistency_variants, grammar_measures, majority_baselines, reader_baselines,
)

__all__ = ["learning_order", "answer_tokens", "answer_curve", "learning_order_report", "thinned"]


def _cloze_sets(stories) -> dict[str, list]:
    """The cloze items of both designs, each also with the story removed (the control)."""
    sets = {design: [item for story in stories for item in cloze_items(story, design)] for design in CLOZE_DESIGNS}
    return {**sets, **{f"{design} without story": without_story(items) for design, items in sets.items()}}


def _shares(counts: dict[str, int], n: int) -> dict[str, dict]:
    return {name: share(k, n) for name, k in counts.items()}


def thinned(stages: list[tuple[int, Path]], every: int) -> list[tuple[int, Path]]:
    """Every ``every``-th saved model (the ``every``-th first), always ending with the last one.

    Probing fewer checkpoints takes less time and keeps the final numbers; the curve gets coarser.
    """
    if every < 1:
        raise ValueError(f"every must be at least 1, got {every}")
    kept = stages[every - 1::every]
    return kept if not stages or (kept and kept[-1] == stages[-1]) else kept + stages[-1:]


def _measure(model, tokenizer, begin, cloze, facts_stories, block_size, texts, copy_sequences) -> dict[str, Any]:
    """Every probe on one model; ``texts`` are its continuations of the beginnings ``begin``."""
    pairs = [(s, t) for (_, s), t in zip(begin, texts)]
    return {"grammar": grammar_measures(texts),
            "consistency": _shares(consistency_variants(pairs), len(begin)),
            "cloze": cloze_accuracies(model, tokenizer, cloze),
            "copying": copying_probe(model, tokenizer, facts_stories, block_size, sequences=copy_sequences)}


def _story_references(prompts, cloze, corpus_seed: int) -> dict[str, Any]:
    """The lines each text probe is read against, from the stories themselves (no model)."""
    real = [story.text[len(beginning):] for beginning, story in prompts]
    borrowed = real[1:] + real[:1]  # fluent story text that belongs to another beginning
    training = [s.text for s in corpus("train", 2000, seed=corpus_seed)]
    stories = [story for _, story in prompts]
    return {
        "grammar": {"the stories' own continuations": grammar_measures(real)},
        "consistency": {"the stories' own continuations": _shares(consistency_variants(list(zip(stories, real))),
                                                                  len(prompts)),
                        "another story's continuation": _shares(consistency_variants(list(zip(stories, borrowed))),
                                                                len(prompts))},
        "cloze": {"chance": {name: _per_kind_chance(items) for name, items in cloze.items()},
                  "word frequency": frequency_baseline(cloze["story"], training)},
    }


def _per_kind_chance(items) -> dict[str, float]:
    kinds = dict.fromkeys(i.kind for i in items)
    return {kind: sum(i.chance for i in items if i.kind == kind) / sum(i.kind == kind for i in items) for kind in kinds}


def learning_order(pretrain_run: str | Path, *, prompts: int = 200, cloze_stories: int = 60,
                   max_new_tokens: int = 60, copy_sequences: int = 64, every: int = 1, seed: int = 0,
                   profile: Profile | None = None, device: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Grammar, consistency, story facts and copying at every checkpoint of one pretraining run.

    With ``every`` above 1, at every ``every``-th checkpoint only, and the last (:func:`thinned`).

    ``prompts`` held-out story beginnings are continued (sampled with
    ``seed``): grammar counts their sentences, consistency their
    continuations. The cloze asks four blanks (who, where, what, feeling)
    about each of ``cloze_stories`` held-out stories, in both designs of
    :mod:`helpers.story_cloze`, each also without the story; the copying probe
    reads the same stories and writes ``copy_sequences`` random repeats.
    Returns ``rows`` (one per saved model: ``step``,
    ``tokens`` and every measure of :func:`_measure`), ``untrained`` (the
    same measures of the run's first weights, before any step) and
    ``references`` (the stories' own text, another story's continuation, the
    cloze's chance and word-frequency lines, the copying rule's scores).
    """
    run = require_model(Path(pretrain_run))
    cfg = profile or run_profile(run)
    begin = story_prompts(prompts, seed=cfg.data.corpus_seed, n_sentences=STORY_SENTENCES)
    facts = corpus("validation", cloze_stories, seed=cfg.data.corpus_seed)
    cloze = _cloze_sets(facts)
    tokenizer, records = AutoTokenizer.from_pretrained(str(run)), read_metrics(run)
    dev = resolve_device(device or cfg.device)
    block = cfg.data.block_size
    sampling = Decoding(max_new_tokens=max_new_tokens, do_sample=True, seed=seed)

    def measured(model) -> dict[str, Any]:
        texts = generate(model, tokenizer, [b for b, _ in begin], sampling, device=dev, progress=False)
        return _measure(model, tokenizer, begin, cloze, facts, block, texts, copy_sequences)

    stages = thinned(model_stages(run), every)
    rows = [{"step": step, "tokens": tokens_at(records, step), **measured(load_model(folder).to(dev))}
            for step, folder in progress_bar(stages, desc="learning order", unit="checkpoint", disable=not progress)]
    untrained = measured(build_model(cfg.model, seed=cfg.pretrain.seed).to(dev))
    references = {**_story_references(begin, cloze, cfg.data.corpus_seed),
                  "copying": copying_probe(CopyingOracle(len(tokenizer)), tokenizer, facts, block,
                                           sequences=copy_sequences)}
    return {"rows": rows, "untrained": untrained, "references": references, "prompts": len(begin),
            "cloze_items": {name: len(items) for name, items in cloze.items()}, "cloze_stories": cloze_stories}


def answer_tokens(yes_no_fact: str) -> int:
    """How many tokens a greedy answer may take: of 3,000 training questions the longest bare answer takes 9 tokens
    of the lesson's tokenizer, a yes/no written with its deciding fact (``data.yes_no_fact``) 13, 20 with the
    question's value echoed before it ("asked") and 22 with the echo beside the story's value ("compared")."""
    return {"none": 12, "asked": 28, "compared": 28}.get(yes_no_fact, 20)


def answer_curve(finetune_run: str | Path, *, stories: int = 64, max_new_tokens: int | None = None, every: int = 1,
                 profile: Profile | None = None, device: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Exact answers to held-out story questions, kind by kind, from the model finetuning started at to its end.

    With ``every`` above 1, at the start and every ``every``-th checkpoint only, and the last (:func:`thinned`).

    The questions are all those about the first ``stories`` held-out
    stories. Baselines come from the *training* questions only: always the
    most common training answer of the question's kind ("no" for yes/no, if
    that is the most common). Rows hold ``step`` (0: the init model),
    ``tokens`` and, per kind and for all, the exact share with its 95%
    interval and the share of answers of the right form; who-questions are
    also tallied by role. ``readers`` are the trivial readers' shares
    (:func:`helpers.text_metrics.reader_baselines`), beside the baselines.
    """
    run = require_model(Path(finetune_run))
    cfg = profile or run_profile(run)
    if cfg.data.instructions != "embedded":
        return {"skipped": "answers are scored on the embedded story questions only"}
    questions = held_out_questions(stories, cfg.data.corpus_seed, cfg.data.yes_no_fact)
    baselines = majority_baselines(load_instructions(cfg.data)[0], questions)
    readers = reader_baselines(questions)
    tokenizer, records = AutoTokenizer.from_pretrained(str(run)), read_metrics(run)
    record = read_run_record(run)
    init = record.init if record else None  # the pretrained model is the answers' step 0
    stages = ([(0, Path(init))] if init and has_model(init) else []) + thinned(model_stages(run), every)
    dev = resolve_device(device or cfg.device)
    rows = []
    for step, folder in progress_bar(stages, desc="answers", unit="checkpoint", disable=not progress):
        scored = qa_accuracy(load_model(folder).to(dev), tokenizer, questions,
                             max_new_tokens=max_new_tokens or answer_tokens(cfg.data.yes_no_fact),
                             examples=len(questions), position_offset=cfg.data.position_offset, device=dev,
                             progress=False)
        rows.append({"step": step, "tokens": 0 if step == 0 else tokens_at(records, step),
                     **answer_tallies(scored["examples"])})
    return {"rows": rows, "baselines": baselines, "readers": readers, "questions": len(questions), "stories": stories}


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
