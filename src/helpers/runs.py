"""The run folder: what a training run leaves on disk, and the one place that reads and names it.

A run folder holds

* ``run.json``: what was run (stage, engine, the whole profile, init, data
  counts, steps, precision, device): a :class:`RunRecord`, versioned by its
  ``schema`` and written and read only here;
* ``metrics.jsonl``: one JSON object per logging or evaluation step, the only
  input of every training figure;
* the final model in Hugging Face format (``config.json``,
  ``model.safetensors`` and the tokenizer files), so
  ``from_pretrained(run)`` works;
* ``checkpoint-N`` folders (the model at step N plus what resuming needs).

Every other module and lesson asks this one to name, list or check these
files: nothing else parses a checkpoint's name. Writes go through a
temporary file and a rename, so a killed process never leaves half a file.
This module needs nothing beyond the standard library and the settings of
:mod:`helpers.config`.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

from .config import ConfigError, Profile, get_profile, stage_settings
from .stats import perplexity_from_loss

__all__ = [
    "RUN_INFO",
    "METRICS",
    "EVALUATION",
    "EVALUATION_MARKDOWN",
    "MODEL_FILES",
    "WEIGHT_FILES",
    "RunError",
    "RunResult",
    "RUN_SCHEMA",
    "RunRecord",
    "checkpoint_dir",
    "checkpoint_step",
    "checkpoints",
    "latest_checkpoint",
    "prune_checkpoints",
    "model_stages",
    "has_model",
    "missing_model_files",
    "require_model",
    "has_run_record",
    "read_run_record",
    "write_run_record",
    "run_profile",
    "read_metrics",
    "read_evaluation",
    "run_result",
    "tokens_at",
    "append_metrics",
    "truncate_metrics",
    "check_out_dir",
    "setting_differences",
    "write_json",
    "write_text",
    "write_bytes",
]

RUN_INFO = "run.json"
METRICS = "metrics.jsonl"
EVALUATION = "eval.json"  # helpers.evaluate's measurements of the run
EVALUATION_MARKDOWN = "eval.md"  # the same, to read
MODEL_FILES = ("config.json", "model.safetensors")  # what this package writes for a model
# Weight files ``from_pretrained`` can load; folders from elsewhere (the hub's
# gpt2, say) may hold the older formats.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
_CHECKPOINT = "checkpoint-"
# A checkpoint is complete once its training state is written (ours, or Trainer's).
_STATE_FILES = ("trainer_state.pt", "trainer_state.json")


class RunError(RuntimeError):
    """A run that cannot start or be read: a missing model, a folder holding another run, ..."""


RUN_SCHEMA = 1  # the layout of run.json; a record without "schema" was written before it was numbered


@dataclass(frozen=True)
class RunRecord:
    """What ``run.json`` holds: enough to resume, evaluate or report a run without guessing its settings."""

    stage: str                # "pretrain" or "finetune"
    engine: str               # "fast" or "hf"
    profile: dict[str, Any]   # every setting, as Profile.to_dict() writes it
    init: str | None          # the pretrained run a finetuning started from
    world_size: int           # training processes
    data: dict[str, Any]      # what the prepared data held (counts, block size, ...)
    total_steps: int
    warmup_steps: int
    precision: str
    device: str
    global_batch: int
    schema: int = RUN_SCHEMA

    def identity(self) -> dict[str, Any]:
        """What a folder may only be resumed with: stage, engine, profile, init and processes.

        The profile is read back through :meth:`Profile.from_dict`, so that a
        setting added after the run was made counts at its default, the value
        that keeps the older behaviour (a saved profile this version cannot
        read is compared as written).
        """
        try:
            profile = self.settings().to_dict()
        except ConfigError:
            profile = self.profile
        return {"stage": self.stage, "engine": self.engine, "profile": profile, "init": self.init,
                "world_size": self.world_size}

    def settings(self) -> Profile:
        """The profile the run was trained with, as an object."""
        return Profile.from_dict(self.profile)


@dataclass
class RunResult:
    """What a finished run left behind, and its last numbers."""

    out_dir: Path
    steps: int
    tokens: int
    train_loss: float | None
    eval_loss: float | None
    elapsed_s: float

    @property
    def perplexity(self) -> float | None:
        return perplexity_from_loss(self.eval_loss) if self.eval_loss is not None else None

    def losses_line(self) -> str:
        """The last losses in words; a run trained without evaluation (``eval_every=0``) says so."""
        trained = "no training loss" if self.train_loss is None else f"last training loss {self.train_loss:.3f}"
        if self.eval_loss is None:
            return f"{trained}, no evaluation (eval_every=0)"
        return f"{trained}, validation loss {self.eval_loss:.3f}, perplexity {self.perplexity:.2f}"


# ---------------------------------------------------------------- checkpoints


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    """The folder of the checkpoint written after optimizer step ``step``."""
    return Path(run_dir) / f"{_CHECKPOINT}{step}"


def checkpoint_step(folder: str | Path) -> int | None:
    """The step of a checkpoint folder, or ``None`` when the name is not ``checkpoint-<digits>``."""
    name = Path(folder).name
    suffix = name[len(_CHECKPOINT):]
    return int(suffix) if name.startswith(_CHECKPOINT) and suffix.isdigit() else None


def checkpoints(run_dir: str | Path, *, complete: bool = True) -> list[tuple[int, Path]]:
    """(step, folder) of every checkpoint, in step order.

    ``complete=True`` keeps those whose training state was written (what
    resuming needs); ``complete=False`` keeps every one that holds a model.
    """
    def ready(path: Path) -> bool:
        return any((path / f).exists() for f in _STATE_FILES) if complete else (path / "config.json").exists()

    return [(step, path) for step, path in _numbered(run_dir) if ready(path)]


def _numbered(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) of every ``checkpoint-N`` folder, whatever it holds, in step order."""
    found = ((checkpoint_step(path), path) for path in Path(run_dir).glob(f"{_CHECKPOINT}*"))
    return sorted((step, path) for step, path in found if step is not None)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The complete checkpoint with the highest step, if any."""
    found = checkpoints(run_dir)
    return found[-1][1] if found else None


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (``keep <= 0`` keeps them all)."""
    if keep <= 0:
        return
    for _, old in _numbered(run_dir)[:-keep]:
        shutil.rmtree(old)


