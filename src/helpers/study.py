"""A study longer than a lesson: can a model of the paper's shape learn story question answering?

The lesson's finetuning is a few hundred steps, enough to learn the form of an answer. The study trains the same
shape (width 64, 6 layers, 8 heads) much longer (an hour or two on a 2-core CPU): a longer pretraining, then a long
finetuning on many more story questions, each yes/no answered with what it asks about, the verdict and the fact that
decides it (the echoed way of :data:`helpers.lengths.FINETUNINGS`, whose first run scored highest), with a
checkpoint every 150 steps. It then measures exact answers per kind at every checkpoint, on the questions about
held-out stories, against baselines taken from the training questions, and writes the figure and its numbers to the
figures folder (``study_answers.png`` and ``.json``), with the learning order of its pretraining
(``study_learning_order.png`` and ``.json``). How long it took is a measurement of the machine, not a result of the
study: it goes to ``benchmarks/results/study-timing.json`` with the machine named, and the committed figures stay
the same on every rerun. ``python -m helpers study`` (``make study``) runs it; it is not part of the report job.

Story QA needs a model that copies from its context (:mod:`helpers.copying`).
:func:`run_arms` trains the pretraining arms of :data:`PRETRAINING_ARMS`,
each one change away from the lesson profile, and writes their copying
probe, failures included, as a table (``study_arms.json`` and ``.md``):
the record of which recipes were tried and what each one did.
:func:`run_repeat_arms` trains fresh models on random repeats alone, of one
length or of many, and follows the probe as they train (``study_repeats``):
repeats of one length teach mostly where the source of a repeat of that
length sits, which the probe's shifted variant exposes; repeats of many
lengths, trained long enough, teach copying itself, after a long plateau.
:func:`run_copier_then_stories` asks whether that skill survives stories:
it pretrains the lesson profile from such a copier and from scratch, and
probes both at every checkpoint (``study_copier_stories``).
"""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from tqdm.auto import trange
from transformers import AutoTokenizer

from .config import get_profile
from .copying import SHIFT_GAP, CopyingOracle, copying_probe, held_out_probe, repeated_random, saved_beyond_control
from .evaluation_plots import (
    answer_curve_figure, copier_stories_figure, copying_arms_figure, learning_order_figure, repeat_arms_figure,
)
from .devices import describe_machine
from .learning_order import answer_curve, learning_order
from .model import build_model, load_model
from .plots import close
from .run_setup import save_model_files
from .runs import model_stages, read_metrics, read_run_record, tokens_at, write_bytes, write_json
from .stories import corpus
from .tokenizer import profile_tokenizer
from .train import ensure_run

__all__ = ["STUDY_SETTINGS", "PRETRAINING_ARMS", "REPEAT_ARMS", "run_study", "run_arms", "write_timing",
           "repeat_batch", "train_on_repeats", "run_repeat_arms", "COPIER", "COPIER_ARMS", "copier_arm_folders",
           "ensure_copier", "run_copier_then_stories", "probed_curve", "finetune_and_ask"]

# On top of the lesson profile (its tokenizer, 288-token blocks, no dropout): what the study changes.
# Answering from the story needs a model that copies from its context; the copying probe of the learning
# order says whether this pretraining taught it (in the committed study it did not: study_arms.md). The
# finetuning is the echoed way of helpers.lengths.FINETUNINGS (study_finetunings.md): 3000 steps, each yes/no
# answered with what it asks about echoed, then the verdict and the fact that decides it; every checkpoint kept.
STUDY_SETTINGS: dict[str, Any] = {
    "data.train_stories": 60_000,
    "pretrain.max_steps": 3500,
    "pretrain.save_every": 500,
    "pretrain.keep_checkpoints": 8,
    "data.instruction_limit": 60_000,
    "data.yes_no_fact": "asked",
    "finetune.max_steps": 3000,
    "finetune.learning_rate": 2e-3,
    "finetune.log_every": 50,
    "finetune.eval_every": 150,
    "finetune.save_every": 150,
    "finetune.keep_checkpoints": 20,
}


