"""The training engine: schedule, run folders, exact resume after SIGKILL, DDP, Trainer parity, failures."""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import pytest
import torch

from conftest import TINY, tiny_profile
from helpers.optim import build_optimizer, cosine_with_warmup, learning_rate, warmup_steps_for
from helpers.runs import checkpoint_dir, latest_checkpoint, read_metrics
from helpers.train import TrainingDiverged, pretrain

NO_DROPOUT = {"model.resid_pdrop": 0.0, "model.embd_pdrop": 0.0, "model.attn_pdrop": 0.0}


def _cli(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "helpers", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, **kwargs)


def _in_process(capsys, *args: str) -> subprocess.CompletedProcess:
    """``python -m helpers ARGS`` run in this process (no second start of torch): status, stdout, stderr."""
    from helpers.cli import main

    capsys.readouterr()
    try:
        status = main(list(args))
    except SystemExit as exit_:  # argparse: --help, or a flag it refuses
        status = exit_.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["helpers", *args], status, out, err)


def _sets(overrides: dict) -> list[str]:
    return [item for key, value in overrides.items() for item in ("--set", f"{key}={value}")]


# ------------------------------------------------------------------ schedule and optimizer


@pytest.mark.parametrize("warmup, total", [(100, 1000), (0, 50), (5, 5), (3, 17), (10, 7)])
def test_schedule_equals_transformers_at_every_step(warmup, total):
    from transformers import get_cosine_schedule_with_warmup

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=5e-4)
    scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, total)
    for step in range(total + 3):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(5e-4 * cosine_with_warmup(step, warmup, total),
                                                                 rel=1e-12, abs=1e-18), step
        optimizer.step()
        scheduler.step()


def test_warmup_ratio_rounds_up_like_trainer():
    cfg = tiny_profile(**{"finetune.warmup_steps": 0, "finetune.warmup_ratio": 0.03}).finetune
    assert warmup_steps_for(cfg, 2441) == 74 and warmup_steps_for(cfg, 10) == 1
    assert warmup_steps_for(tiny_profile().pretrain, 999) == 5


def test_weight_decay_skips_biases_and_norms_as_trainer_does():
    from transformers import Trainer

    from helpers.model import build_model, hf_model

    model = build_model(tiny_profile().model)
    decay, no_decay = build_optimizer(model, tiny_profile().pretrain, torch.device("cpu")).param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    decayed = {names[id(p)] for p in decay["params"]}
    assert {names[id(p)] for p in no_decay["params"]} >= {"ln_f.weight", "ln_f.bias", "h.0.attn.c_attn.bias"}
    assert "wte.weight" in decayed and "h.0.mlp.c_fc.weight" in decayed
    trainer_decays = Trainer.get_decay_parameter_names(None, hf_model(model))  # the paper's engine's rule
    assert {"transformer." + n for n in decayed} == set(trainer_decays) - {"lm_head.weight"}  # lm_head: wte, tied
    assert sum(p.numel() for p in decay["params"] + no_decay["params"]) == model.num_parameters()


def test_the_learning_rate_of_each_step_is_the_peak_times_the_schedule():
    cfg = tiny_profile(**{"pretrain.learning_rate": 2e-3}).pretrain
    assert [learning_rate(s, cfg, 2, 6) for s in range(6)] == pytest.approx(
        [0.0, 1e-3, 2e-3, 2e-3 * 0.5 * (1 + math.cos(math.pi / 4)), 1e-3, 2e-3 * 0.5 * (1 + math.cos(3 * math.pi / 4))])


# ------------------------------------------------------------------ a run folder


