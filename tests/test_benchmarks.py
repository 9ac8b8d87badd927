"""The scripts in benchmarks/ run: each once, as a real process, on a model small enough for seconds of CPU time."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import tarfile

import pytest

from conftest import ROOT
from helpers.config import get_profile

BENCHMARKS = ROOT / "benchmarks"
# The paper profile's path with a one-layer, 32-wide model on 32-token blocks: every piece runs, nothing takes long.
TINY_MODEL = {"model.n_layer": 1, "model.n_embd": 32, "model.n_head": 2, "data.block_size": 32,
              "data.val_stories_count": 10, "pretrain.batch_size": 4, "pretrain.eval_batch_size": 8}


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def throughput():
    """The benchmark script as a module: importing it alone shows its imports are all there."""
    spec = importlib.util.spec_from_file_location("train_throughput", BENCHMARKS / "train_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paper_model_costs_the_documented_flops_per_token(throughput):
    paper = get_profile("paper")
    assert throughput.train_flops_per_token(paper.model, paper.data.block_size) / 1e6 == pytest.approx(21.37, abs=0.01)


def test_throughput_benchmark_times_both_engines(tmp_path, throughput):
    sets = [item for key, value in TINY_MODEL.items() for item in ("--set", f"{key}={value}")]
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "train_throughput.py"), "--device", "cpu", "--variants", "hf", "fast",
         "--steps", "4", "--log-every", "1", "--skip-windows", "1", "--repeats", "1", "--stories", "100",
         "--compare-steps", "2", "--compare-variant", "fast", *sets, "--json", str(out)],
        capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["errors"] == {} and result["steps"] == 4 and result["log_every"] == 1
    tiny = get_profile("paper", TINY_MODEL)  # the --set settings reached every run
    assert result["train_flops_per_token"] == throughput.train_flops_per_token(tiny.model, 32)
    assert result["matmul_tflops"] > 0 and result["train_tokens"] > 0
    rows = {row["variant"]: row for row in result["results"]}
    assert list(rows) == ["hf", "fast"]
    for name, row in rows.items():
        assert row["windows"] == 3, name  # 4 logged steps, the first dropped as warm-up
        assert 0 < row["spread"][0] <= row["tokens_per_sec"] <= row["spread"][1], name
        assert row["mfu"] == pytest.approx(row["tokens_per_sec"] * result["train_flops_per_token"]
                                           / (result["matmul_tflops"] * 1e12))
        assert row["peak_memory_gb"] is None  # a CPU reports none
        run = result["runs"][name][0]
        assert [step for step, _ in run["losses"]] == [1, 2, 3, 4] and run["wall_s"] > 0
        assert math.isfinite(row["final_loss"]) and row["final_loss"] == run["losses"][-1][1]
        assert abs(row["final_loss"] - math.log(50257)) < 0.5  # a fresh model guesses among GPT-2's tokens
    curves = result["loss_curves"]
    assert curves["variant"] == "fast" and curves["steps"] == 2 and curves["max_abs_diff"] < 1e-4
    lines = done.stdout.splitlines()
    assert any(line.startswith("| hf | ") and " | 1.00 | " in line for line in lines)
    assert any(line.startswith("| fast | ") for line in lines)
    assert any(line.startswith("loss curves, plain vs fast, 2 steps without dropout") for line in lines)


def test_paper_gpu_script_dry_runs_on_a_cpu(tmp_path):
    """DEVICE=cpu and SETS shrink the GPU job to seconds: both runs, the figures and the archive it brings back."""
    sets = {**TINY_MODEL, "data.train_stories": 100, "data.instruction_limit": 40, "pretrain.grad_accum": 1,
            "pretrain.warmup_steps": 1,
            "finetune.batch_size": 4, "finetune.grad_accum": 1, "finetune.eval_batch_size": 8}
    env = {**_env(), "OUT": str(tmp_path / "out"), "RUNS": str(tmp_path / "runs"), "DEVICE": "cpu",
           "PYTHON": sys.executable, "PRETRAIN_STEPS": "2", "FINETUNE_STEPS": "2",
           "SETS": " ".join(f"{key}={value}" for key, value in sets.items())}
    done = subprocess.run(["bash", str(BENCHMARKS / "paper_gpu_run.sh")], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    with tarfile.open(tmp_path / "out" / "paper_gpu.tgz") as archive:
        files = {member.name.removeprefix("./"): member for member in archive.getmembers() if member.isfile()}
        text = {name: archive.extractfile(member).read().decode() for name, member in files.items()
                if not name.endswith(".png")}
    figures = {f"gpu_{stage}_{metric}.png" for stage in ("pretrain", "finetune")
               for metric in ("train_loss", "eval_loss", "learning_rate", "tokens_per_sec")}
    assert figures <= set(files) and all(files[name].size > 1000 for name in figures)
    for stage in ("pretrain", "finetune"):
        records = [json.loads(line) for line in text[f"{stage}-metrics.jsonl"].splitlines()]
        assert [r["step"] for r in records] == [2] and records[0]["eval_loss"] > 0
        assert text[f"{stage}.log"].splitlines()[-1].startswith(f"{stage} done: 2 steps, last training loss ")
    assert " on cpu in " in text["pretrain.log"]
    assert text["times.txt"].startswith("pretraining ") and " s, finetuning " in text["times.txt"]


def test_decoding_benchmark_checks_that_all_decoders_agree(tmp_path):
    out = tmp_path / "decode.json"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "decode_cache.py"), "--prompts", "3", "--new-tokens", "5", "--repeats", "1",
         "--set", "model.n_layer=1", "--set", "model.n_embd=32", "--set", "model.n_head=2", "--json", str(out)],
        capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["tokens_equal_to_first"] == {"cache": 1.0, "recompute": 1.0, "transformers": 1.0}
    assert result["prompts"] == 3 and result["new_tokens"] == 5 and result["recompute_over_cache"] > 0
    assert all(len(times) == 1 and times[0] > 0 for times in result["seconds"].values())