# Pretraining recipes tried for copying, each on top of the lesson profile (width 64, 6 layers, 8 heads).
# Copy drills: data.copy_share of the training blocks are random spans written twice (helpers.data).
_LONGER = {"pretrain.max_steps": 3000, "pretrain.save_every": 500, "data.train_stories": 60_000}
PRETRAINING_ARMS: dict[str, dict[str, Any]] = {
    "lesson profile": {},
    "drills 25%": {"data.copy_share": 0.25},
    "drills 25%, 3x longer": {"data.copy_share": 0.25, **_LONGER},
    "drills 50%, 3x longer": {"data.copy_share": 0.5, **_LONGER},
    "drills 50%, 3x longer, 128-token blocks": {"data.copy_share": 0.5, "data.block_size": 128,
                                                "pretrain.batch_size": 16, **_LONGER},
}

# Random repeats alone, no stories (train_on_repeats): the range each batch's length is drawn from, and how
# long each arm trains. The rate is constant, so a shorter run of the same lengths is a prefix of a longer one.
REPEAT_ARMS: dict[str, dict[str, Any]] = {
    "one length (50)": {"lengths": (50, 50), "steps": 1200},
    "lengths 20 to 80": {"lengths": (20, 80), "steps": 6000},
}


# A copier first, then stories: a fresh model trained on random repeats of many lengths (train_on_repeats) for
# longer than the plateau before its jump lasted in study_repeats, then pretrained on stories like the lesson's model.
COPIER: dict[str, Any] = {"lengths": (20, 80), "steps": 4500}

# Then stories, each arm on top of the lesson profile (and the command's --set): where it starts ("copier", or None
# for a fresh model), what it changes in pretraining and in the lesson's finetuning after it, and the run folders of
# both in the study's out folder (the finetuning's: the pretraining's with "-finetune" unless named). Arms that name
# one pretraining folder share that run, so they must start and pretrain alike. The lesson's recipe wiped the
# copier's skill out within 100 steps; the next two arms ask whether copy drills kept in the data, or a three times
# lower peak rate, let it survive; the fifth also mixes in the training questions with their answers
# (data.qa_share), so that answering is learned while the drills keep copying alive. The lesson's finetuning wiped
# copying out again unless drills stayed in its data too (the next three arms; the last of them finetunes as long as
# the study's main finetuning); the last two also make 35% of the finetuning examples answer-dense (a story
# once, then many of its questions answered). One run per arm: in the committed table drills kept copying alive,
# from a copier retrained on another machine they did not (figures/copier-replication), nor in any of the four
# runs from two more copiers that helpers.survival counts (figures/study_copier_survival.md).
_DRILLS, _QA = {"data.copy_share": 0.25}, {"data.copy_share": 0.25, "data.qa_share": 0.25}
_KEEP_DRILLS, _DENSE = {"data.finetune_copy_share": 0.25}, {"data.finetune_copy_share": 0.25,
                                                           "data.finetune_dense_share": 0.35}