def test_pretraining_run_folder(pretrained_run):
    records = read_metrics(pretrained_run)
    assert [r["step"] for r in records] == [5, 10, 15, 20, 25, 30]
    for record in records:
        assert {"step", "epoch", "tokens", "train_loss", "learning_rate", "grad_norm", "tokens_per_sec",
                "elapsed_s"} <= set(record)
        assert record["tokens"] == record["step"] * 8 * 128
    evals = [r for r in records if "eval_loss" in r]
    assert [r["step"] for r in evals] == [10, 20, 30]
    assert all(r["perplexity"] == pytest.approx(math.exp(r["eval_loss"])) for r in evals)
    assert records[-1]["train_loss"] < records[0]["train_loss"] - 1.0  # it learns
    assert evals[-1]["eval_loss"] < math.log(2048)  # better than guessing among 2048 tokens
    run = json.loads((pretrained_run / "run.json").read_text())
    assert run["stage"] == "pretrain" and run["total_steps"] == 30 and run["global_batch"] == 8
    assert run["profile"]["pretrain"]["max_steps"] == 30 and run["data"]["block_size"] == 128
    # keep_checkpoints=10 in the lesson profile: all three remain, each complete
    assert sorted(p.name for p in pretrained_run.glob("checkpoint-*")) == ["checkpoint-10", "checkpoint-20", "checkpoint-30"]
    for path in pretrained_run.glob("checkpoint-*"):
        assert {"config.json", "model.safetensors", "tokenizer.json", "trainer_state.pt", "rng-0.pt"} <= {
            p.name for p in path.iterdir()}
    assert not list(pretrained_run.glob(".*tmp*"))


def test_keep_only_the_last_checkpoints(tmp_path):
    out = tmp_path / "run"
    pretrain(tiny_profile(**{"pretrain.max_steps": 12, "pretrain.save_every": 3, "pretrain.keep_checkpoints": 2}),
             out, progress=False)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-12", "checkpoint-9"]
    assert latest_checkpoint(out).name == "checkpoint-12"


def test_finetuning_run(finetuned_run):
    records = read_metrics(finetuned_run)
    assert [r["step"] for r in records] == [5, 10]
    assert all("eval_loss" in r for r in records)
    run = json.loads((finetuned_run / "run.json").read_text())
    assert run["stage"] == "finetune" and run["data"]["train_examples"] == 200
    assert run["init"].endswith("pretrain")
    assert records[-1]["tokens"] > 0


# ------------------------------------------------------------------ finetuning starts from the pretrained model


def test_finetuning_steps_run_in_training_mode_though_a_loaded_model_comes_in_eval_mode(tmp_path, pretrained_run,
                                                                                        monkeypatch):
    """The init model loads with dropout off (Hugging Face's convention); the loop must switch it back on."""
    from helpers.gpt import GPT
    from helpers.train import finetune

    modes, hidden_states = [], GPT.hidden_states  # what the loop's chunked loss calls, in place of forward

    def recording(self, *args, **kwargs):
        modes.append(self.training)
        return hidden_states(self, *args, **kwargs)

    monkeypatch.setattr(GPT, "hidden_states", recording)
    profile = tiny_profile(**{"finetune.max_steps": 2, "finetune.eval_every": 0, "finetune.save_every": 0})
    finetune(profile, tmp_path / "ft", init=pretrained_run, progress=False)
    assert modes[:2] == [True, True]


def test_finetuning_starts_from_the_pretrained_weights(tmp_path, pretrained_run):
    """With learning rate 0 nothing moves: the run's weights and validation loss are the init model's."""
    from safetensors.torch import load_file

    from transformers import AutoTokenizer

    from helpers.data import finetuning_examples
    from helpers.inference import perplexity
    from helpers.model import build_model, load_model
    from helpers.train import finetune

    profile = tiny_profile(**{"finetune.learning_rate": 0.0, "finetune.max_steps": 2, "finetune.eval_every": 2,
                              "finetune.save_every": 0, "finetune.eval_max_batches": None})
    finetune(profile, tmp_path / "ft", init=pretrained_run, progress=False)
    before, after = load_file(pretrained_run / "model.safetensors"), load_file(tmp_path / "ft" / "model.safetensors")
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    tokenizer = AutoTokenizer.from_pretrained(str(pretrained_run))
    held_out = finetuning_examples(profile.data, tokenizer)[1]
    expected = perplexity(load_model(pretrained_run), held_out, batch_size=profile.finetune.eval_batch_size,
                          progress=False)["loss"]
    assert read_metrics(tmp_path / "ft")[-1]["eval_loss"] == pytest.approx(expected, rel=1e-6)
    fresh = perplexity(build_model(profile.model, seed=profile.pretrain.seed), held_out, progress=False)["loss"]
    assert abs(fresh - expected) > 0.05  # a fresh model would have logged something else


