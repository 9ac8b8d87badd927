"""Training throughput of the paper's model: the fast engine against the paper's ``Trainer`` setup.

Every variant is a real pretraining run of the ``paper`` profile's model
(3,582,016 parameters, GPT-2's 50257-token vocabulary, 128-token blocks) on
the same embedded-corpus data with the same seed, through
:func:`helpers.train.train`; the numbers are read back from the run's
``metrics.jsonl``. Tokens per second are taken per logging window (evaluation
and checkpoints excluded), the first windows (start-up, compilation) dropped,
and the median and spread reported over the remaining windows of all
repetitions. Repetitions alternate between variants, because these machines
drift over minutes.

    python benchmarks/train_throughput.py --device cpu
    python benchmarks/train_throughput.py --device cuda --json results.json

Model FLOPs utilisation (MFU) divides the model's training FLOPs per token
(3 x forward: 2 x parameters used per token, plus attention) by a dense
matrix-multiply rate measured in the same process (bf16 on GPUs, fp32 on
CPUs). Run it from the repository root with the package installed; GPT-2's
tokenizer comes from the hub's cache, ``$HELPERS_TOKENIZER`` or the copy
shipped with the package. ``--set key=value`` changes a setting for every
variant (``tests/test_benchmarks.py`` runs a one-layer model for seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.profiler

from helpers.config import get_profile, parse_overrides
from helpers.data import pretraining_blocks
from helpers.devices import describe_machine
from helpers.runs import read_metrics
from helpers.tokenizer import load_tokenizer
from helpers.train import train

# Variants: (name, engine, what it changes, overrides of the paper profile's pretraining).
CPU_VARIANTS = [
    ("hf", "hf", "transformers.Trainer, the paper's TrainingArguments", {}),
    ("fast-full", "fast", "plain PyTorch loop, full logits", {"pretrain.loss": "full"}),
    ("fast", "fast", "plain loop, chunked output layer + cross-entropy", {"pretrain.loss": "chunked"}),
    ("fast-bf16", "fast", "chunked, output layer in bf16 (blocks fp32)",
     {"pretrain.loss": "chunked", "pretrain.precision": "bf16"}),
]
CPU_COMPILE = [("fast-compile", "fast", "chunked + torch.compile of the blocks",
                {"pretrain.loss": "chunked", "pretrain.compile": True})]
B256 = {"pretrain.batch_size": 256, "pretrain.grad_accum": 1}
BF16 = {"pretrain.precision": "bf16"}
CUDA_VARIANTS = [
    ("hf", "hf", "transformers.Trainer, the paper's TrainingArguments (fp16, 32 x 8)", {"pretrain.precision": "fp16"}),
    ("fast-fp16", "fast", "fast loop, fp16 + grad scaler, full logits, 32 x 8",
     {"pretrain.precision": "fp16", "pretrain.loss": "full"}),
    ("fast-plain", "fast", "fast loop, bf16, full logits, 32 x 8", {"pretrain.loss": "full", **BF16}),
    ("fast-chunked", "fast", "bf16, chunked output layer, 32 x 8", {"pretrain.loss": "chunked", **BF16}),
    ("fast-chunked-b256", "fast", "bf16, chunked, one 256 x 128 micro-batch",
     {"pretrain.loss": "chunked", **B256, **BF16}),
    ("fast-compile-b256", "fast", "bf16, chunked, compiled blocks, 256 x 128",
     {"pretrain.loss": "chunked", "pretrain.compile": True, **B256, **BF16}),
    ("fast-liger-b256", "fast", "bf16, Liger fused linear CE, compiled blocks, 256 x 128",
     {"pretrain.loss": "liger", "pretrain.compile": True, **B256, **BF16}),
    ("fast-cce-b256", "fast", "bf16, Cut Cross-Entropy (exact), compiled blocks, 256 x 128",
     {"pretrain.loss": "cce", "pretrain.compile": True, **B256, **BF16}),
    ("fast-cce-graphs", "fast", "bf16, Cut Cross-Entropy (exact), blocks compiled with CUDA graphs, 256 x 128",
     {"pretrain.loss": "cce", "pretrain.compile": True, "pretrain.compile_mode": "reduce-overhead", **B256, **BF16}),
]
NO_DROPOUT = {"model.resid_pdrop": 0.0, "model.embd_pdrop": 0.0, "model.attn_pdrop": 0.0}


def train_flops_per_token(model, block: int) -> float:
    """3 x forward FLOPs: every weight used once per token (output layer included), plus causal attention."""
    width, layers = model.n_embd, model.n_layer
    dense = layers * 12 * width * width + model.vocab_size * width
    attention = layers * 2 * width * (block + 1) / 2  # scores and weighted values over the causal half
    return 3 * 2 * (dense + attention)


def matmul_tflops(device: str) -> float:
    """Dense matrix-multiply rate of this device: bf16 8192^3 on a GPU, fp32 2048^3 on a CPU."""
    if device == "cuda":
        n, dtype = 8192, torch.bfloat16
    else:
        n, dtype = 2048, torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = []
    for i in range(13):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - start)
    return 2 * n ** 3 / statistics.median(times) / 1e12


def run_variant(name: str, engine: str, overrides: dict, base: dict, steps: int, log_every: int,
                skip_windows: int, workdir: Path) -> dict:
    """One training run; tokens/s of its logging windows after ``skip_windows``."""
    # A timed run is shorter than the paper's 100 warm-up steps, which a profile may not exceed: the
    # learning rate changes nothing that is timed.
    warmup = min(get_profile("paper", {**base, **overrides}).pretrain.warmup_steps, steps)
    settings = {**base, **overrides, "pretrain.max_steps": steps, "pretrain.warmup_steps": warmup,
                "pretrain.log_every": log_every, "pretrain.eval_every": 0, "pretrain.save_every": 0}
    profile = get_profile("paper", settings)
    out = workdir / f"{name}-{time.time_ns()}"
    cuda = profile.device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    torch._dynamo.reset()
    started = time.perf_counter()
    train("pretrain", profile, out, engine=engine, progress=False)
    wall = time.perf_counter() - started
    records = [r for r in read_metrics(out) if r.get("train_loss") is not None]
    shutil.rmtree(out, ignore_errors=True)
    return {
        "windows": [r["tokens_per_sec"] for r in records[skip_windows:]],
        "losses": [(r["step"], r["train_loss"]) for r in records],
        "final_loss": records[-1]["train_loss"],
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9 if cuda else None,
        "wall_s": wall,
    }


def summarise(name: str, what: str, runs: list[dict], flops: float, peak_tflops: float) -> dict:
    windows = [w for run in runs for w in run["windows"]]
    if not windows:
        raise RuntimeError("no timed windows: raise --steps")
    median = statistics.median(windows)
    return {
        "variant": name, "what": what, "tokens_per_sec": median,
        "spread": [min(windows), max(windows)], "windows": len(windows),
        "mfu": median * flops / (peak_tflops * 1e12),
        "peak_memory_gb": max((r["peak_memory_gb"] or 0) for r in runs) or None,
        "final_loss": runs[-1]["final_loss"],
    }


def table(rows: list[dict], baseline: str) -> str:
    base = next((r["tokens_per_sec"] for r in rows if r["variant"] == baseline), None)
    lines = ["| variant | tokens/s (median) | spread | x Trainer | MFU | peak GPU memory | final loss | what |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        ratio = f"{r['tokens_per_sec'] / base:.2f}" if base else "-"
        memory = f"{r['peak_memory_gb']:.1f} GB" if r.get("peak_memory_gb") else "-"
        lines.append(f"| {r['variant']} | {r['tokens_per_sec']:,.0f} | {r['spread'][0]:,.0f}-{r['spread'][1]:,.0f} | "
                     f"{ratio} | {100 * r['mfu']:.1f}% | {memory} | {r['final_loss']:.3f} | {r['what']} |")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--variants", nargs="*", help="names to run (default: all for the device)")
    parser.add_argument("--compile", action="store_true", help="CPU: add the torch.compile variant (~70 s compile)")
    parser.add_argument("--steps", type=int, help="optimizer steps per run (default: cpu 8, cuda 60)")
    parser.add_argument("--log-every", type=int, help="steps per timed window (default: cpu 2, cuda 10)")
    parser.add_argument("--skip-windows", type=int, default=1, help="windows dropped as warm-up (default 1)")
    parser.add_argument("--repeats", type=int, help="alternating repetitions (default: cpu 3, cuda 1)")
    parser.add_argument("--stories", type=int, help="embedded stories to train on (default: cpu 3000, cuda 60000)")
    parser.add_argument("--compare-steps", type=int, default=0,
                        help="also train the plain path and --compare-variant this many steps without dropout "
                             "and report how far their loss curves are apart")
    parser.add_argument("--compare-variant", default="best", help="a variant name, or 'best' (the fastest measured)")
    parser.add_argument("--variant-set", choices=["cpu", "cuda"], help="which list of variants (default: the device's)")
    parser.add_argument("--profile-variant", help="also run this variant under torch.profiler and print its top kernels")
    parser.add_argument("--profile-steps", type=int, default=40)
    parser.add_argument("--budget-s", type=float, default=float("inf"), help="skip variants once this much time is spent")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting of the paper profile for every variant (e.g. a tiny model for a "
                             "smoke test: --set model.n_layer=1); repeatable")
    parser.add_argument("--json", type=Path, help="write all results here")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Time every variant, print the table and write the JSON file."""
    args = _parser().parse_args(argv)
    cuda = args.device == "cuda"
    steps = args.steps or (60 if cuda else 8)
    log_every = args.log_every or (10 if cuda else 2)
    repeats = args.repeats or (1 if cuda else 3)
    variant_set = args.variant_set or args.device
    variants = CUDA_VARIANTS if variant_set == "cuda" else CPU_VARIANTS + (CPU_COMPILE if args.compile else [])
    if args.variants:
        variants = [v for v in variants if v[0] in args.variants]
    base = {"device": args.device, "data.stories": "embedded", "data.train_stories": args.stories or (60000 if cuda else 3000),
            "data.val_stories_count": 100, "pretrain.eval_batch_size": 64}
    if not cuda:
        base.update({"pretrain.batch_size": 32, "pretrain.grad_accum": 1})
    base.update(parse_overrides(args.overrides))
    profile = get_profile("paper", base)
    tokenizer = load_tokenizer(profile.data)
    # tokenise once, outside every timing
    train_blocks = pretraining_blocks(profile.data, "train", tokenizer, progress=False)
    pretraining_blocks(profile.data, "validation", tokenizer, progress=False)
    flops = train_flops_per_token(profile.model, profile.data.block_size)
    peak = matmul_tflops(args.device)
    started = time.perf_counter()
    host = describe_machine(args.device)
    info = {"date": time.strftime("%Y-%m-%d"), "device": host["gpu"] or f"{host['cpu']} ({host['cores']} cores)",
            "machine": host,
            "torch": torch.__version__, "command": " ".join([Path(sys.argv[0]).name] + (argv or sys.argv[1:])),
            "train_flops_per_token": flops, "matmul_tflops": peak, "train_tokens": train_blocks.meta["tokens"],
            "steps": steps, "log_every": log_every, "repeats": repeats}
    print(f"{info['device']}: {peak:.1f} TFLOP/s dense matmul ({'bf16' if cuda else 'fp32'}); "
          f"{flops / 1e6:.2f} MFLOP per training token", flush=True)

    runs: dict[str, list[dict]] = {name: [] for name, *_ in variants}
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(repeats):
            for name, engine, what, overrides in variants:
                if name in errors:
                    continue
                if time.perf_counter() - started > args.budget_s:
                    errors.setdefault(name, "skipped: time budget spent")
                    continue
                try:
                    result = run_variant(name, engine, overrides, base, steps, log_every, args.skip_windows, Path(tmp))
                except Exception as err:  # one broken variant must not cost the others
                    errors[name] = f"{type(err).__name__}: {str(err)[:300]}"
                    print(f"{name}: failed: {errors[name]}", flush=True)
                    continue
                runs[name].append(result)
                print(f"{name} (repeat {rep + 1}): {statistics.median(result['windows'] or [0]):,.0f} tokens/s, "
                      f"loss {result['final_loss']:.3f}, {result['wall_s']:.0f} s", flush=True)
                _write(args.json, info, runs, errors, None, None)
        rows = [summarise(name, what, runs[name], flops, peak) for name, _, what, _ in variants if runs[name]]
        comparison = None
        if args.compare_steps and rows:
            fastest = max((r for r in rows if r["variant"] != "hf"), key=lambda r: r["tokens_per_sec"], default=None)
            name = fastest["variant"] if args.compare_variant == "best" and fastest else args.compare_variant
            comparison = compare_curves(name, base, args.compare_steps, Path(tmp), variants)
    _write(args.json, info, runs, errors, rows, comparison)
    if args.profile_variant:
        chosen = next((v for v in variants if v[0] == args.profile_variant), None)
        if chosen is not None:
            print(kernel_table(chosen, base, args.profile_steps))
    print()
    print(table(rows, "hf"))
    for name, error in errors.items():
        print(f"- {name}: {error}")
    if comparison:
        print(f"\nloss curves, plain vs {comparison['variant']}, {comparison['steps']} steps without dropout: "
              f"largest difference {comparison['max_abs_diff']:.4f} nats ({100 * comparison['max_rel_diff']:.2f}%), "
              f"final {comparison['final'][0]:.4f} vs {comparison['final'][1]:.4f}")
    return 0


