"""Command line: ``python -m helpers {pretrain,finetune,evaluate,config} ...``.

Every command takes ``--profile`` and any number of ``--set section.key=value``
overrides; errors in flags, settings (unknown keys, wrong types, values out
of range, settings that contradict each other, a device this machine lacks),
data or run folders are reported in one line (exit status 2) before anything
is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from .config import ConfigError, Profile, apply_overrides, get_profile, parse_overrides
from .copying import saved_beyond_control
from .evaluate import evaluate_run
from .exercises import AssignError, grade, make_exercises
from .judge import DEFAULT_MODEL
from .lessons import lesson_paths, run_lessons
from .report import write_report
from .runs import RunError, read_run_record, run_profile
from .sources import DataError, check_hub_sources
from .study import COPIER_ARMS, run_arms, run_copier_then_stories, run_repeat_arms, run_study
from . import lengths, survival
from .train import TrainingDiverged, train

__all__ = ["main", "build_parser"]

SET_HELP = ("override one setting, e.g. --set pretrain.max_steps=200 --set model.n_layer=4; "
            "sections: model, data, pretrain, finetune; also device (repeatable)")


PROFILE_HELP = ("named settings: 'lesson' (CPU, minutes, embedded data) or 'paper' "
                "(the paper's exact values, GPU, hub data)")
DATA_HELP = ("a local source: a TinyStories .txt/.json/.jsonl/.parquet file for pretrain, "
             "an alpaca_data.json for finetune (same as --set data.stories=... or data.instructions=...)")


def _common_options(p: argparse.ArgumentParser, *, data: bool = True) -> None:
    """--profile, --set and (for commands that read data) --data."""
    p.add_argument("--profile", default="lesson", choices=["lesson", "paper"], help=PROFILE_HELP + "; default: lesson")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=SET_HELP)
    if data:
        p.add_argument("--data", metavar="PATH", help=DATA_HELP)


def _training_options(p: argparse.ArgumentParser) -> None:
    """What pretrain and finetune share: a run folder, resuming, the engine."""
    _common_options(p)
    p.add_argument("--out", required=True, metavar="DIR", help="run folder to create (or continue with --resume)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint, exactly where it stopped")
    p.add_argument("--engine", choices=["fast", "hf"], default="fast",
                   help="'fast': this package's loop (chunked output layer, DDP under torchrun); "
                        "'hf': transformers.Trainer with the paper's TrainingArguments; default: fast")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_report_command(sub) -> None:
    """`report`: the five lessons headless, then build/report.md."""
    p = sub.add_parser("report", help="run the five lessons headless and write the report",
                       description="Execute notebooks/01-05 in order through papermill (executed copies in "
                                   "build/notebooks/), then write build/report.md from their runs and figures.")
    p.add_argument("--profile", default="lesson", choices=["lesson", "paper"],
                   help="profile injected into every lesson's parameters cell (default: lesson)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a profile setting for every lesson (their 'overrides' parameter), e.g. "
                        "--set pretrain.max_steps=200 (repeatable)")
    p.add_argument("--param", dest="parameters", action="append", default=[], metavar="NAME=VALUE",
                   help="a lesson parameter for every lesson that has it, e.g. --param stories=/data/ts.txt "
                        "--param n_scored=20 (VALUE is read as JSON when it parses, else as text; repeatable)")
    p.add_argument("--notebooks", default="notebooks", metavar="DIR", help="folder of the lessons (default: notebooks)")
    p.add_argument("--out", default="build", metavar="DIR", help="where executed notebooks and report.md go (default: build)")
    p.add_argument("--runs", metavar="DIR", help="where the lessons' runs go (default: ../runs from the notebooks)")
    p.add_argument("--figures", metavar="DIR", help="where the figures go (default: ../figures from the notebooks)")
    p.add_argument("--store", action="store_true",
                   help="write each executed lesson back into the notebooks folder (how the committed lessons "
                        "get their outputs)")


def _add_study_command(sub) -> None:
    """`study`: the longer run of helpers.study."""
    p = sub.add_parser("study", help="a longer pretraining and finetuning: can this model learn story QA?",
                       description="Pretrain and finetune the lesson model much longer, an hour or two on two CPU cores "
                                   "(helpers.study.STUDY_SETTINGS), then score exact answers per kind of question at "
                                   "every finetuning checkpoint; writes study_answers.png and .json to --figures.")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="change a study setting, e.g. --set finetune.max_steps=2000 (repeatable)")
    p.add_argument("--out", default="runs/study", metavar="DIR", help="the study's runs (default: runs/study)")
    p.add_argument("--figures", default="figures", metavar="DIR", help="where the figure goes (default: figures)")
    p.add_argument("--stories", type=int, default=64,
                   help="held-out stories whose questions and cloze blanks are scored (default: 64)")
    p.add_argument("--prompts", type=int, default=200,
                   help="story beginnings continued at each pretraining checkpoint (default: 200)")
    p.add_argument("--arms", action="store_true",
                   help="instead: the pretraining arms of helpers.study.PRETRAINING_ARMS, each measured by the copying "
                        "probe; writes study_arms.json and .md to --figures")
    p.add_argument("--repeats", action="store_true",
                   help="instead: fresh models trained on random repeats alone (helpers.study.REPEAT_ARMS), probed as "
                        "they train; writes study_repeats.json, .png and .md to --figures")
    p.add_argument("--copier", action="store_true",
                   help="instead: a copier trained on random repeats (helpers.study.COPIER), then each arm of "
                        "helpers.study.COPIER_ARMS pretrained on stories (from the copier or from scratch) and probed "
                        "at every checkpoint, then finetuned the lesson's way and asked the questions of --stories "
                        "stories (--set changes the lesson profile of every arm); writes study_copier_stories.json, "
                        ".png and .md to --figures")
    p.add_argument("--arm", dest="copier_arms", action="append", default=[], metavar="NAME",
                   help="with --copier: only this arm of helpers.study.COPIER_ARMS (repeatable; default: every arm)")
    p.add_argument("--survival", action="store_true",
                   help="instead: each recipe of helpers.survival.SURVIVAL pretrained on stories from several copiers "
                        "and with several pretraining seeds, probed at every checkpoint, the runs that kept copying "
                        "counted (--set changes the lesson profile of every run); writes study_copier_survival.json, "
                        ".png and .md to --figures")
    p.add_argument("--copier-seed", dest="copier_seeds", action="append", type=int, default=[], metavar="N",
                   help="with --survival: only the runs from this copier seed (repeatable; default: every seed of "
                        "SURVIVAL), so that processes can share the plan; a last call without it assembles the table")
    p.add_argument("--lengths", action="store_true",
                   help="instead: each pretraining length of helpers.lengths.LENGTHS crossed with each finetuning "
                        "length, on top of the study's settings (and --set), every cell's answers and copying "
                        "measured; the study's own runs are its long x long cell; writes study_lengths.json, .png "
                        "and .md to --figures")
    p.add_argument("--pretrain-steps", dest="pretrain_lengths", action="append", type=int, default=[], metavar="N",
                   help="with --lengths: only the cells of this pretraining length (repeatable; default: every "
                        "length of LENGTHS), so that processes can share the cells; a last call without it assembles "
                        "the table")
    p.add_argument("--finetunings", action="store_true",
                   help="instead: the study's pretrained model finetuned each way of helpers.lengths.FINETUNINGS "
                        "(yes/no answered with its deciding fact, before or after the verdict), each measured like a "
                        "cell of --lengths and compared with the plain finetuning; writes study_finetunings.json, "
                        ".png and .md to --figures")
    p.add_argument("--finetuning", dest="finetuning_names", action="append", default=[], metavar="NAME",
                   help="with --finetunings: only this finetuning (repeatable; default: all), so that processes can "
                        "share them; a last call without it assembles the table")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m helpers`` parser: one subcommand per job, each with its own options."""
    parser = argparse.ArgumentParser(
        prog="python -m helpers",
        description="Train and evaluate the 3.6M-parameter GPT-2 of 'Story-Based QA GPT Model'.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    p = sub.add_parser("pretrain", help="pretrain from scratch on stories",
                       description="Pretrain the profile's GPT-2 from scratch on its story corpus.")
    _training_options(p)
    p = sub.add_parser("finetune", help="instruction-tune a pretrained run",
                       description="Instruction-tune a pretrained run on the profile's instructions.")
    _training_options(p)
    p.add_argument("--init", required=True, metavar="DIR", help="folder of the pretrained run to start from")

    p = sub.add_parser("evaluate", help="perplexity, generations, repetition, judge, gpt2 comparison",
                       description="Evaluate a run folder with the settings it was trained with; "
                                   "writes <run>/eval.json and <run>/eval.md.")
    p.add_argument("--run", required=True, metavar="DIR", help="run folder (or any Hugging Face model folder)")
    p.add_argument("--profile", default=None, choices=["lesson", "paper"],
                   help=PROFILE_HELP + "; default: the run's own settings (lesson for a bare model folder)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=SET_HELP + "; applied on top of the run's settings")
    p.add_argument("--data", metavar="PATH",
                   help="evaluate on this local source instead: stories for a pretraining run, an "
                        "alpaca_data.json for a finetuning run")
    p.add_argument("--other-settings", action="store_true",
                   help="allow settings that differ from the run's in more than device (listed in the report)")
    p.add_argument("--judge", action="store_true",
                   help="grade story completions with an LLM through the openai client "
                        "(needs OPENAI_API_KEY and/or OPENAI_BASE_URL; skipped with one line otherwise)")
    p.add_argument("--judge-model", default=DEFAULT_MODEL, help=f"model name for the judge (default: {DEFAULT_MODEL})")
    p.add_argument("--compare", metavar="MODEL",
                   help="also evaluate this model (hub id or folder), e.g. gpt2; skipped with one line when unreachable")
    p.add_argument("--learning-order", action="store_true",
                   help="measure grammar and consistency at every checkpoint of a pretraining run")
    p.add_argument("--samples", type=int, default=None, help="held-out story beginnings to continue (default: 16)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    _add_report_command(sub)
    _add_study_command(sub)
    p = sub.add_parser("exercises", help="write the student notebooks and autograders (otter assign)",
                       description="Run otter assign on the ten master notebooks: student copies go to "
                                   "notebooks/student/, autograder zips to --out (notebooks/EXERCISES.md).")
    p.add_argument("--out", default="build/exercises", metavar="DIR", help="autograders (default: build/exercises)")
    p = sub.add_parser("grade", help="score a returned notebook with its autograder (otter run)",
                       description="Score each question of a student's notebook with the autograder that "
                                   "make exercises wrote for it; prints one line per question.")
    p.add_argument("submission", help="the returned notebook, e.g. 03_pretraining.ipynb")
    p.add_argument("--autograder", metavar="ZIP", help="default: build/exercises/<notebook>/autograder/*.zip")
    p.add_argument("--pieces-only", action="store_true",
                   help="run only the answer cells (the pieces written inside a lesson: no training runs needed)")
    p.add_argument("--out", default="build/grades", metavar="DIR", help="otter's results.json (default: build/grades)")

    p = sub.add_parser("config", help="print a profile's settings as JSON",
                       description="Print the resolved settings of a profile (after --set overrides).")
    _common_options(p, data=False)
    return parser


def _profile(args: argparse.Namespace, data_key: str | None) -> Profile:
    """The profile with the command's overrides, every setting checked (:mod:`helpers.settings_check`)."""
    overrides = parse_overrides(args.overrides)
    if data_key and args.data:
        overrides[data_key] = args.data
    return get_profile(args.profile, overrides)


def _evaluation_profile(args: argparse.Namespace) -> Profile:
    """The run's own settings (or --profile's), with --set and --data on top."""
    profile = get_profile(args.profile) if args.profile else run_profile(args.run)
    overrides = parse_overrides(args.overrides)
    if args.data:
        record = read_run_record(args.run)
        stage = record.stage if record else "pretrain"
        overrides["data.instructions" if stage == "finetune" else "data.stories"] = args.data
    return apply_overrides(profile, overrides)


def _check_device(profile: Profile) -> None:
    """The profile's device exists on this machine (the profile itself checks only its spelling)."""
    name = profile.device
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.partition(":")[2] or 0)
        if index >= count:
            have = f"{count} CUDA GPU{'s' if count != 1 else ''}" if count else "no CUDA GPU"
            raise ConfigError(f"device={name!r}: this machine has {have}; use 'cpu' or 'auto'")
    elif name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device='mps': this machine has no Apple-silicon GPU (MPS); use 'cpu' or 'auto'")


def _report(args: argparse.Namespace) -> int:
    """Run the lessons, then gather their numbers and figures into one markdown file."""
    notebooks, out = Path(args.notebooks).resolve(), Path(args.out).resolve()
    overrides = parse_overrides(args.overrides)
    parameters = dict(_parameter(item) for item in args.parameters)
    local = {key: parameters[name] for key, name in (("data.stories", "stories"), ("data.instructions", "instructions"))
             if parameters.get(name)}
    check_hub_sources(get_profile(args.profile, {**overrides, **local}).data)  # before any lesson runs
    paths = {key: str(Path(value).resolve()) for key, value in (("runs_dir", args.runs), ("figures_dir", args.figures))
             if value}
    run_lessons(args.profile, notebooks=notebooks, out_dir=out / "notebooks", store=args.store,
                parameters={**parameters, **paths, **({"overrides": overrides} if overrides else {})})
    report = write_report(lesson_paths(paths.get("runs_dir"), paths.get("figures_dir"), base=notebooks),
                          out / "report.md", profile=args.profile)
    print(f"report written to {report}")
    return 0


def _grade(args: argparse.Namespace) -> int:
    """`grade`: one line per question, then the total."""
    autograder = args.autograder or next(iter(sorted(
        Path("build/exercises", Path(args.submission).stem, "autograder").glob("*-autograder_*.zip"))), None)
    if autograder is None:
        raise AssignError(f"no autograder for {args.submission!r} in build/exercises: run make exercises, "
                          "or name one with --autograder")
    scores = grade(args.submission, autograder, args.out, pieces_only=args.pieces_only)
    for name, score in scores.items():
        print(f"{name:32} {score:g}")
    print(f"{'total':32} {sum(scores.values()):g}")
    return 0


def _parameter(item: str) -> tuple[str, object]:
    """``NAME=VALUE`` from ``--param``: VALUE as JSON when it parses (numbers, lists, null), else as text."""
    name, sep, value = item.partition("=")
    if not sep or not name.strip():
        raise ConfigError(f"--param expects NAME=VALUE, got {item!r}")
    try:
        return name.strip(), json.loads(value)
    except json.JSONDecodeError:
        return name.strip(), value


def _share_of(plan: Mapping[str, Any], key: str, chosen: Sequence[Any], flag: str, what: str,
              source: str) -> dict[str, Any]:
    """``plan`` with ``plan[key]`` cut to the values a repeatable flag chose (all of them when none was), so that
    processes can share a study's runs; a value the plan does not hold is refused by name."""
    unknown = [value for value in chosen if value not in plan[key]]
    if unknown:
        raise ConfigError(f"study {flag} {unknown[0]}: not a {what} of {source}; choose among {list(plan[key])}")
    return {**plan, key: tuple(dict.fromkeys(chosen))} if chosen else dict(plan)


def _survival(args: argparse.Namespace) -> int:
    """`study --survival`: the survival runs (of the chosen copier seeds), their table, and the survivors counted."""
    plan = _share_of(survival.SURVIVAL, "copier_seeds", args.copier_seeds, "--copier-seed", "copier seed",
                     "helpers.survival.SURVIVAL")
    table = survival.run_survival(args.out, args.figures, plan=plan, overrides=parse_overrides(args.overrides),
                                  progress=not args.quiet)
    print("runs that kept copying: " + ", ".join(
        f"{recipe} {s['survived']['successes']} of {s['survived']['n']}" for recipe, s in table["summary"].items())
        + f"; table {table['path']}")
    return 0


def _lengths(args: argparse.Namespace) -> int:
    """`study --lengths`: the cells of the chosen pretraining lengths, and what each length did."""
    plan = _share_of(lengths.LENGTHS, "pretrain_steps", args.pretrain_lengths, "--pretrain-steps",
                     "pretraining length", "helpers.lengths.LENGTHS")
    table = lengths.run_lengths(args.out, args.figures, lengths=plan, overrides=parse_overrides(args.overrides),
                                question_stories=args.stories, progress=not args.quiet)
    print("exact answers, all kinds: " + ", ".join(
        f"{c['pretrain_steps']} x {c['finetune_steps']} steps {c['answers']['all']['share']:.0%}"
        for c in table["cells"]) + f"; table {table['path']}")
    return 0


def _finetunings(args: argparse.Namespace) -> int:
    """`study --finetunings`: the chosen ways of finetuning the study's model, each against the plain one."""
    table = lengths.run_finetunings(args.out, args.figures, names=args.finetuning_names or None,
                                    overrides=parse_overrides(args.overrides), question_stories=args.stories,
                                    progress=not args.quiet)
    print("exact answers, all kinds: " + ", ".join(
        f"{c['finetuning']} {c['answers']['all']['share']:.0%}" for c in table["cells"]) + f"; table {table['path']}")
    return 0


def _study(args: argparse.Namespace) -> int:
    """`study` and its one chosen part (--arms, --repeats, --copier, --survival, --lengths or --finetunings)."""
    if sum((args.arms, args.repeats, args.copier, args.survival, args.lengths, args.finetunings)) > 1:
        raise ConfigError("study: choose one of --arms, --repeats, --copier, --survival, --lengths and "
                          "--finetunings")
    if args.finetuning_names and not args.finetunings:
        raise ConfigError("study: --finetuning chooses finetunings of --finetunings")
    if args.finetunings:
        unknown = [name for name in args.finetuning_names if name not in lengths.FINETUNINGS]
        if unknown:
            raise ConfigError(f"study --finetuning {unknown[0]!r}: no such finetuning; choose among "
                              f"{list(lengths.FINETUNINGS)}")
        return _finetunings(args)
    if args.copier_seeds and not args.survival:
        raise ConfigError("study: --copier-seed chooses copiers of --survival")
    if args.pretrain_lengths and not args.lengths:
        raise ConfigError("study: --pretrain-steps chooses cells of --lengths")
    if args.survival:
        return _survival(args)
    if args.lengths:
        return _lengths(args)
    if (args.arms or args.repeats) and args.overrides:
        raise ConfigError("study: --set changes the study's settings; --arms and --repeats train the arms of "
                          "helpers.study.PRETRAINING_ARMS and REPEAT_ARMS as they are")
    if args.copier_arms and not args.copier:
        raise ConfigError("study: --arm chooses arms of --copier")
    if args.copier:
        unknown = [name for name in args.copier_arms if name not in COPIER_ARMS]
        if unknown:
            raise ConfigError(f"study --arm {unknown[0]!r}: no such copier arm; choose among {list(COPIER_ARMS)}")
        arms = {name: COPIER_ARMS[name] for name in args.copier_arms} or None
        table = run_copier_then_stories(args.out, args.figures, arms=arms, overrides=parse_overrides(args.overrides),
                                        question_stories=args.stories, progress=not args.quiet)
        last = {row["arm"]: row["curve"][-1]["copying"]["repeated_random"] for row in table["rows"]}
        print("saved on a random repeat beyond its control at the last model: " + ", ".join(
            f"{arm} {saved_beyond_control(r):+.2f}" for arm, r in last.items()) + f"; table {table['path']}")
        return 0
    if args.repeats:
        table = run_repeat_arms(args.figures, progress=not args.quiet)
        print(f"{len(table['rows'])} repeat arms measured; table {table['path']}")
        return 0
    if args.arms:
        table = run_arms(args.out, args.figures, progress=not args.quiet)
        print(f"{len(table['rows'])} pretraining arms measured; table {table['path']}")
        return 0
    result = run_study(args.out, args.figures, overrides=parse_overrides(args.overrides), stories=args.stories,
                       prompts=args.prompts, progress=not args.quiet)
    final = result["rows"][-1]
    print(f"study done: exact answers {final['all']['share']:.3f} (95% {final['all']['low']:.3f}-"
          f"{final['all']['high']:.3f}) on {result['questions']} questions; figure {result['figure']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "config":
            print(_profile(args, None).to_json())
            return 0
        if args.command == "report":
            return _report(args)
        if args.command == "exercises":
            make_exercises("notebooks", args.out)
            return 0
        if args.command == "grade":
            return _grade(args)
        if args.command == "study":
            return _study(args)
        if args.command in {"pretrain", "finetune"}:
            profile = _profile(args, "data.stories" if args.command == "pretrain" else "data.instructions")
            _check_device(profile)
            result = train(args.command, profile, args.out, init=getattr(args, "init", None),
                           resume=args.resume, engine=args.engine, progress=not args.quiet)
            print(f"{args.command} done: {result.steps} steps, {result.losses_line()}; model in {result.out_dir}")
            return 0
        profile = _evaluation_profile(args)
        _check_device(profile)
        report = evaluate_run(args.run, profile, other_settings=args.other_settings,
                              judge=args.judge, judge_model=args.judge_model,
                              compare=args.compare, learning_order=args.learning_order,
                              samples=args.samples, progress=not args.quiet)
        print(report["markdown_path"])
        return 0
    except (ConfigError, DataError, RunError, AssignError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