# ------------------------------------------------------------------ exact resume after a real SIGKILL

# Each case logs every 3 steps and saves every 5, so the checkpoint a resumed run starts from holds a
# non-empty logging window (steps 4 and 5), and the process kills itself after step 9: between two
# checkpoints, with a record (step 9) that the resumed run must drop and write again.
RESUME_CASES = {
    "pretrain, steps": ("pretrain", {"pretrain.max_steps": 14, "data.train_stories": 300,
                                     "model.resid_pdrop": 0.1, "model.embd_pdrop": 0.1, "model.attn_pdrop": 0.1}),
    "pretrain, epochs": ("pretrain", {"pretrain.max_steps": None, "pretrain.epochs": 2.5, "data.train_stories": 40}),
    "finetune, steps": ("finetune", {"finetune.max_steps": 14, "finetune.batch_size": 2}),
    "finetune, epochs": ("finetune", {"finetune.max_steps": None, "finetune.epochs": 1.5, "data.instruction_limit": 24,
                                      "finetune.batch_size": 2}),
}
CRASH_AFTER = 9


def _resume_settings(stage: str, extra: dict) -> dict:
    cadence = {f"{stage}.log_every": 3, f"{stage}.save_every": 5, f"{stage}.eval_every": 5,
               f"{stage}.warmup_steps": 2, f"{stage}.keep_checkpoints": 0}
    return {**TINY, **cadence, **extra}


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_after_a_crash_between_checkpoints_reaches_the_same_records(case, tmp_path, pretrained_run, capsys):
    """Only the crash needs a process of its own (a real SIGKILL); the whole run and the resume run in this one."""
    stage, extra = RESUME_CASES[case]
    args = [stage, "--quiet", *_sets(_resume_settings(stage, extra))]
    if stage == "finetune":
        args += ["--init", str(pretrained_run)]
    reference = _in_process(capsys, *args, "--out", str(tmp_path / "whole"))
    assert reference.returncode == 0, reference.stderr
    whole = read_metrics(tmp_path / "whole")
    assert whole[-1]["step"] > CRASH_AFTER + 3  # the crash happens well before the end

    out = tmp_path / "crashed"
    crashed = _cli(*args, "--out", str(out), env={"HELPERS_CRASH_AFTER_STEP": str(CRASH_AFTER)}, timeout=600)
    assert crashed.returncode == -signal.SIGKILL
    assert latest_checkpoint(out) == checkpoint_dir(out, 5) and not (out / "model.safetensors").exists()
    assert read_metrics(out)[-1]["step"] == CRASH_AFTER  # written after the checkpoint: must go again
    state = torch.load(checkpoint_dir(out, 5) / "trainer_state.pt", weights_only=False)
    assert len(state["window_losses"]) == 2  # steps 4 and 5, logged only at step 6

    again = _in_process(capsys, *args, "--out", str(out), "--resume")
    assert again.returncode == 0, again.stderr
    assert "resuming after step 5" in again.stdout
    keys = ("step", "epoch", "tokens", "train_loss", "learning_rate", "grad_norm", "eval_loss")
    assert [[r.get(k) for k in keys] for r in read_metrics(out)] == [[r.get(k) for k in keys] for r in whole]
    assert not list(out.glob(".*tmp*"))


