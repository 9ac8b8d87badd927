"""Live curves: the numbers TensorBoard and Weights & Biases receive are the ones in metrics.jsonl."""

from __future__ import annotations

import json
import signal
import struct
import subprocess
import sys
import os

import pytest

from conftest import TINY, tiny_profile
from helpers.config import ConfigError
from helpers.runs import RunError, read_metrics
from helpers.tracking import SCALARS, parse_report_to
from helpers.train import finetune, pretrain

CADENCE = {"pretrain.max_steps": 8, "pretrain.log_every": 2, "pretrain.eval_every": 3, "pretrain.save_every": 4}


def tensorboard_scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def wandb_history(run_dir) -> list[dict]:
    """The history rows of an offline W&B run, read from its ``.wandb`` file (a LevelDB-style record log)."""
    from wandb.proto import wandb_internal_pb2

    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    raw, rows, pending, block = path.read_bytes(), [], b"", 32768
    position = 7  # the ":W&B" header, magic and version
    while position + 7 <= len(raw):
        if block - position % block < 7:  # a block's tail too short for a record header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", raw[position:position + 7])
        pending += raw[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                             for item in record.history.item})
    return rows


def _scalars_of(records: list[dict]) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        for key in SCALARS:
            if record.get(key) is not None:
                out.setdefault(key, []).append((record["step"], record[key]))
    return out


def _assert_same(logged: dict, records: list[dict], rel: float) -> None:
    expected = _scalars_of(records)
    assert set(logged) == set(expected)
    for key, points in expected.items():
        assert [s for s, _ in logged[key]] == [s for s, _ in points], key
        assert [v for _, v in logged[key]] == pytest.approx([v for _, v in points], rel=rel), key


def test_both_viewers_get_what_metrics_jsonl_holds(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    pretrain(tiny_profile(**CADENCE, **{"pretrain.report_to": "tensorboard,wandb"}), run, progress=False)
    records = read_metrics(run)
    assert {"train_loss", "eval_loss", "learning_rate"} <= set(tensorboard_scalars(run))
    _assert_same(tensorboard_scalars(run), records, rel=1e-6)  # TensorBoard keeps float32
    history = wandb_history(run)
    steps = [row.pop("_step") for row in history]
    logged = {}
    for step, row in zip(steps, history):
        for key, value in row.items():
            if not key.startswith("_"):
                logged.setdefault(key, []).append((step, value))
    _assert_same(logged, records, rel=1e-12)


def test_trainer_engine_logs_the_same_names(tmp_path, pretrained_run):
    profile = tiny_profile(**{"finetune.max_steps": 4, "finetune.log_every": 2, "finetune.eval_every": 2,
                              "finetune.save_every": 0, "finetune.report_to": "tensorboard"})
    finetune(profile, tmp_path / "hf", init=pretrained_run, engine="hf", progress=False)
    _assert_same(tensorboard_scalars(tmp_path / "hf"), read_metrics(tmp_path / "hf"), rel=1e-6)


def test_a_resumed_run_logs_each_step_once(tmp_path):
    settings = {**TINY, **CADENCE, "pretrain.report_to": "tensorboard"}
    args = [sys.executable, "-m", "helpers", "pretrain", "--quiet", "--out", str(tmp_path / "run")]
    args += [item for key, value in settings.items() for item in ("--set", f"{key}={value}")]
    crashed = subprocess.run(args, env={**os.environ, "HELPERS_CRASH_AFTER_STEP": "6"}, capture_output=True)
    assert crashed.returncode == -signal.SIGKILL
    assert max(s for s, _ in tensorboard_scalars(tmp_path / "run")["train_loss"]) == 6
    resumed = subprocess.run([*args, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    # steps 5 and 6 were logged before the crash and again after resuming from checkpoint 4: once each now
    _assert_same(tensorboard_scalars(tmp_path / "run"), read_metrics(tmp_path / "run"), rel=1e-6)


def test_unknown_or_missing_viewers_stop_before_anything_is_written(tmp_path, monkeypatch):
    assert parse_report_to("none") == [] and parse_report_to(" TensorBoard , wandb") == ["tensorboard", "wandb"]
    with pytest.raises(ConfigError, match=r"pretrain.report_to='mlflow': must be 'none' or any of \['tensorboard', 'wandb'\], comma-separated"):
        tiny_profile(**{"pretrain.report_to": "mlflow"})
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(RunError, match=r"pretrain.report_to='wandb' needs the wandb package \(pip install wandb\)"):
        pretrain(tiny_profile(**{"pretrain.report_to": "wandb"}), tmp_path / "b", progress=False)
    assert not (tmp_path / "b").exists()