_LONG_FINETUNING = {"finetune.max_steps": 1500, "finetune.save_every": 500, "finetune.eval_every": 250}
COPIER_ARMS: dict[str, dict[str, Any]] = {
    "from the copier": {"start": "copier", "pretrain": {}, "finetune": {}, "folder": "copier-stories"},
    "from scratch": {"start": None, "pretrain": {}, "finetune": {}, "folder": "scratch-stories"},
    "from the copier, copy drills 25%": {"start": "copier", "pretrain": _DRILLS, "finetune": {},
                                         "folder": "copier-drills-stories"},
    "from the copier, peak rate 1e-3": {"start": "copier", "pretrain": {"pretrain.learning_rate": 1e-3},
                                        "finetune": {}, "folder": "copier-slow-stories"},
    "from the copier, copy drills and questions 25% each": {"start": "copier", "pretrain": _QA, "finetune": {},
                                                            "folder": "copier-qa-stories"},
    "from the copier, copy drills 25% in finetuning too": {
        "start": "copier", "pretrain": _DRILLS, "finetune": _KEEP_DRILLS, "folder": "copier-drills-stories",
        "finetuned": "copier-drills-stories-drills-finetune"},
    "from the copier, copy drills and questions 25% each, drills in finetuning too": {
        "start": "copier", "pretrain": _QA, "finetune": _KEEP_DRILLS, "folder": "copier-qa-stories",
        "finetuned": "copier-qa-stories-drills-finetune"},
    "from the copier, copy drills and questions 25% each, drills in finetuning too, 1500 finetuning steps": {
        "start": "copier", "pretrain": _QA, "finetune": {**_KEEP_DRILLS, **_LONG_FINETUNING},
        "folder": "copier-qa-stories", "finetuned": "copier-qa-stories-drills-long-finetune"},
    "from the copier, copy drills and questions 25% each, answer-dense and drills in finetuning": {
        "start": "copier", "pretrain": _QA, "finetune": _DENSE, "folder": "copier-qa-stories",
        "finetuned": "copier-qa-stories-dense-finetune"},
    "from the copier, copy drills and questions 25% each, answer-dense and drills in finetuning, 1500 steps": {
        "start": "copier", "pretrain": _QA, "finetune": {**_DENSE, **_LONG_FINETUNING}, "folder": "copier-qa-stories",
        "finetuned": "copier-qa-stories-dense-long-finetune"},
}


def copier_arm_folders(arms: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[str, str]]:
    """Each arm's pretraining and finetuning folder names; arms that share a pretraining folder must start and
    pretrain alike (the run is trained once), and no two arms may share a finetuning folder."""
    pretrainings: dict[str, tuple] = {}
    out = {}
    for name, arm in arms.items():
        recipe = (arm["start"], dict(arm["pretrain"]))
        if pretrainings.setdefault(arm["folder"], recipe) != recipe:
            raise ValueError(f"copier arm {name!r}: folder {arm['folder']!r} holds another arm's pretraining "
                             f"(start {pretrainings[arm['folder']][0]!r}, settings {pretrainings[arm['folder']][1]}); "
                             "name a folder of its own")
        out[name] = (arm["folder"], arm.get("finetuned", arm["folder"] + "-finetune"))
    tuned = [folder for _, folder in out.values()]
    if len(set(tuned)) < len(tuned) or set(tuned) & set(pretrainings) or "copier" in set(tuned) | set(pretrainings):
        raise ValueError(f"copier arms: every finetuning needs a folder of its own, apart from the pretrainings "
                         f"and the copier; got {tuned}")
    return out


def _setting(profile, key: str) -> Any:
    """A setting's value as the profile holds it (typed, whether it came from code or the command line)."""
    section, _, name = key.partition(".")
    return getattr(getattr(profile, section), name) if name else getattr(profile, section)


def run_study(out_dir: str | Path, figures_dir: str | Path, *, overrides: Mapping[str, Any] | None = None,
              stories: int = 64, prompts: int = 200, progress: bool = True,
              timing: str | Path | None = None) -> dict[str, Any]:
    """Pretrain and finetune with :data:`STUDY_SETTINGS`, then score answers at every finetuning checkpoint.

    Runs that already finished are reused (and half-done ones resumed), so
    rerunning the study only measures again. ``stories`` held-out stories
    give the questions and the cloze items, ``prompts`` the continuations of
    the learning order. Returns the answer curve with the settings and the
    training times; the figure and its numbers go to
    ``figures_dir / "study_answers.png"`` and ``.json``, the times to ``timing``
    (default: ``benchmarks/results/study-timing.json`` beside ``figures_dir``).
    """
    profile = get_profile("lesson", {**STUDY_SETTINGS, **(overrides or {})})
    settings = {key: _setting(profile, key) for key in {**STUDY_SETTINGS, **(overrides or {})}}
    out = Path(out_dir)
    started = time.perf_counter()
    pre = ensure_run("pretrain", profile, out / "pretrain", progress=progress)
    fin = ensure_run("finetune", profile, out / "finetune", init=out / "pretrain", progress=progress)
    trained = time.perf_counter() - started
    curve = answer_curve(out / "finetune", stories=stories, profile=profile, progress=progress)
    order = learning_order(out / "pretrain", prompts=prompts, cloze_stories=stories, profile=profile,
                           progress=progress)
    close(learning_order_figure(order, title="The study's pretraining, checkpoint by checkpoint",
                                path=Path(figures_dir) / "study_learning_order.png"))
    result = {**curve, "settings": settings,
              "tokens": {"pretraining": pre.tokens, "finetuning": fin.tokens},
              "eval_loss": {"pretraining": pre.eval_loss, "finetuning": fin.eval_loss}}
    figure = Path(figures_dir) / "study_answers.png"
    close(answer_curve_figure(result, title="The study: exact answers along a long finetuning", path=figure))
    minutes = {"pretraining": pre.elapsed_s / 60, "finetuning": fin.elapsed_s / 60,
               "measuring": (time.perf_counter() - started - trained) / 60}
    timing = Path(figures_dir).parent / "benchmarks" / "results" / "study-timing.json" if timing is None else timing
    record = read_run_record(out / "pretrain")
    write_timing(timing, minutes, settings=settings, device=record.device if record else None)
    return {**result, "minutes": minutes, "figure": str(figure), "timing": str(timing)}