def model_stages(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) of every saved model in step order: checkpoints, then the final model if newer."""
    run_dir = Path(run_dir)
    found = checkpoints(run_dir, complete=False)
    record = read_run_record(run_dir)
    if has_model(run_dir) and record is not None and (not found or found[-1][0] < record.total_steps):
        found.append((record.total_steps, run_dir))
    return found


# ---------------------------------------------------------------- models


def missing_model_files(folder: str | Path) -> list[str]:
    """Which of ``config.json`` and a weight file a folder lacks (empty: it holds a model)."""
    folder = Path(folder)
    missing = [] if (folder / "config.json").exists() else ["config.json"]
    if not any((folder / f).exists() for f in WEIGHT_FILES):
        missing.append(MODEL_FILES[1])
    return missing


def has_model(folder: str | Path) -> bool:
    """Whether ``from_pretrained(folder)`` finds a configuration and weights there."""
    return not missing_model_files(folder)


def require_model(run_dir: str | Path) -> Path:
    """``run_dir`` if it holds a model, else a ``RunError`` naming the command that makes one."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run folder {str(run_dir)!r} does not exist; train a model first: "
                       f"python -m helpers pretrain --out {run_dir}")
    if has_model(run_dir):
        return run_dir
    record = read_run_record(run_dir)
    if record is not None:
        init = f" --init {record.init}" if record.init else ""
        raise RunError(f"run folder {str(run_dir)!r} has no final model (its {record.stage} run did not finish); "
                       f"finish it: python -m helpers {record.stage}{init} --out {run_dir} --resume")
    raise RunError(f"folder {str(run_dir)!r} holds no model (config.json and model.safetensors); "
                   f"train one first: python -m helpers pretrain --out {run_dir}")


# ---------------------------------------------------------------- reading


def has_run_record(run_dir: str | Path) -> bool:
    """Whether a folder holds a run of this package (its ``run.json``), finished or not."""
    return (Path(run_dir) / RUN_INFO).is_file()


def read_run_record(run_dir: str | Path) -> RunRecord | None:
    """The :class:`RunRecord` of a run folder; ``None`` for a bare model folder."""
    path = Path(run_dir) / RUN_INFO
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RunError(f"{str(path)!r} is not valid JSON ({err.msg}, line {err.lineno})") from None
    schema = saved.get("schema", RUN_SCHEMA)
    if schema != RUN_SCHEMA:
        raise RunError(f"{str(path)!r} has schema {schema!r}; this version of helpers reads schema {RUN_SCHEMA}: "
                       "train the run again or use the helpers version that wrote it")
    names = {f.name for f in fields(RunRecord)}
    missing = sorted(names - set(saved) - {"schema"})
    if missing:
        raise RunError(f"{str(path)!r} lacks {', '.join(missing)}: it was not written by a finished run setup")
    return RunRecord(**{key: value for key, value in saved.items() if key in names})


def write_run_record(run_dir: str | Path, record: RunRecord) -> None:
    """Write ``run.json`` atomically."""
    write_json(Path(run_dir) / RUN_INFO, asdict(record))


