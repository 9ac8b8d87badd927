"""One run folder, measured the ways the paper does and a few ways it could not: ``eval.json`` and ``eval.md``.

The paper judges its 3.6M-parameter GPT-2 by validation perplexity (10.18
after pretraining, 394.8 after instruction tuning), by reading sampled text,
by GPT-3.5 grades, and by setting it beside gpt2 (124M), which it says repeats
itself where the small model does not. :func:`evaluate_run` does each of those
for one run folder with the pieces of :mod:`helpers.inference`,
:mod:`helpers.probes`, :mod:`helpers.text_metrics`, :mod:`helpers.comparison`
and :mod:`helpers.learning_order`, and writes the report beside the model.
The report's shape is :class:`EvaluationReport`; :func:`read_evaluation` reads
it back, and :func:`helpers.markdown.evaluation_markdown` renders it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypedDict

from .comparison import compare_models, load_comparison
from .config import ConfigError, Profile
from .data import finetuning_examples, pretraining_blocks
from .devices import resolve_device
from .inference import Decoding, generate, load_run, perplexity
from .judge import DEFAULT_MODEL, judge_available, judge_many, summarise
from .learning_order import learning_order_report
from .markdown import evaluation_markdown
from .paper import PAPER_INSTRUCTIONS, PAPER_PERPLEXITY, PAPER_STORY_PROMPT
from .probes import qa_accuracy, story_generations
from .prompts import model_prompt
from .runs import (
    EVALUATION, EVALUATION_MARKDOWN, RunRecord, read_run_record, require_model, run_profile, setting_differences,
    write_text,
)
from .sources import load_instructions, load_stories
from .text_metrics import STORY_SENTENCES, repetition_table

__all__ = ["DEFAULT_SAMPLES", "EvaluationReport", "evaluate_run"]

# Generations per prompt set when evaluate_run is not told otherwise.
DEFAULT_SAMPLES = 16


class Perplexity(TypedDict, total=False):
    loss: float          # nats per scored token
    perplexity: float    # exp(loss)
    tokens: int          # scored tokens
    data: str            # what was scored
    blocks: int          # pretraining: validation blocks
    examples: int        # finetuning: held-out instructions


class QAScore(TypedDict):
    share: float                 # exact answers, all kinds
    low: float                   # its 95% interval
    high: float
    successes: int
    n: int
    right_form: float | None     # answers of the form their kind asks for
    by_kind: dict[str, dict[str, Any]]  # the same per kind
    examples: list[dict[str, Any]]


class EvaluationReport(TypedDict):
    """Everything ``eval.json`` holds; a section that was not measured is ``None``."""

    run: str
    stage: str
    settings: dict[str, Any]
    model: dict[str, Any]                 # parameters, vocab_size, trained_steps
    paper: dict[str, float]               # the paper's perplexity for this stage
    perplexity: Perplexity
    generations: dict[str, Any]           # paper_prompt {prompt, greedy, sampled}; stories [...]
    repetition: list[dict[str, Any]]      # one text_metrics.repetition_table row per decoding
    grammar: dict[str, float]             # per decoding
    consistency: dict[str, float]         # per decoding
    instructions: list[dict[str, str]] | None
    qa: QAScore | None
    judge: dict[str, Any] | None          # summary and grades, or skipped
    comparison: dict[str, Any] | None     # compare_models' result, or skipped
    learning_order: dict[str, Any] | None  # rows and figure, or skipped
    elapsed_s: dict[str, float]
    json_path: str
    markdown_path: str


class _Laps:
    """Seconds spent in each part of an evaluation."""

    def __init__(self):
        self.started = self.mark = time.perf_counter()
        self.timings: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name], self.mark = round(now - self.mark, 3), now

    def total(self) -> dict[str, float]:
        return {**self.timings, "total": round(time.perf_counter() - self.started, 3)}


def evaluate_run(run_dir: str | Path, profile: Profile | None = None, *, other_settings: bool = False,
                 judge: bool = False, judge_model: str = DEFAULT_MODEL,
                 compare: str | None = None, learning_order: bool = False, samples: int | None = None,
                 max_new_tokens: int = 100, seed: int = 0, order_prompts: int = 200, order_stories: int = 60,
                 device: str | None = None, progress: bool = True) -> EvaluationReport:
    """Evaluate one run folder as the paper does and write ``eval.json`` and ``eval.md`` into it.

    The stage and the settings come from ``run.json`` (a bare model folder
    counts as pretrained, measured with ``profile`` or the lesson profile).
    A ``profile`` that differs from the run's in more than ``device`` is
    refused unless ``other_settings`` is set; the report then lists the
    differences. Pretraining runs: perplexity on the profile's validation
    blocks (the paper's 10.18), generations for the paper's story prompt and
    ``samples`` held-out beginnings, repetition, grammar and consistency
    shares. Finetuning runs: perplexity on the held-out instructions (the
    paper's 394.8), answers to the paper's two instructions, story-question
    accuracy per kind (embedded instructions only) and the same story
    measurements. Optional: GPT-3.5-style grades (``judge``; one skip line
    when no judge is configured), a comparison model (``compare``, e.g.
    ``"gpt2"``; one skip line when unavailable) and the learning order over
    checkpoints (``order_prompts`` continuations and ``order_stories`` cloze
    stories per checkpoint of a pretraining run; the questions about
    ``order_stories`` held-out stories at each checkpoint of a finetuning run;
    drawn beside the run). ``device`` overrides the settings' device. The
    API key is never written. Returns the report with ``json_path`` and
    ``markdown_path``.
    """
    laps = _Laps()
    run_dir = require_model(Path(run_dir))
    record = read_run_record(run_dir)
    stage = record.stage if record else "pretrain"
    profile, changed = _evaluation_profile(run_dir, record, profile, other_settings)
    samples = samples or DEFAULT_SAMPLES
    decoding = Decoding(max_new_tokens=max_new_tokens, seed=seed)  # greedy, and sampled with the same seed
    device = resolve_device(device or profile.device)
    model, tokenizer = load_run(run_dir, profile, device)
    laps.lap("load")

    report: dict[str, Any] = {
        "run": str(run_dir), "stage": stage,
        "settings": {"profile": profile.name, "samples": samples, "max_new_tokens": max_new_tokens, "seed": seed,
                     "sampling": decoding.sampling(), "story_sentences": STORY_SENTENCES, "judge": judge,
                     "judge_model": judge_model if judge else None, "compare": compare,
                     "learning_order": learning_order, "device": device, "data": profile.to_dict()["data"],
                     "other_settings": changed},
        "model": {"parameters": sum(p.numel() for p in model.parameters()),
                  "vocab_size": model.config.vocab_size, "trained_steps": record.total_steps if record else None},
        "paper": {"perplexity": PAPER_PERPLEXITY[stage]},
        "perplexity": _perplexity(model, tokenizer, stage, profile, progress),
        "generations": None, "repetition": None, "grammar": None, "consistency": None,
        "instructions": None, "qa": None, "judge": None, "comparison": None, "learning_order": None,
    }
    laps.lap("perplexity")
    if stage == "finetune":
        report["instructions"] = _paper_instructions(model, tokenizer, decoding, device, profile.data.position_offset)
        if profile.data.instructions == "embedded":
            records = load_instructions(profile.data)[1][:4 * samples]
            report["qa"] = qa_accuracy(model, tokenizer, records, position_offset=profile.data.position_offset,
                                       device=device, progress=progress)
        laps.lap("instructions")

    generations, grammar, consistency = story_generations(
        model, tokenizer, profile.data.corpus_seed, samples, decoding, device, progress)
    report.update(generations=generations, grammar=grammar, consistency=consistency,
                  repetition=repetition_table({"greedy": [s["greedy"] for s in generations["stories"]],
                                               "sampled": [s["sampled"] for s in generations["stories"]]}))
    laps.lap("generations")
    if judge:
        report["judge"] = _judge(generations, judge_model, run_dir)
        laps.lap("judge")
    if compare:
        report["comparison"] = _comparison(model, tokenizer, compare, stage, generations, profile, samples,
                                           decoding, judge, judge_model, run_dir, device, progress)
        laps.lap("comparison")
    if learning_order:
        report["learning_order"] = learning_order_report(run_dir, stage, profile, seed, device, progress,
                                                         order_prompts, order_stories)
        laps.lap("learning_order")
    return _write(report, run_dir, laps)


def _evaluation_profile(run_dir: Path, record: RunRecord | None, profile: Profile | None,
                        other_settings: bool) -> tuple[Profile, list[str]]:
    """The run's own settings, or ``profile`` where it differs only in device or on purpose (then named)."""
    if record is None or profile is None:
        return profile or run_profile(run_dir), []
    trained, asked = record.profile, profile.to_dict()
    changed = [d for d in setting_differences(trained, asked) if not d.startswith("device:")]
    if changed and not other_settings:
        raise ConfigError(f"run {str(run_dir)!r} was trained with other settings than the ones given "
                          f"({'; '.join(changed[:3])}{'; ...' if len(changed) > 3 else ''}); evaluate it with its "
                          "own (no --profile/--set) or pass --other-settings (other_settings=True) to do it on purpose")
    return profile, changed


def _perplexity(model, tokenizer, stage: str, profile: Profile, progress: bool) -> Perplexity:
    """Validation perplexity on what the stage trained on: stories, or held-out instructions' responses."""
    if stage == "finetune":
        validation = finetuning_examples(profile.data, tokenizer)[1]
        measured = perplexity(model, validation, batch_size=profile.finetune.eval_batch_size, progress=progress)
        return {**measured, "data": "held-out instructions", "examples": len(validation)}
    blocks = pretraining_blocks(profile.data, "validation", tokenizer, progress=progress)
    measured = perplexity(model, blocks, batch_size=profile.pretrain.eval_batch_size, progress=progress)
    return {**measured, "data": "validation stories", "blocks": len(blocks)}


def _paper_instructions(model, tokenizer, decoding: Decoding, device: str, offset: int) -> list[dict[str, str | None]]:
    """The paper's two Alpaca instructions (section 5.3), answered greedily and by sampling, where the run reads them."""
    names = list(PAPER_INSTRUCTIONS)
    prompts = [model_prompt(PAPER_INSTRUCTIONS[k]) for k in names]
    greedy = generate(model, tokenizer, prompts, decoding.greedy(), position_offset=offset, device=device,
                      progress=False)
    sampled = generate(model, tokenizer, prompts, decoding.sampled(), position_offset=offset, device=device,
                       progress=False)
    return [{"name": n, "prompt": p, "greedy": g, "sampled": s} for n, p, g, s in zip(names, prompts, greedy, sampled)]


def _judge(generations: dict, judge_model: str, run_dir: Path) -> dict[str, Any]:
    """Grades of the greedy continuations of held-out beginnings, or why there are none."""
    items = [(s["beginning"], s["greedy"]) for s in generations["stories"]]
    grades = judge_many(items, model=judge_model, cache_dir=run_dir / "judge-cache")
    if not grades:
        return {"skipped": "no judge configured (OPENAI_API_KEY / OPENAI_BASE_URL)"}
    return {"summary": summarise(grades), "grades": [asdict(g) for g in grades]}


def _comparison(model, tokenizer, compare: str, stage: str, generations: dict, profile: Profile, samples: int,
                decoding: Decoding, judge: bool, judge_model: str, run_dir: Path, device: str,
                progress: bool) -> dict[str, Any]:
    """This run beside ``compare`` on the same stories and prompts, or why that could not be done."""
    loaded = load_comparison(compare)
    if loaded is None:
        return {"skipped": f"{compare!r} could not be loaded"}
    texts = load_stories(profile.data, "validation")[:8 * samples]
    prompts = comparison_prompts(stage, generations)
    return compare_models({"this run": (model, tokenizer), compare: loaded}, texts, prompts,
                          decoding=decoding, judge=judge and judge_available(),
                          judge_model=judge_model, judge_cache=run_dir / "judge-cache", device=device,
                          progress=progress)


def comparison_prompts(stage: str, generations: dict) -> list[str]:
    """What both models of a comparison are asked: story openings, or the paper's instructions as a model reads them."""
    if stage == "pretrain":
        return [PAPER_STORY_PROMPT] + [s["beginning"] for s in generations["stories"]]
    return [model_prompt(record) for record in PAPER_INSTRUCTIONS.values()]


def _write(report: dict[str, Any], run_dir: Path, laps: _Laps) -> EvaluationReport:
    report["elapsed_s"] = laps.total()
    json_path, markdown_path = run_dir / EVALUATION, run_dir / EVALUATION_MARKDOWN
    report["json_path"], report["markdown_path"] = str(json_path), str(markdown_path)
    write_text(json_path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    write_text(markdown_path, evaluation_markdown(report))
    return report