def write_timing(path: str | Path, minutes: Mapping[str, float], *, settings: Mapping[str, Any],
                 device: str | None = None) -> Path:
    """The study's wall-clock minutes, with the machine and the date, as a benchmark result of their own.

    Kept out of the figures' JSON, which must read the same on every rerun.
    """
    write_json(path, {"what": "python -m helpers study: wall-clock minutes of each part",
                      "date": datetime.date.today().isoformat(), "machine": describe_machine(device),
                      "settings": dict(settings), "minutes": {k: round(v, 2) for k, v in minutes.items()}})
    return Path(path)


def run_arms(out_dir: str | Path, figures_dir: str | Path, *, arms: Mapping[str, Mapping[str, Any]] | None = None,
             stories: int = 60, progress: bool = True) -> dict[str, Any]:
    """Pretrain every arm (finished runs are reused) and measure copying at its final model.

    Each arm is ``{"section.key": value}`` on top of the lesson profile, in
    ``out_dir / "arms" / <n>`` (its place in the list). The rows hold the
    settings, steps, tokens, validation loss, training minutes (from the run's
    record) and the copying probe on ``stories`` held-out stories; beside them
    the untrained model and the copying rule, the probe's floor and ceiling.
    Drawn in ``figures_dir / "study_arms.png"`` (numbers in ``.json``), and a Markdown table in ``.md``.
    """
    arms = PRETRAINING_ARMS if arms is None else arms
    if not arms:
        raise ValueError("run_arms needs at least one arm")
    rows = []
    for n, (name, overrides) in enumerate(arms.items()):
        profile = get_profile("lesson", {"pretrain.keep_checkpoints": 0, **overrides})
        folder = Path(out_dir) / "arms" / str(n) / "pretrain"
        result = ensure_run("pretrain", profile, folder, progress=progress)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        facts = corpus("validation", stories, seed=profile.data.corpus_seed)
        rows.append({"arm": name, "settings": dict(overrides), "steps": result.steps, "tokens": result.tokens,
                     "eval_loss": result.eval_loss, "minutes": round(result.elapsed_s / 60, 1),
                     "copying": copying_probe(load_model(folder), tokenizer, facts, profile.data.block_size)})
    lesson = get_profile("lesson")
    lines = {"untrained": copying_probe(build_model(lesson.model, seed=lesson.pretrain.seed), tokenizer, facts,
                                        lesson.data.block_size),
             "the copying rule": copying_probe(CopyingOracle(len(tokenizer)), tokenizer, facts, lesson.data.block_size)}
    record = read_run_record(folder)
    table = {"what": "pretraining arms on top of the lesson profile, each measured by helpers.copying at its final model",
             "machine": describe_machine(record.device if record else None), "stories": stories,
             "rows": rows, "lines": lines}
    return _write_table(table, Path(figures_dir) / "study_arms",
                        copying_arms_figure(table, title="Pretraining arms: does the model copy from its context?",
                                            path=Path(figures_dir) / "study_arms.png"), _arms_markdown(table))