def test_ensure_run_reuses_resumes_and_refuses(tmp_path, capsys):
    from helpers.runs import RunError
    from helpers.train import ensure_run

    settings = _resume_settings("pretrain", {"pretrain.max_steps": 12, "data.train_stories": 300})
    profile = tiny_profile(**settings)
    out = tmp_path / "run"
    crashed = _cli("pretrain", "--quiet", "--out", str(out), *_sets(settings),
                   env={"HELPERS_CRASH_AFTER_STEP": str(CRASH_AFTER)}, timeout=600)
    assert crashed.returncode == -signal.SIGKILL
    resumed = ensure_run("pretrain", profile, out, progress=False)  # what rerunning a lesson does
    assert "resuming after step 5" in capsys.readouterr().out
    pretrain(profile, tmp_path / "whole", progress=False)
    keys = ("step", "tokens", "train_loss", "grad_norm", "eval_loss")
    whole = read_metrics(tmp_path / "whole")
    assert [[r.get(k) for k in keys] for r in read_metrics(out)] == [[r.get(k) for k in keys] for r in whole]

    files = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    capsys.readouterr()
    again = ensure_run("pretrain", profile, out, progress=False)
    assert capsys.readouterr().out == f"pretrain: reusing the finished run in {out} (delete the folder to train again)\n"
    assert again == resumed.__class__(out, 12, whole[-1]["tokens"], whole[-1]["train_loss"], whole[-1]["eval_loss"],
                                      read_metrics(out)[-1]["elapsed_s"])
    with pytest.raises(RunError, match=r"holds a different run \(profile.pretrain.learning_rate: 0.003 there, 0.001 now\)"):
        ensure_run("pretrain", tiny_profile(**settings, **{"pretrain.learning_rate": 1e-3}), out, progress=False)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == files  # reused and refused: nothing touched
    # a run made before a setting existed counts it at its default, which keeps the older behaviour
    record = json.loads((out / "run.json").read_text())
    del record["profile"]["data"]["qa_share"]
    (out / "run.json").write_text(json.dumps(record))
    capsys.readouterr()
    ensure_run("pretrain", profile, out, progress=False)
    assert capsys.readouterr().out.startswith("pretrain: reusing the finished run")
    with pytest.raises(RunError, match=r"holds a different run \(profile.data.qa_share: 0.0 there, 0.25 now\)"):
        ensure_run("pretrain", tiny_profile(**settings, **{"data.qa_share": 0.25}), out, progress=False)
    # what a pretraining never reads does not count: the same pretraining, whatever finetuning follows it
    unread = {"finetune.max_steps": 99, "data.yes_no_fact": "asked", "data.instruction_limit": 5,
              "data.position_offset": 7}
    ensure_run("pretrain", tiny_profile(**{**settings, **unread}), out, progress=False)
    assert capsys.readouterr().out.startswith("pretrain: reusing the finished run")
    with pytest.raises(RunError, match=r"holds a different run \(profile.data.instruction_limit: 200 there, 5 now; "
                                       r"profile.data.qa_share: 0.0 there, 0.25 now; profile.data.yes_no_fact: "):
        ensure_run("pretrain", tiny_profile(**{**settings, **unread, "data.qa_share": 0.25}), out, progress=False)