def compare_curves(variant: str, base: dict, steps: int, workdir: Path, variants) -> dict | None:
    """Train the plain path and ``variant`` for ``steps`` steps (no dropout) and compare their losses."""
    chosen = next((v for v in variants if v[0] == variant), None)
    if chosen is None:
        return None
    plain = {"pretrain.loss": "full"}  # fp32 on a CPU; at the paper's 32 x 8 on a GPU
    if base["device"] == "cuda":
        plain.update({"pretrain.batch_size": 32, "pretrain.grad_accum": 8})
    curves = {}
    try:
        for label, overrides in (("plain", plain), (variant, chosen[3])):
            result = run_variant(label, "fast", {**overrides, **NO_DROPOUT}, base, steps, 10, 0, workdir)
            curves[label] = dict(result["losses"])
    except Exception as err:
        return {"variant": variant, "error": f"{type(err).__name__}: {str(err)[:300]}"}
    a, b = curves["plain"], curves[variant]
    common = sorted(set(a) & set(b))
    diffs = [abs(a[s] - b[s]) for s in common]
    return {"variant": variant, "steps": steps, "max_abs_diff": max(diffs),
            "max_rel_diff": max(abs(a[s] - b[s]) / a[s] for s in common),
            "final": [a[common[-1]], b[common[-1]]], "plain": a, "fast": b}


def kernel_table(variant, base: dict, steps: int = 40) -> str:
    """Where the time of one variant goes: its top kernels under torch.profiler (compilation included on the CPU side)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with tempfile.TemporaryDirectory() as tmp, torch.profiler.profile(activities=activities) as prof:
        run_variant(variant[0], variant[1], variant[3], base, steps, 10, 0, Path(tmp))
    sort = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    return f"profile of {variant[0]}, {steps} steps:\n" + prof.key_averages().table(sort_by=sort, row_limit=18)


def _write(path: Path | None, info: dict, runs: dict, errors: dict, rows, comparison) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**info, "results": rows, "runs": runs, "errors": errors,
                               "loss_curves": comparison}, indent=2, default=str))
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