def _write_table(table: dict[str, Any], stem: Path, figure, markdown: str) -> dict[str, Any]:
    """An arms table's three files: the figure (already saved beside its JSON), the Markdown; returns the table."""
    close(figure)
    write_bytes(stem.with_suffix(".md"), markdown.encode())
    return {**table, "path": str(stem.with_suffix(".json"))}


def _arms_markdown(table: Mapping[str, Any]) -> str:
    """The arms as a Markdown table: settings, cost, and what each saves by copying (nats)."""
    head = ("| arm | settings | steps | minutes | validation loss | random repeat: first / repeat "
            "| saved beyond the control | the same, shifted | hero: first / later mentions | far context |")
    out = [head, "|" + "---|" * 10]
    entries = [(r["arm"], r) for r in table["rows"]] + [(name, {"copying": c}) for name, c in table["lines"].items()]
    for name, row in entries:
        c = row["copying"]
        rr, names, far = c["repeated_random"], c["name_mentions"], c["far_context"]
        settings = ", ".join(f"{k}={v}" for k, v in row.get("settings", {}).items()) or "–"
        cost = [str(row.get("steps", "–")), str(row.get("minutes", "–")),
                f"{row['eval_loss']:.3f}" if row.get("eval_loss") is not None else "–"]
        out.append(f"| {name} | {settings} | {' | '.join(cost)} | {rr['first']:.2f} / {rr['repeat']:.2f} "
                   f"| {saved_beyond_control(rr):+.2f} | {saved_beyond_control(rr, 'shifted_gain'):+.2f} "
                   f"| {names['first']:.2f} / {names['later']:.2f} "
                   f"| {far['value']:+.3f} |")
    return "\n".join(out) + "\n"


def repeat_batch(pool: torch.Tensor, start_id: int, batch_size: int, lengths: tuple[int, int],
                 generator: torch.Generator) -> torch.Tensor:
    """Rows of ``start_id``, L tokens drawn from ``pool``, the same L again; one L per batch, drawn from ``lengths``."""
    length = int(torch.randint(lengths[0], lengths[1] + 1, (1,), generator=generator))
    once = pool[torch.randint(len(pool), (batch_size, length), generator=generator)]
    return torch.cat([torch.full((batch_size, 1), start_id), once, once], dim=1)


def train_on_repeats(lengths: tuple[int, int], *, steps: int = 1200, batch_size: int = 32,
                     learning_rate: float = 1e-3, probe_every: int = 300, probe_lengths: Sequence[int] = (30, 50, 70),
                     gap: int = SHIFT_GAP, seed: int = 0, save_to: str | Path | None = None,
                     progress: bool = True) -> list[dict[str, Any]]:
    """Train a fresh model of the lesson's shape on random repeats alone, probing it every ``probe_every`` steps.

    The purest copying lesson there is: the first writing is noise, the second
    is all copy. A constant rate and AdamW with the lesson pretraining's other
    settings. Each probe row holds, for every length in ``probe_lengths``,
    the nats a repeat saves beyond its control (``saved``) and the same with
    ``gap`` fresh tokens between the writings (``shifted``): a copier saves on both,
    a reader of a fixed distance back only where the distance is the one it learned.
    With ``save_to``, the trained model and the lesson's tokenizer are saved
    there, a folder pretraining can start from (``init``).
    """
    profile = get_profile("lesson")
    cfg, opt = profile.model, profile.pretrain
    model = build_model(cfg, seed=seed).train()
    pool = torch.tensor([i for i in range(cfg.vocab_size) if i != cfg.eos_token_id])
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=opt.weight_decay,
                                  betas=(opt.adam_beta1, opt.adam_beta2), eps=opt.adam_epsilon)
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for step in trange(1, steps + 1, disable=not progress, desc=f"repeats of {lengths[0]}-{lengths[1]} tokens"):
        ids = repeat_batch(pool, cfg.eos_token_id, batch_size, lengths, generator)
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), opt.max_grad_norm)
        optimizer.step()
        if step % probe_every == 0 or step == steps:
            model.eval()
            probes = {n: repeated_random(model, pool, cfg.eos_token_id, length=n, gap=gap, seed=seed)
                      for n in probe_lengths}
            rows.append({"step": step, "loss": float(loss.detach()),
                         "saved": {str(n): saved_beyond_control(p) for n, p in probes.items()},
                         "shifted": {str(n): saved_beyond_control(p, "shifted_gain") for n, p in probes.items()}})
            model.train()
    if save_to is not None:
        save_model_files(model.eval(), profile_tokenizer(profile), Path(save_to))
    return rows