def _assert_same_run(resumed, whole) -> None:
    """The same records (timings aside) and the same final weights, to the last bit."""
    from safetensors.torch import load_file

    keys = ("step", "epoch", "tokens", "train_loss", "learning_rate", "grad_norm", "eval_loss")
    assert [[r.get(k) for k in keys] for r in read_metrics(resumed)] == [[r.get(k) for k in keys]
                                                                         for r in read_metrics(whole)]
    a, b = load_file(resumed / "model.safetensors"), load_file(whole / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not list(resumed.glob(".*tmp*"))


def test_trainer_engine_resumes_after_a_crash_to_the_same_run(tmp_path, capsys):
    """Trainer restarts its logging window at a checkpoint, so here checkpoints fall on logging steps."""
    settings = {**TINY, "pretrain.max_steps": 10, "pretrain.log_every": 2, "pretrain.save_every": 4,
                "pretrain.eval_every": 4, "pretrain.warmup_steps": 2, "pretrain.keep_checkpoints": 0,
                "data.train_stories": 300, "model.resid_pdrop": 0.1, "model.embd_pdrop": 0.1, "model.attn_pdrop": 0.1}
    args = ["pretrain", "--quiet", "--engine", "hf", *_sets(settings)]
    whole = _in_process(capsys, *args, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-3000:]
    out = tmp_path / "crashed"
    crashed = _cli(*args, "--out", str(out), env={"HELPERS_CRASH_AFTER_STEP": "6"}, timeout=600)
    assert crashed.returncode == -signal.SIGKILL
    assert latest_checkpoint(out) == checkpoint_dir(out, 4) and read_metrics(out)[-1]["step"] == 6
    again = _in_process(capsys, *args, "--out", str(out), "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    _assert_same_run(out, tmp_path / "whole")


# ------------------------------------------------------------------ two processes (DDP, gloo)


def test_two_processes_match_one(tmp_path):
    settings = {**TINY, **NO_DROPOUT, "pretrain.max_steps": 8, "pretrain.log_every": 2, "pretrain.eval_every": 4,
                "pretrain.save_every": 4, "pretrain.batch_size": 4, "data.train_stories": 300}
    one = _cli("pretrain", "--quiet", "--out", str(tmp_path / "one"),
               *_sets({**settings, "pretrain.grad_accum": 2}), timeout=600)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "helpers", "pretrain", "--quiet", "--out", str(tmp_path / "two"), *_sets(settings)],
                         capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [2, 4, 6, 8]
    assert [r["tokens"] for r in a] == [r["tokens"] for r in b]
    for x, y in zip(a, b):
        assert y["train_loss"] == pytest.approx(x["train_loss"], rel=1e-5)
        assert ("eval_loss" in x) == ("eval_loss" in y) == (x["step"] % 4 == 0)
        if "eval_loss" in x:
            assert y["eval_loss"] == pytest.approx(x["eval_loss"], rel=1e-5)
    assert json.loads((tmp_path / "two" / "run.json").read_text())["world_size"] == 2
    assert {p.name for p in (tmp_path / "two" / "checkpoint-8").glob("rng-*")} == {"rng-0.pt", "rng-1.pt"}


def test_two_processes_resume_after_a_crash_to_the_same_run(tmp_path):
    settings = {**TINY, "pretrain.max_steps": 8, "pretrain.log_every": 2, "pretrain.eval_every": 4,
                "pretrain.save_every": 3, "pretrain.batch_size": 4, "pretrain.keep_checkpoints": 0,
                "data.train_stories": 300}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "-m", "helpers", "pretrain", "--quiet", *_sets(settings)]

    def launch(out, *extra, env=None):
        return subprocess.run([*torchrun, "--out", str(out), *extra], capture_output=True, text=True,
                              env={**os.environ, **(env or {})}, timeout=600)

    whole = launch(tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    out = tmp_path / "crashed"
    assert launch(out, env={"HELPERS_CRASH_AFTER_STEP": "5"}).returncode != 0  # both processes killed after step 5
    assert latest_checkpoint(out) == checkpoint_dir(out, 3) and read_metrics(out)[-1]["step"] == 4
    state = torch.load(checkpoint_dir(out, 3) / "trainer_state.pt", weights_only=False)
    assert len(state["window_losses"]) == 1  # step 3, logged only at step 4
    again = launch(out, "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming after step 3" in again.stdout
    _assert_same_run(out, tmp_path / "whole")


# ------------------------------------------------------------------ the paper's Trainer beside the fast engine


def _assert_same_records(fast_run, hf_run, steps: list[int]) -> None:
    """Both engines logged the same steps, tokens, losses, gradient norms and learning rates."""
    fast, hf = read_metrics(fast_run), read_metrics(hf_run)
    assert [r["step"] for r in fast] == [r["step"] for r in hf] == steps
    for x, y in zip(fast, hf):
        assert x["tokens"] == y["tokens"]
        for key in ("train_loss", "grad_norm", "eval_loss", "learning_rate"):
            assert (x.get(key) is None) == (y.get(key) is None), (x, y)
            if x.get(key) is not None:
                assert y[key] == pytest.approx(x[key], rel=2e-5), (key, x["step"])


def test_fast_engine_equals_trainer(tmp_path):
    profile = tiny_profile(**NO_DROPOUT, **{"pretrain.max_steps": 10, "pretrain.grad_accum": 2,
                                            "pretrain.log_every": 2, "pretrain.eval_every": 5})
    pretrain(profile, tmp_path / "fast", engine="fast", progress=False)
    pretrain(profile, tmp_path / "hf", engine="hf", progress=False)
    _assert_same_records(tmp_path / "fast", tmp_path / "hf", [2, 4, 5, 6, 8, 10])
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(tmp_path / "hf").num_parameters() == 496_640


def test_compiled_blocks_train_as_the_eager_ones(tmp_path):
    """``pretrain.compile=true`` compiles each block in place (here on the CPU): same losses, same saved names."""
    from safetensors.torch import load_file
    from torch._dynamo.utils import counters

    sets = {**NO_DROPOUT, "model.n_layer": 1, "pretrain.max_steps": 3, "pretrain.warmup_steps": 1, "pretrain.log_every": 1,
            "pretrain.eval_every": 0, "pretrain.save_every": 3}
    pretrain(tiny_profile(**sets), tmp_path / "eager", progress=False)
    counters.clear()
    pretrain(tiny_profile(**sets, **{"pretrain.compile": True}), tmp_path / "compiled", progress=False)
    assert counters["stats"]["unique_graphs"] >= 1  # dynamo really compiled something
    eager, compiled = ([r["train_loss"] for r in read_metrics(tmp_path / name)] for name in ("eager", "compiled"))
    assert len(eager) == 3 and compiled == pytest.approx(eager, rel=1e-5)
    saved = [load_file(tmp_path / name / "model.safetensors") for name in ("eager", "compiled")]
    assert saved[0].keys() == saved[1].keys() and all(
        torch.allclose(saved[0][k], saved[1][k], atol=1e-5) for k in saved[0])


def test_fast_engine_equals_trainer_when_finetuning(tmp_path, pretrained_run):
    """Padded instruction batches, a masked prompt and accumulation: both engines log the same numbers."""
    from helpers.train import finetune

    # One validation batch holds all 20 held-out examples: Trainer averages batch means, the fast
    # engine weighs every scored token alike, and the two agree only when there is one batch.
    profile = tiny_profile(**{"finetune.max_steps": 6, "finetune.grad_accum": 2, "finetune.log_every": 2,
                              "finetune.eval_every": 3, "finetune.save_every": 0, "finetune.eval_batch_size": 20,
                              "finetune.eval_max_batches": None})
    finetune(profile, tmp_path / "fast", init=pretrained_run, engine="fast", progress=False)
    finetune(profile, tmp_path / "hf", init=pretrained_run, engine="hf", progress=False)
    _assert_same_records(tmp_path / "fast", tmp_path / "hf", [2, 3, 4, 6])
    assert json.loads((tmp_path / "hf" / "run.json").read_text())["init"] == str(pretrained_run)


# ------------------------------------------------------------------ bf16 output layer on a CPU


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="this CPU has no native bf16")
def test_cpu_bf16_computes_only_the_output_layer_in_bf16(tmp_path, capsys):
    steps = {**NO_DROPOUT, "pretrain.max_steps": 10, "pretrain.log_every": 2, "pretrain.eval_every": 5,
             "pretrain.save_every": 0}
    pretrain(tiny_profile(**steps), tmp_path / "fp32", progress=False)
    pretrain(tiny_profile(**steps, **{"pretrain.precision": "bf16", "pretrain.loss": "chunked"}), tmp_path / "bf16",
             progress=False)
    pretrain(tiny_profile(**steps, **{"pretrain.precision": "bf16", "pretrain.loss": "full"}), tmp_path / "full",
             progress=False)
    printed = capsys.readouterr().out
    assert "on cpu in bf16 (output layer; blocks in fp32)" in printed
    assert "note: bf16 asked for, but cpu runs fp32" in printed  # the full loss has no bf16 path on a CPU
    runs = {name: json.loads((tmp_path / name / "run.json").read_text()) for name in ("fp32", "bf16", "full")}
    assert [runs[n]["precision"] for n in ("fp32", "bf16", "full")] == ["fp32", "bf16", "fp32"]
    fp32, bf16 = read_metrics(tmp_path / "fp32"), read_metrics(tmp_path / "bf16")
    for x, y in zip(fp32, bf16):
        for key in ("train_loss", "eval_loss"):
            if x.get(key) is not None:  # bf16 products: close to fp32, but not the same numbers
                assert y[key] == pytest.approx(x[key], rel=5e-3), (key, x["step"])
    assert any(x["train_loss"] != y["train_loss"] for x, y in zip(fp32, bf16))
    from safetensors.torch import load_file

    assert {t.dtype for t in load_file(tmp_path / "bf16" / "model.safetensors").values()} == {torch.float32}


# ------------------------------------------------------------------ failures


def test_gpu_loss_libraries_are_refused_on_a_cpu_and_named_when_missing(tmp_path):
    from helpers.model import MissingLossLibrary, external_head
    from helpers.runs import RunError

    for loss in ("cce", "liger"):
        with pytest.raises(RunError, match=f"pretrain.loss='{loss}' runs Triton kernels and needs a CUDA GPU"):
            pretrain(tiny_profile(**{"pretrain.loss": loss, "device": "cpu"}), tmp_path / loss, progress=False)
        assert not (tmp_path / loss).exists()
    package = {"cce": "cut-cross-entropy", "liger": "liger-kernel"}
    for loss, module in (("cce", "cut_cross_entropy"), ("liger", "liger_kernel")):
        if importlib.util.find_spec(module) is not None:
            continue  # installed here: nothing to name
        with pytest.raises(MissingLossLibrary, match=f"loss='{loss}' needs the optional package {package[loss]} "
                                                     f"\\(pip install {package[loss]}\\)"):
            external_head(loss, torch.bfloat16)


def test_cli_trains_without_evaluation(tmp_path):
    """eval_every=0 (documented for benchmarks): no validation loss, and the summary line says so."""
    settings = {**TINY, "pretrain.max_steps": 4, "pretrain.warmup_steps": 1, "pretrain.eval_every": 0,
                "pretrain.save_every": 0}
    done = _cli("pretrain", "--quiet", "--out", str(tmp_path / "run"), *_sets(settings), timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == (
        f"pretrain done: 4 steps, last training loss {read_metrics(tmp_path / 'run')[-1]['train_loss']:.3f}, "
        f"no evaluation (eval_every=0); model in {tmp_path / 'run'}")
    assert all("eval_loss" not in r for r in read_metrics(tmp_path / "run"))


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "boom"
    profile = tiny_profile(**{"pretrain.learning_rate": 1e6, "pretrain.warmup_steps": 3, "pretrain.max_grad_norm": 1e30,
                              "pretrain.log_every": 1, "pretrain.save_every": 1, "pretrain.eval_every": 100})
    with pytest.raises(TrainingDiverged) as err:
        pretrain(profile, out, progress=False)
    message = str(err.value)
    step = int(message.split(" at step ")[1].split(";")[0].split(" ")[0])
    assert message.startswith("pretrain loss became nan at step ") or " weights became non-finite " in message
    assert message.endswith(f"The last good checkpoint is {checkpoint_dir(out, step - 1)}.")
    from safetensors.torch import load_file

    weights = load_file(str(checkpoint_dir(out, step - 1) / "model.safetensors"))
    assert all(bool(torch.isfinite(t).all()) for t in weights.values())
    assert not (out / "model.safetensors").exists()


def test_cli_refuses_bad_requests_and_touches_nothing(tmp_path, pretrained_run, capsys):
    _cli = functools.partial(_in_process, capsys)  # a real process refuses the same way: test_settings_property
    missing = _cli("finetune", "--out", str(tmp_path / "ft"), "--init", str(tmp_path / "nothing"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        f"error: init checkpoint '{tmp_path / 'nothing'}' not found or incomplete (missing config.json, "
        f"model.safetensors); run pretraining first: python -m helpers pretrain --out {tmp_path / 'nothing'}")
    assert not (tmp_path / "ft").exists()

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    busy = _cli("pretrain", "--out", str(other))
    assert busy.returncode == 2 and "already holds files that are not a run of this package (notes.txt)" in busy.stderr
    assert [p.name for p in other.iterdir()] == ["notes.txt"]

    before = sorted(p.name for p in pretrained_run.iterdir())
    again = _cli("pretrain", "--out", str(pretrained_run), *_sets(TINY))
    assert again.returncode == 2 and "already holds a run; pass --resume" in again.stderr
    changed = _cli("pretrain", "--out", str(pretrained_run), "--resume", *_sets({**TINY, "pretrain.learning_rate": 1}))
    assert changed.returncode == 2
    assert "holds a different run (profile.pretrain.learning_rate: 0.003 there, 1.0 now)" in changed.stderr
    assert sorted(p.name for p in pretrained_run.iterdir()) == before

    typo = _cli("pretrain", "--out", str(tmp_path / "x"), "--set", "pretrain.lr=1")
    assert typo.returncode == 2
    assert typo.stderr.strip() == "error: unknown setting 'pretrain.lr' (did you mean 'pretrain.learning_rate'?)"
    flag = _cli("pretrain", "--out", str(tmp_path / "x"), "--engine", "turbo")
    assert flag.returncode == 2 and "invalid choice: 'turbo'" in flag.stderr
    assert not (tmp_path / "x").exists()


def test_help_explains_every_option(capsys):
    _cli = functools.partial(_in_process, capsys)
    out = _cli("pretrain", "--help")
    assert out.returncode == 0
    for option in ("--profile", "--set", "--out", "--resume", "--engine", "--data", "--quiet"):
        assert option in out.stdout
    assert "--init" in _cli("finetune", "--help").stdout


def test_a_position_offset_reads_examples_further_right(tmp_path, pretrained_run):
    """Finetuning at positions shifted by k equals finetuning, unshifted, a copy whose position rows moved up by k."""
    from safetensors.torch import load_file, save_file

    from helpers.train import finetune

    k = 40
    shifted = tmp_path / "shifted-init"
    shutil.copytree(pretrained_run, shifted, ignore=shutil.ignore_patterns("checkpoint-*"))
    weights = load_file(shifted / "model.safetensors")
    wpe = weights["transformer.wpe.weight"]
    weights["transformer.wpe.weight"] = torch.cat([wpe[k:], wpe[:k]])  # row i now holds what row i + k held
    save_file(weights, shifted / "model.safetensors", metadata={"format": "pt"})
    steps = {"finetune.max_steps": 4, "finetune.log_every": 2, "finetune.eval_every": 2, "finetune.save_every": 0}
    finetune(tiny_profile(**steps, **{"data.position_offset": k}), tmp_path / "offset", init=pretrained_run,
             progress=False)
    finetune(tiny_profile(**steps), tmp_path / "moved", init=shifted, progress=False)
    offset, moved = read_metrics(tmp_path / "offset"), read_metrics(tmp_path / "moved")
    for key in ("train_loss", "eval_loss", "grad_norm"):
        assert [r.get(key) for r in offset] == pytest.approx([r.get(key) for r in moved], rel=1e-5), key
    from helpers.config import ConfigError

    with pytest.raises(ConfigError, match=r"data.position_offset=1000: data.position_offset \+ "
                                          r"data.instruction_max_length \(512\) must be <= model.n_positions \(1024\)"):
        tiny_profile(**steps, **{"data.position_offset": 1000})  # refused before any run starts