def run_profile(run_dir: str | Path, fallback: str = "lesson") -> Profile:
    """The settings a run was trained with; the ``fallback`` profile for a bare model folder."""
    record = read_run_record(run_dir)
    return record.settings() if record else get_profile(fallback)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every complete record of ``metrics.jsonl`` in order (a torn last line of a killed run is not one)."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        raise RunError(f"no metrics in {str(run_dir)!r}: train it first")
    return [json.loads(line) for line in _complete_lines(path.read_text())]


def _complete_lines(text: str) -> list[str]:
    """The non-empty lines of ``text`` that end in a newline: a record counts once its line ends."""
    return [line for line in text[:text.rfind("\n") + 1].splitlines() if line.strip()]


def read_evaluation(run_dir: str | Path) -> dict[str, Any] | None:
    """The ``eval.json`` of a run folder (see :class:`helpers.evaluate.EvaluationReport`); ``None`` if not evaluated."""
    path = Path(run_dir) / EVALUATION
    return json.loads(path.read_text()) if path.exists() else None


def run_result(run_dir: str | Path) -> RunResult:
    """The last step, tokens, losses and time of a finished run, read from its metrics."""
    records = read_metrics(run_dir)
    trains = [r["train_loss"] for r in records if r.get("train_loss") is not None]
    evals = [r["eval_loss"] for r in records if r.get("eval_loss") is not None]
    last = records[-1]
    return RunResult(Path(run_dir), last["step"], last["tokens"], trains[-1] if trains else None,
                     evals[-1] if evals else None, last["elapsed_s"])


def tokens_at(records: Sequence[dict], step: int) -> int | None:
    """Training tokens seen after ``step``: logged exactly, or interpolated between log lines."""
    points = sorted((r["step"], r["tokens"]) for r in records if r.get("tokens") is not None)
    if not points:
        return None
    below = [p for p in points if p[0] <= step]
    above = [p for p in points if p[0] >= step]
    if below and above:
        (s0, t0), (s1, t1) = below[-1], above[0]
        return t0 if s1 == s0 else round(t0 + (t1 - t0) * (step - s0) / (s1 - s0))
    s, t = (below[-1] if below else above[0])
    return round(t * step / s) if s else t


# ---------------------------------------------------------------- writing


def write_bytes(path: str | Path, payload: bytes) -> None:
    """Write through a temporary file in the same folder and rename: readers never see half a file.

    A write that fails (a full disk, a file-size limit) removes its
    temporary file; only a killed process leaves one, hidden beside ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(payload)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    """:func:`write_bytes` for UTF-8 text."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    """:func:`write_text` for indented, key-sorted JSON."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def append_metrics(run_dir: str | Path, record: dict[str, Any]) -> None:
    """Add one record to ``metrics.jsonl``."""
    with (Path(run_dir) / METRICS).open("a") as fh:
        fh.write(json.dumps(record) + "\n")


def truncate_metrics(run_dir: str | Path, step: int) -> None:
    """Drop records after ``step``: those a resumed run writes again from its checkpoint.

    A record counts once its line ends: a process killed while appending
    leaves a torn last line without one, which is dropped with the rest.
    """
    path = Path(run_dir) / METRICS
    if not path.exists():
        return
    kept = [line for line in _complete_lines(path.read_text()) if json.loads(line)["step"] <= step]
    write_text(path, "".join(line + "\n" for line in kept))


# ---------------------------------------------------------------- starting a run


def check_out_dir(out: str | Path, description: dict[str, Any], resume: bool) -> None:
    """Refuse a folder that holds something else; touch nothing while checking.

    An empty or missing folder is fine; a folder holding this package's run
    is fine only with ``resume`` and only when ``description`` (stage,
    engine, profile, init, processes) matches what ``run.json`` says.
    """
    out = Path(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise RunError(f"output path {str(out)!r} exists and is not a folder")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return
    if not (out / RUN_INFO).exists():
        raise RunError(
            f"output folder {str(out)!r} already holds files that are not a run of this package "
            f"({', '.join(entries[:3])}{', ...' if len(entries) > 3 else ''}); choose an empty folder"
        )
    if not resume:
        raise RunError(
            f"output folder {str(out)!r} already holds a run; pass --resume (resume=True) to continue "
            "it, or choose another folder"
        )
    previous = read_run_record(out).identity()
    # only what the stage reads counts (helpers.config.stage_settings): the questions if either run reads them
    questions = any(side["profile"]["data"].get("qa_share") for side in (previous, description))
    previous, description = ({**side, "profile": stage_settings(description["stage"], side["profile"], questions)}
                             for side in (previous, description))
    diffs = setting_differences({key: previous.get(key) for key in description}, description)
    if diffs:
        raise RunError(f"cannot resume {str(out)!r}: it holds a different run ({'; '.join(diffs[:5])})")


def setting_differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Each leaf where two nested settings differ, as ``"key.path: old there, new now"``."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            out += setting_differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} there, {new!r} now"]