def run_repeat_arms(figures_dir: str | Path, *, arms: Mapping[str, Mapping[str, Any]] | None = None,
                    steps: int | None = None, batch_size: int = 32, learning_rate: float = 1e-3, probe_every: int = 300,
                    probe_lengths: Sequence[int] = (30, 50, 70), gap: int = SHIFT_GAP,
                    progress: bool = True) -> dict[str, Any]:
    """:func:`train_on_repeats` for each arm of :data:`REPEAT_ARMS`; curves to ``study_repeats.png``/``.json``/``.md``.

    ``steps``, when given, replaces every arm's own number of steps.
    """
    training = {"batch_size": batch_size, "learning_rate": learning_rate, "probe_every": probe_every,
                "probe_lengths": list(probe_lengths), "gap": gap}
    arms = REPEAT_ARMS if arms is None else arms
    if not arms:
        raise ValueError("run_repeat_arms needs at least one arm")
    rows = []
    for name, arm in arms.items():
        lengths, arm_steps = tuple(arm["lengths"]), arm["steps"] if steps is None else steps
        curve = train_on_repeats(lengths, steps=arm_steps, progress=progress, **training)
        rows.append({"arm": name, "lengths": list(lengths), "steps": arm_steps, "curve": curve})
    table = {"what": "fresh lesson-shaped models trained on random repeats alone; nats a repeat saves beyond its "
                     "control, plain and shifted by fresh tokens, at several lengths", "settings": training, "rows": rows}
    title = "Random repeats alone: does the model learn to copy, or to read a fixed distance back?"
    return _write_table(table, Path(figures_dir) / "study_repeats",
                        repeat_arms_figure(table, title=title, path=Path(figures_dir) / "study_repeats.png"),
                        _repeats_markdown(table))


def ensure_copier(out_dir: str | Path, copier: Mapping[str, Any] | None = None, *, seed: int = 0,
                  progress: bool = True) -> tuple[Path, list[dict[str, Any]]]:
    """The copier of ``seed`` in ``out_dir`` (folder ``copier``; ``copier-seed{seed}`` for seeds other than 0) and
    its probed curve, trained with :func:`train_on_repeats` on ``copier``'s lengths and steps (:data:`COPIER`)
    unless already there: its curve file is written once the copier is saved."""
    copier, name = COPIER if copier is None else copier, "copier" if seed == 0 else f"copier-seed{seed}"
    folder, curve = Path(out_dir) / name, Path(out_dir) / f"{name}_curve.json"
    if not curve.exists():
        write_json(curve, train_on_repeats(tuple(copier["lengths"]), steps=copier["steps"], seed=seed, save_to=folder,
                                           progress=progress))
    return folder, json.loads(curve.read_text())


