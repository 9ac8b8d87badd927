"""The run folder survives interruptions: writes killed half way, torn metrics lines, damaged checkpoints.

A write is interrupted for real here: a child process lowers its file-size
limit (RLIMIT_FSIZE) and the kernel stops it in the middle of the write,
with exactly that many bytes on disk, by SIGXFSZ (a kill, as an
out-of-memory killer's would be) or, where Python's own handling is kept,
with an error the writer sees.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import tiny_profile
from helpers import runs
from helpers.runs import RunError, append_metrics, checkpoint_dir, read_metrics, truncate_metrics, write_text
from helpers.train import pretrain

LIMIT = 1 << 20  # bytes a child may write to one file before the kernel stops it
# argv: which writer, the file, the file-size limit, "kill" (SIGXFSZ kills) or "error" (Python's default: EFBIG).
_CHILD = """
import resource, signal, sys
from helpers import runs
kind, path, limit, how = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
if how == "kill":
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
payload = "n" * (4 * limit)
if kind == "bytes":
    runs.write_bytes(path, payload.encode())
elif kind == "json":
    runs.write_json(path, {"stage": "pretrain", "notes": payload})
else:
    runs.append_metrics(path, {"step": 99, "train_loss": 1.0, "notes": payload})
"""


def _interrupted(kind: str, path: Path, how: str, limit: int = LIMIT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _CHILD, kind, str(path), str(limit), how],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("kind, name", [("bytes", "model.bin"), ("json", "run.json")])
def test_a_write_killed_half_way_leaves_the_old_file(tmp_path, kind, name):
    path = tmp_path / name
    write_text(path, '{"old": true}\n')
    done = _interrupted(kind, path, "kill")
    assert done.returncode == -signal.SIGXFSZ, done.stderr
    assert path.read_text() == '{"old": true}\n'
    leftovers = [p for p in tmp_path.iterdir() if p != path]
    assert [p.name.startswith(f".{name}.tmp-") for p in leftovers] == [True]  # hidden, beside it, not it
    assert leftovers[0].stat().st_size == LIMIT  # killed in the middle of the payload


def test_a_write_that_fails_half_way_leaves_the_old_file_and_nothing_else(tmp_path):
    path = tmp_path / "run.json"
    write_text(path, '{"old": true}\n')
    done = _interrupted("json", path, "error")
    assert done.returncode == 1 and "File too large" in done.stderr
    assert path.read_text() == '{"old": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]  # the half-written temporary file is gone


def test_a_failed_rename_leaves_the_old_file_and_nothing_else(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    runs.write_json(path, {"old": True})

    def no_space(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runs.os, "replace", no_space)
    with pytest.raises(OSError, match="No space left"):
        runs.write_json(path, {"new": True})
    assert json.loads(path.read_text()) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_a_metrics_line_torn_by_a_kill_is_dropped_when_the_run_resumes(tmp_path):
    out = tmp_path / "run"
    profile = tiny_profile(**{"pretrain.max_steps": 4, "pretrain.warmup_steps": 1, "pretrain.log_every": 1, "pretrain.save_every": 4,
                              "pretrain.eval_every": 0})
    pretrain(profile, out, progress=False)
    complete = (out / "metrics.jsonl").read_bytes()
    done = _interrupted("append", out, "kill", limit=len(complete) + 20)
    assert done.returncode == -signal.SIGXFSZ, done.stderr
    torn = (out / "metrics.jsonl").read_bytes()
    assert torn.startswith(complete) and len(torn) == len(complete) + 20 and not torn.endswith(b"\n")
    assert [r["step"] for r in read_metrics(out)] == [1, 2, 3, 4]  # a report of the killed run reads what was done
    truncate_metrics(out, 4)  # what resuming does first
    assert (out / "metrics.jsonl").read_bytes() == complete
    (out / "metrics.jsonl").write_bytes(torn)
    pretrain(profile, out, resume=True, progress=False)  # from checkpoint-4: nothing left to train
    assert [r["step"] for r in read_metrics(out)] == [1, 2, 3, 4]
    append_metrics(out, {"step": 5})
    assert read_metrics(out)[-1] == {"step": 5}  # the next record starts on a line of its own


def test_a_checkpoint_killed_half_way_is_skipped_and_replaced(tmp_path):
    """The kernel stops the run while it writes checkpoint-6; resuming starts from checkpoint-3 and rewrites 6."""
    out = tmp_path / "run"
    settings = {"pretrain.max_steps": 6, "pretrain.warmup_steps": 1, "pretrain.log_every": 3, "pretrain.save_every": 3, "pretrain.eval_every": 0}
    driver = f"""
import resource, signal, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from conftest import tiny_profile
from helpers import train

def limit_after_step_3(done):  # checkpoint-3 is whole; every later file stops at 64 KiB
    if done == 3:
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

train._after_step_hook = lambda: limit_after_step_3
train.pretrain(tiny_profile(**{settings!r}), {str(out)!r}, progress=False)
"""
    done = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGXFSZ, done.stderr[-2000:]
    written = {p.name for p in (out / ".checkpoint-6.tmp").iterdir()}  # stopped while writing the weights
    assert "rng-0.pt" in written and "trainer_state.pt" not in written and "tokenizer.json" not in written
    assert runs.latest_checkpoint(out) == checkpoint_dir(out, 3) and not checkpoint_dir(out, 6).exists()
    pretrain(tiny_profile(**settings), out, resume=True, progress=False)
    assert [r["step"] for r in read_metrics(out)] == [3, 6]
    assert runs.latest_checkpoint(out) == checkpoint_dir(out, 6) and not list(out.glob(".*tmp*"))


# ------------------------------------------------------------------ resuming loads exactly the checkpoint's weights


@pytest.mark.parametrize("engine", ["fast", "hf"])
def test_resume_refuses_a_checkpoint_with_a_missing_or_extra_tensor(tmp_path, engine):
    out = tmp_path / "run"
    profile = tiny_profile(**{"pretrain.max_steps": 2, "pretrain.warmup_steps": 1, "pretrain.log_every": 1, "pretrain.save_every": 2,
                              "pretrain.eval_every": 0})
    pretrain(profile, out, engine=engine, progress=False)
    weights_file = checkpoint_dir(out, 2) / "model.safetensors"
    weights = load_file(weights_file)
    assert "lm_head.weight" not in weights  # tied to the embedding, saved once: its absence is no damage
    damaged = {
        "Missing key(s) in state_dict: \"transformer.h.0.attn.c_attn.bias\"":
            {k: v for k, v in weights.items() if k != "transformer.h.0.attn.c_attn.bias"},
        "Unexpected key(s) in state_dict: \"transformer.h.9.mlp.c_fc.bias\"":
            {**weights, "transformer.h.9.mlp.c_fc.bias": torch.zeros(3)},
    }
    for reason, tensors in damaged.items():
        save_file(tensors, weights_file, metadata={"format": "pt"})
        with pytest.raises(RunError) as err:
            pretrain(profile, out, engine=engine, resume=True, progress=False)
        assert str(err.value).startswith(f"cannot resume from {weights_file}: it does not hold this model's weights")
        assert reason in str(err.value)
    save_file(weights, weights_file, metadata={"format": "pt"})
    pretrain(profile, out, engine=engine, resume=True, progress=False)  # the whole file: accepted
    assert all(torch.equal(weights[k], v) for k, v in load_file(out / "model.safetensors").items())