def run_copier_then_stories(out_dir: str | Path, figures_dir: str | Path, *, copier: Mapping[str, Any] | None = None,
                            arms: Mapping[str, Mapping[str, Any]] | None = None,
                            overrides: Mapping[str, Any] | None = None, stories: int = 60, question_stories: int = 64,
                            progress: bool = True) -> dict[str, Any]:
    """Does copying learned on random repeats survive pretraining on stories? Every arm probed at every checkpoint.

    The copier (:data:`COPIER`: lengths and steps of :func:`train_on_repeats`)
    is saved in ``out_dir / "copier"`` and reused when there. Each arm of
    :data:`COPIER_ARMS` then pretrains on stories, from the copier or from
    scratch, with the lesson profile, ``overrides`` and its pretraining
    settings, then finetunes the lesson's way with its finetuning settings
    too (:func:`copier_arm_folders`: arms may share a pretraining; finished
    runs reused). Each arm's curve holds, at its first model (step 0) and
    every saved model, the tokens seen, the validation loss where one was
    logged and the copying probe on ``stories`` held-out stories;
    ``finetuned`` holds the same probe after finetuning from the arm's last
    model, and its exact answers per kind (who by role) to the questions
    about ``question_stories`` held-out stories.
    Written to ``study_copier_stories.png``, ``.json`` and ``.md`` in ``figures_dir``.
    """
    copier, arms = COPIER if copier is None else copier, COPIER_ARMS if arms is None else arms
    if not arms:
        raise ValueError("run_copier_then_stories needs at least one arm")
    out, profile = Path(out_dir), get_profile("lesson", overrides)
    start, copier_curve = ensure_copier(out, copier, progress=progress)
    tokenizer, probe = profile_tokenizer(profile), held_out_probe(profile, stories)
    rows, curves = [], {}  # curves: each pretraining folder's probed curve, measured once for the arms sharing it
    for name, (pretrained, tuned) in copier_arm_folders(arms).items():
        arm = arms[name]
        init, folder = start if arm["start"] == "copier" else None, out / pretrained
        arm_profile = get_profile("lesson", {**(overrides or {}), **arm["pretrain"]})
        ensure_run("pretrain", arm_profile, folder, init=init, progress=progress)
        if pretrained not in curves:
            curves[pretrained] = probed_curve(folder, load_model(init) if init else build_model(
                profile.model, seed=profile.pretrain.seed), probe)
        tuned_profile = get_profile("lesson", {**(overrides or {}), **arm["pretrain"], **arm["finetune"]})
        rows.append({"arm": name, "start": arm["start"], "pretraining": dict(arm["pretrain"]),
                     "finetuning": dict(arm["finetune"]), "curve": curves[pretrained],
                     "finetuned": finetune_and_ask(folder, out / tuned, tuned_profile, probe, question_stories,
                                                   progress)})
    table = {"what": "pretraining on stories from a copier trained on random repeats, and from scratch; the copying "
                     "probe (helpers.copying) at every saved model",
             "copier": {"lengths": list(copier["lengths"]), "steps": copier["steps"], "curve": copier_curve},
             "settings": {key: _setting(profile, key) for key in overrides or {}}, "stories": stories, "rows": rows,
             "lines": {"the copying rule": probe(CopyingOracle(len(tokenizer)))}}
    title = "Copying learned on random repeats, then pretraining on stories: does it survive?"
    return _write_table(table, Path(figures_dir) / "study_copier_stories",
                        copier_stories_figure(table, title=title, path=Path(figures_dir) / "study_copier_stories.png"),
                        _copier_markdown(table))


def probed_curve(folder: Path, first: torch.nn.Module,
                 probe: Callable[[torch.nn.Module], dict[str, dict]]) -> list[dict[str, Any]]:
    """A pretraining's first model (step 0) and every saved one: tokens seen, validation loss where one was logged,
    and the copying probe."""
    records = read_metrics(folder)
    losses = {r["step"]: r["eval_loss"] for r in records if r.get("eval_loss") is not None}
    curve = [{"step": 0, "tokens": 0, "eval_loss": None, "copying": probe(first)}]
    return curve + [{"step": step, "tokens": tokens_at(records, step), "eval_loss": losses.get(step),
                     "copying": probe(load_model(saved))} for step, saved in model_stages(folder)]


def finetune_and_ask(pretrained: Path, folder: Path, profile, probe: Callable[[torch.nn.Module], dict[str, dict]],
                     stories: int, progress: bool) -> dict[str, Any]:
    """Finetune from a pretrained run into ``folder`` (reused when finished): the copying probe, and exact answers
    per kind (``before``: the pretrained model's) about ``stories`` held-out stories, baselines and readers beside."""
    ensure_run("finetune", profile, folder, init=pretrained, progress=progress)
    # no finetuning saves more checkpoints than steps: thinned by max_steps, only its start and its end are asked
    answers = answer_curve(folder, stories=stories, every=profile.finetune.max_steps, profile=profile,
                           progress=progress)
    return {"copying": probe(load_model(folder)), "answers": answers["rows"][-1], "before": answers["rows"][0],
            "baselines": answers["baselines"], "readers": answers["readers"], "questions": answers["questions"]}


def _copier_markdown(table: Mapping[str, Any]) -> str:
    """Each arm at every probed model: steps, validation loss and what copying saves (nats), then after finetuning;
    the copying rule last. Then each finetuned arm's exact answers per kind, with the baselines and trivial readers."""
    out = ["| arm | step | validation loss | random repeat: saved beyond the control | the same, shifted "
           "| hero: first - later mentions | far context |", "|" + "---|" * 7]
    for row in table["rows"]:
        for point in row["curve"]:
            loss = f"{point['eval_loss']:.3f}" if point.get("eval_loss") is not None else "–"
            out.append(f"| {row['arm']} | {point['step']} | {loss} | {_savings(point['copying'])} |")
    tuned = [row for row in table["rows"] if "finetuned" in row]
    out += [f"| {row['arm']}, finetuned | – | – | {_savings(row['finetuned']['copying'])} |" for row in tuned]
    out += [f"| {name} | – | – | {_savings(c)} |" for name, c in table["lines"].items()]
    if tuned:
        kinds = list(tuned[0]["finetuned"]["baselines"]) + ["all"]
        out += ["", "Exact answers (95% interval) before and after the lesson's finetuning; the baseline, then a "
                    "trivial reader where there is one:", "", "| arm | " + " | ".join(kinds) + " |", "|" + "---|" * (len(kinds) + 1)]
        for row, when in [(row, when) for row in tuned for when in ("before", "answers")]:
            got, name = row["finetuned"][when], row["arm"] + (", before finetuning" if when == "before" else "")
            out.append(f"| {name} | " + " | ".join(
                f"{got[k]['share']:.0%} ({got[k]['low']:.0%}-{got[k]['high']:.0%})" for k in kinds) + " |")
        lines = tuned[0]["finetuned"]
        out.append("| baseline | " + " | ".join(f"{lines['baselines'][k]['share']:.0%}" if k in lines["baselines"]
                                               else "–" for k in kinds) + " |")
        out.append("| trivial reader | " + " | ".join(f"{lines['readers'][k]['share']:.0%}" if k in lines["readers"]
                                                     else "–" for k in kinds) + " |")
    return "\n".join(out) + "\n"


def _savings(c: Mapping[str, Any]) -> str:
    """The copying probe's four savings as table cells: repeat, shifted repeat (both beyond the control), names, far."""
    rr, names = c["repeated_random"], c["name_mentions"]
    return (f"{saved_beyond_control(rr):+.2f} | {saved_beyond_control(rr, 'shifted_gain'):+.2f} "
            f"| {names['first'] - names['later']:+.2f} | {c['far_context']['value']:+.3f}")


def _repeats_markdown(table: Mapping[str, Any]) -> str:
    """Each arm's last probe: nats saved beyond the control at each length, plain and shifted."""
    lengths = list(table["rows"][0]["curve"][-1]["saved"])
    head = "| arm | lengths trained | steps | " + " | ".join(
        f"saved at {n} | shifted at {n}" for n in lengths) + " |"
    out = [head, "|" + "---|" * (3 + 2 * len(lengths))]
    for row in table["rows"]:
        last = row["curve"][-1]
        cells = [f"{last['saved'][n]:+.2f} | {last['shifted'][n]:+.2f}" for n in lengths]
        out.append(f"| {row['arm']} | {row['lengths'][0]}-{row['lengths'][1]} | {last['step']} | "
                   + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"
