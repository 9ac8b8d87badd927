"""One training engine for pretraining and finetuning, plus the paper's ``Trainer`` beside it.

``engine="fast"`` is a plain PyTorch loop (AdamW, warm-up then cosine,
gradient accumulation, clipping at 1.0, mixed precision on GPUs (and a bf16
output layer on CPUs that multiply bf16 natively),
DistributedDataParallel under ``torchrun``) that computes the loss with the
chunked output layer of :mod:`helpers.model`. ``engine="hf"`` runs the same
recipe through ``transformers.Trainer`` with the paper's
``TrainingArguments``. Both write ``<run>/metrics.jsonl``: one JSON object per
logging or evaluation step, the only input of every figure.

A run folder holds ``run.json`` (what was run), ``metrics.jsonl``, the final
model in Hugging Face format (``from_pretrained(run)`` works) and
``checkpoint-N`` folders (model, tokenizer, optimizer, scheduler, scaler, RNG
states). Checkpoints are written under a temporary name and renamed, so a
killed run never leaves half of one; ``resume=True`` continues from the last
one exactly.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal

from .config import Profile, TrainConfig

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "RunError",
    "TrainingDiverged",
    "RunResult",
    "cosine_with_warmup",
    "warmup_steps_for",
    "pretrain",
    "finetune",
    "train",
    "ensure_run",
    "read_metrics",
    "latest_checkpoint",
]

Stage = Literal["pretrain", "finetune"]
MODEL_FILES = ("config.json", "model.safetensors")


class RunError(RuntimeError):
    """A run that cannot start: bad init checkpoint, a folder holding another run, ..."""


class TrainingDiverged(RuntimeError):
    """The training loss stopped being a finite number."""


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
        return math.exp(self.eval_loss) if self.eval_loss is not None else None


# ---------------------------------------------------------------- schedule


def cosine_with_warmup(step: int, warmup: int, total: int) -> float:
    """Learning-rate multiplier: linear from 0 over ``warmup`` steps, then half a cosine to 0.

    The same numbers as ``transformers.get_cosine_schedule_with_warmup``.
    """
    if step < warmup:
        return step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def warmup_steps_for(cfg: TrainConfig, total_steps: int) -> int:
    """``warmup_steps`` when set, else ``ceil(warmup_ratio * total)``, as Trainer does."""
    return cfg.warmup_steps if cfg.warmup_steps > 0 else math.ceil(total_steps * cfg.warmup_ratio)


# ---------------------------------------------------------------- processes


@dataclass
class _Dist:
    rank: int
    world: int
    device: "torch.device"

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def all_sum(self, tensor: "torch.Tensor") -> "torch.Tensor":
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(tensor)
        return tensor


def _setup_processes(device: str) -> _Dist:
    """One process, or one of ``torchrun``'s (nccl on GPUs, gloo on CPUs)."""
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and world > 1:
        device = f"cuda:{local}"
    dev = torch.device(device)
    if dev.type == "cuda":
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(dev)
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return _Dist(rank, world, dev)


def _precision(requested: str, device: "torch.device", loss: str = "full") -> str:
    """What can actually run.

    GPUs run what is asked. CPUs run fp32, with one exception: ``bf16`` with
    the chunked loss, on a CPU that multiplies bf16 natively (AVX-512 BF16 or
    AMX), computes the output layer and its cross-entropy in bf16 (fp32
    softmax and accumulation) and leaves the blocks in fp32. That layer is
    most of a CPU step and its products run 1.6-3x faster in bf16, while
    autocasting the small blocks makes them slower.
    """
    import torch

    if device.type != "cuda":
        native = bool(getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)())
        return "bf16" if requested == "bf16" and loss == "chunked" and native else "fp32"
    if requested == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return requested


# ---------------------------------------------------------------- data


class _Batches:
    """Deterministic micro-batches: the same step always sees the same examples.

    Epoch ``e`` visits the items in ``randperm(n, seed + e)``; optimizer step
    ``s`` takes the next ``batch x accum x world`` of them, and micro-batch
    ``m`` of rank ``r`` takes slice ``(m * world + r)``. The global batch of a
    step is therefore the same whatever the split into processes and
    accumulation, and resuming at step ``s`` needs nothing but ``s``.
    """

    def __init__(self, n_items: int, cfg: TrainConfig, world: int, device=None):
        self.n, self.batch, self.accum, self.world, self.seed = n_items, cfg.batch_size, cfg.grad_accum, world, cfg.seed
        self.global_batch = self.batch * self.accum * self.world
        self.steps_per_epoch = n_items // self.global_batch
        self.device = device  # where the order lives: on a GPU, no copy per step
        self._perm_epoch, self._perm = -1, None

    def order(self, epoch: int) -> "torch.Tensor":
        import torch

        if epoch != self._perm_epoch:
            gen = torch.Generator().manual_seed(self.seed + epoch)
            perm = torch.randperm(self.n, generator=gen)
            self._perm, self._perm_epoch = (perm if self.device is None else perm.to(self.device)), epoch
        return self._perm

    def step_items(self, step: int) -> "torch.Tensor":
        epoch, within = divmod(step, self.steps_per_epoch)
        start = within * self.global_batch
        return self.order(epoch)[start:start + self.global_batch]

    def micro_items(self, step: int, micro: int, rank: int) -> "torch.Tensor":
        start = (micro * self.world + rank) * self.batch
        return self.step_items(step)[start:start + self.batch]


class _TokenCount:
    """Input tokens (padding excluded) seen after each optimizer step, computed once per step."""

    def __init__(self, data, batches: _Batches):
        self.data, self.batches, self.cumulative = data, batches, [0]

    def after(self, steps: int) -> int:
        while len(self.cumulative) <= steps:
            step = len(self.cumulative) - 1
            self.cumulative.append(self.cumulative[-1] + self.data.token_count(self.batches.step_items(step)))
        return self.cumulative[steps]


class _PretrainData:
    """Packed blocks; on a GPU the whole token array lives in device memory."""

    def __init__(self, blocks, device):
        import numpy as np
        import torch

        array = np.asarray(blocks.array)
        self.tokens = torch.from_numpy(array.astype(np.int32)).to(device)
        self.block = array.shape[1]
        self.device = device

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def batch(self, items: "torch.Tensor") -> dict:
        ids = self.tokens[items.to(self.tokens.device)].long()
        return {"input_ids": ids, "attention_mask": None, "labels": ids}

    def scored(self, items: "torch.Tensor") -> int:
        return len(items) * (self.block - 1)

    def token_count(self, items: "torch.Tensor") -> int:
        return len(items) * self.block


class _FinetuneData:
    """Encoded instruction examples, right-padded per micro-batch."""

    def __init__(self, examples, pad_id: int, device):
        self.examples, self.pad_id, self.device = examples, pad_id, device
        self.n_scored = [sum(1 for x in e["labels"][1:] if x != -100) for e in examples]
        self.lengths = [len(e["input_ids"]) for e in examples]

    def __len__(self) -> int:
        return len(self.examples)

    def batch(self, items: "torch.Tensor") -> dict:
        from .data import pad_batch

        out = pad_batch([self.examples[i] for i in items.tolist()], self.pad_id)
        return {k: v.to(self.device, non_blocking=True) for k, v in out.items()}

    def scored(self, items: "torch.Tensor") -> int:
        return sum(self.n_scored[i] for i in items.tolist())

    def token_count(self, items: "torch.Tensor") -> int:
        return sum(self.lengths[i] for i in items.tolist())


def _prepare_data(stage: Stage, profile: Profile, tokenizer, device, dist: _Dist, progress: bool):
    """Train and validation data of a stage (rank 0 fills the cache, the others wait)."""
    from .data import finetuning_examples, pretraining_blocks

    if stage == "pretrain":
        def build():
            return (pretraining_blocks(profile.data, "train", tokenizer, progress=progress and dist.main),
                    pretraining_blocks(profile.data, "validation", tokenizer, progress=progress and dist.main))
    else:
        def build():
            return finetuning_examples(profile.data, tokenizer)
    if dist.main:
        train_part, val_part = build()
        dist.barrier()
    else:
        dist.barrier()
        train_part, val_part = build()
    if stage == "pretrain":
        summary = {"train_blocks": len(train_part), "val_blocks": len(val_part),
                   "train_tokens": train_part.meta["tokens"], "tokens_dropped": train_part.meta["tokens_dropped"],
                   "train_stories": train_part.meta["stories"], "block_size": train_part.meta["block_size"]}
        return _PretrainData(train_part, device), _PretrainData(val_part, device), summary
    summary = {"train_examples": len(train_part), "val_examples": len(val_part),
               "train_tokens": train_part.tokens, "dropped_too_long": train_part.dropped + val_part.dropped}
    pad = tokenizer.eos_token_id
    return _FinetuneData(train_part.examples, pad, device), _FinetuneData(val_part.examples, pad, device), summary


# ---------------------------------------------------------------- model pieces


def _loss_module(model, loss: str, chunk: int, dtype):
    """The model plus its loss as one module, so DDP and compile see a single forward.

    Its forward returns (summed loss, scored tokens) whichever way the output
    layer is computed.
    """
    import torch

    from .model import lm_loss

    head = _external_head(loss, dtype) if loss in {"cce", "liger"} else None

    class CausalLMLoss(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask=None, labels=None):
            if loss == "full":
                out = self.model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
                count = (labels[:, 1:] != -100).sum()
                return out.loss.float() * count, count
            hidden = self.model.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            if head is not None:
                return head(hidden, self.model.lm_head.weight, labels), (labels[:, 1:] != -100).sum()
            return lm_loss(hidden, self.model.lm_head.weight, labels, chunk, dtype)

    return CausalLMLoss()


def _external_head(loss: str, dtype):
    """Summed next-token loss from an optional GPU library (imported only when asked for)."""
    import torch

    dtype = dtype or torch.float32
    try:
        if loss == "cce":
            from cut_cross_entropy import linear_cross_entropy

            # filter_eps=None: exact gradients. CCE's default skips softmax
            # entries below a threshold, which early in training (a nearly
            # uniform softmax over 50257 tokens) drops most of the gradient:
            # measured on an H200, loss 6.42 instead of 6.02 after 200 steps.
            def cce(hidden, weight, labels):
                return linear_cross_entropy(hidden.to(dtype), weight.to(dtype), labels, reduction="sum",
                                            shift=True, filter_eps=None).float()

            return cce
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        fused = LigerFusedLinearCrossEntropyLoss(reduction="sum")

        def liger(hidden, weight, labels):
            rows = hidden[:, :-1].reshape(-1, hidden.shape[-1]).to(dtype)
            return fused(weight.to(dtype), rows, labels[:, 1:].reshape(-1)).float()

        return liger
    except ImportError as err:
        package = {"cce": "cut-cross-entropy", "liger": "liger-kernel"}[loss]
        raise RunError(f"loss={loss!r} needs the optional package {package} ({err})") from None


def _optimizer(model, cfg: TrainConfig, device):
    """AdamW with weight decay on every weight except biases and layer norms (Trainer's rule)."""
    import torch

    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if name.endswith(".bias") or ".ln_" in name else decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2),
                             eps=cfg.adam_epsilon, fused=device.type == "cuda")


def _rng_state() -> dict:
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------- run folders


def read_metrics(run_dir: str | Path) -> list[dict]:
    """Every record of ``<run>/metrics.jsonl`` in order."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise RunError(f"no metrics in {str(run_dir)!r}: train it first")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The complete checkpoint with the highest step, if any."""
    found = []
    for path in Path(run_dir).glob("checkpoint-*"):
        suffix = path.name.split("-", 1)[1]
        complete = (path / "trainer_state.pt").exists() or (path / "trainer_state.json").exists()  # ours or Trainer's
        if suffix.isdigit() and complete:
            found.append((int(suffix), path))
    return max(found)[1] if found else None


def _check_init(init: str | Path | None) -> Path | None:
    if init is None:
        return None
    path = Path(init)
    missing = [f for f in MODEL_FILES if not (path / f).exists()]
    if missing:
        raise RunError(
            f"init checkpoint {str(path)!r} not found or incomplete (missing {', '.join(missing)}); "
            "run pretraining first: python -m helpers pretrain --out " + str(path)
        )
    return path


def _describe(stage: Stage, engine: str, profile: Profile, init: Path | None, world: int) -> dict:
    return {"stage": stage, "engine": engine, "profile": profile.to_dict(),
            "init": str(init) if init else None, "world_size": world}


def _check_out_dir(out: Path, description: dict, resume: bool) -> None:
    """Refuse a folder that holds something else; touch nothing while checking."""
    if not out.exists():
        return
    if not out.is_dir():
        raise RunError(f"output path {str(out)!r} exists and is not a folder")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return
    run_file = out / "run.json"
    if not run_file.exists():
        raise RunError(
            f"output folder {str(out)!r} already holds files that are not a run of this package "
            f"({', '.join(entries[:3])}{', ...' if len(entries) > 3 else ''}); choose an empty folder"
        )
    if not resume:
        raise RunError(
            f"output folder {str(out)!r} already holds a run; pass --resume (resume=True) to continue "
            "it, or choose another folder"
        )
    previous = json.loads(run_file.read_text())
    diffs = _differences({key: previous.get(key) for key in description}, description)
    if diffs:
        raise RunError(f"cannot resume {str(out)!r}: it holds a different run ({'; '.join(diffs[:5])})")


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            out += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} there, {new!r} now"]


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _save_model_files(model, tokenizer, folder: Path) -> None:
    from .model import hf_quiet

    with hf_quiet():
        model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))


def _publish_final(model, tokenizer, out: Path) -> None:
    """The final model at the run's top level, each file replaced atomically."""
    tmp = out / ".final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    _save_model_files(model, tokenizer, tmp)
    for item in tmp.iterdir():
        os.replace(item, out / item.name)
    tmp.rmdir()


# ---------------------------------------------------------------- the loop


@dataclass
class _Window:
    """Training numbers since the last log line."""

    losses: list = field(default_factory=list)
    tokens: int = 0
    start: float = 0.0


def train(
    stage: Stage,
    profile: Profile,
    out_dir: str | Path,
    *,
    init: str | Path | None = None,
    resume: bool = False,
    engine: Literal["fast", "hf"] = "fast",
    progress: bool = True,
) -> RunResult:
    """Pretrain (``init=None``) or finetune (``init`` = a pretrained run) into ``out_dir``."""
    if engine not in {"fast", "hf"}:
        raise RunError(f"unknown engine {engine!r}; use 'fast' or 'hf'")
    if stage == "finetune" and init is None:
        raise RunError("finetuning needs init: the folder of a pretrained run")
    init_path = _check_init(init)
    out = Path(out_dir)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    description = _describe(stage, engine, profile, init_path, world)
    _check_out_dir(out, description, resume)
    if engine == "hf":
        return _train_hf(stage, profile, out, init_path, resume, progress, description)
    return _train_fast(stage, profile, out, init_path, resume, progress, description)


def ensure_run(
    stage: Stage,
    profile: Profile,
    out_dir: str | Path,
    *,
    init: str | Path | None = None,
    engine: Literal["fast", "hf"] = "fast",
    progress: bool = True,
) -> RunResult:
    """Train unless ``out_dir`` already holds this very run, finished; resume it if it stopped halfway.

    What lessons call: rerunning a notebook reuses its finished run instead
    of training again or failing, and a folder holding a run with other
    settings is refused with the differences named.
    """
    out = Path(out_dir)
    run_file = out / "run.json"
    if run_file.exists():
        init_path = _check_init(init)
        description = _describe(stage, engine, profile, init_path, int(os.environ.get("WORLD_SIZE", "1")))
        _check_out_dir(out, description, resume=True)
        if all((out / f).exists() for f in MODEL_FILES):
            records = read_metrics(out)
            trains = [r["train_loss"] for r in records if r.get("train_loss") is not None]
            evals = [r["eval_loss"] for r in records if r.get("eval_loss") is not None]
            print(f"{stage}: reusing the finished run in {out} (delete the folder to train again)", flush=True)
            return RunResult(out, records[-1]["step"], records[-1]["tokens"], trains[-1] if trains else None,
                             evals[-1] if evals else None, records[-1]["elapsed_s"])
        return train(stage, profile, out, init=init, resume=True, engine=engine, progress=progress)
    return train(stage, profile, out, init=init, engine=engine, progress=progress)


def pretrain(profile: Profile, out_dir: str | Path, **options) -> RunResult:
    """Pretrain the profile's model from scratch on its stories."""
    return train("pretrain", profile, out_dir, **options)


def finetune(profile: Profile, out_dir: str | Path, init: str | Path, **options) -> RunResult:
    """Instruction-tune the model found in ``init`` on the profile's instructions."""
    return train("finetune", profile, out_dir, init=init, **options)


def _load_model_and_tokenizer(stage: Stage, profile: Profile, init: Path | None):
    from transformers import AutoTokenizer

    from .data import profile_tokenizer
    from .model import build_model, load_model

    if init is None:
        tokenizer = profile_tokenizer(profile)
        model = build_model(profile.model, seed=profile.pretrain.seed)
    else:
        tokenizer = AutoTokenizer.from_pretrained(str(init))
        model = load_model(init)
    tokenizer.model_max_length = int(1e9)
    _seed_everything(getattr(profile, stage).seed)  # as Trainer does once the model exists
    return model, tokenizer


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _train_fast(stage, profile, out, init, resume, progress, description) -> RunResult:
    import torch
    from tqdm.auto import tqdm

    from .model import default_loss_chunk

    cfg: TrainConfig = getattr(profile, stage)
    dist = _setup_processes(profile.device)
    device = dist.device
    precision = _precision(cfg.precision, device, cfg.loss)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
        torch.backends.cudnn.allow_tf32 = cfg.tf32
    head_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    amp_dtype = head_dtype if device.type == "cuda" else None  # a CPU keeps its blocks in fp32

    model, tokenizer = _load_model_and_tokenizer(stage, profile, init)
    train_data, val_data, data_summary = _prepare_data(stage, profile, tokenizer, device, dist, progress)
    batches = _Batches(len(train_data), cfg, dist.world, device if stage == "pretrain" else None)
    if batches.steps_per_epoch == 0:
        raise RunError(f"{stage} data has {len(train_data)} items, fewer than one global batch of "
                       f"{batches.global_batch}; lower {stage}.batch_size or add data")
    total = cfg.max_steps or math.ceil(cfg.epochs * batches.steps_per_epoch)
    warmup = warmup_steps_for(cfg, total)
    if cfg.loss in {"cce", "liger"} and device.type != "cuda":
        raise RunError(f"{stage}.loss={cfg.loss!r} runs Triton kernels and needs a CUDA GPU; use 'chunked' here")

    model.to(device)
    model.train()
    optimizer = _optimizer(model, cfg, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_with_warmup(s, warmup, total))
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    chunk = cfg.loss_chunk or default_loss_chunk(device.type)
    if cfg.compile:  # in place, so parameter names (and checkpoints) stay unchanged
        (model if cfg.loss == "full" else model.transformer).compile(mode=cfg.compile_mode)
    module = _loss_module(model, cfg.loss, chunk, head_dtype)
    runner = module
    if dist.world > 1:
        runner = torch.nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None)
    counter = _TokenCount(train_data, batches)

    start_step, elapsed0, window = 0, 0.0, _Window()
    checkpoint = latest_checkpoint(out) if resume else None
    if checkpoint is not None:
        from safetensors.torch import load_file

        state = torch.load(checkpoint / "trainer_state.pt", map_location="cpu", weights_only=False)
        if state["world_size"] != dist.world:
            raise RunError(f"{checkpoint} was written by {state['world_size']} processes, not {dist.world}")
        model.load_state_dict(load_file(str(checkpoint / "model.safetensors")), strict=False)
        model.tie_weights()
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_step, elapsed0 = state["step"], state["elapsed_s"]
        window.losses = [torch.tensor(x, device=device) for x in state["window_losses"]]
        window.tokens = state["window_tokens"]
        _set_rng_state(torch.load(checkpoint / f"rng-{dist.rank}.pt", weights_only=False))
    elif resume and dist.main:
        _clear_run(out)
    metrics_path = out / "metrics.jsonl"
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / "run.json", {**description, "data": data_summary, "total_steps": total,
                                       "warmup_steps": warmup, "precision": precision, "device": str(device),
                                       "global_batch": batches.global_batch})
        _truncate_metrics(metrics_path, start_step)
        n_params = sum(p.numel() for p in model.parameters())
        print(f"{stage}: {n_params:,} parameters; {total} steps of {batches.global_batch} sequences "
              f"({cfg.batch_size} x {cfg.grad_accum} accumulation x {dist.world} processes) on "
              f"{device.type} in {precision}" + (" (output layer; blocks in fp32)" if head_dtype and amp_dtype is None else "")
              + (f"; resuming after step {start_step}" if start_step else ""),
              flush=True)
        if precision != cfg.precision and cfg.precision != "auto":
            print(f"note: {cfg.precision} asked for, but {device.type} runs {precision}", flush=True)
    dist.barrier()

    def autocast():
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=amp_dtype)

    def evaluate() -> float:
        model.eval()
        total_loss = torch.zeros((), dtype=torch.float64, device=device)
        count = torch.zeros((), dtype=torch.float64, device=device)
        n_batches = math.ceil(len(val_data) / cfg.eval_batch_size)
        if cfg.eval_max_batches:
            n_batches = min(n_batches, cfg.eval_max_batches)
        with torch.no_grad():
            for b in range(dist.rank, n_batches, dist.world):
                items = torch.arange(b * cfg.eval_batch_size, min((b + 1) * cfg.eval_batch_size, len(val_data)))
                with autocast():
                    loss_sum, n = module(**val_data.batch(items))
                total_loss += loss_sum.double()
                count += n
        dist.all_sum(total_loss)
        dist.all_sum(count)
        model.train()
        return float(total_loss / count)

    # At most one redraw a second: a notebook's progress widget sends messages per redraw, and
    # thousands of them overflow the kernel's output queue (nbval then loses the cell's end).
    bar = tqdm(total=total, initial=start_step, desc=stage, unit="step", disable=not (progress and dist.main),
               dynamic_ncols=True, mininterval=1.0)
    window.start = time.perf_counter()
    run_start = time.perf_counter() - elapsed0
    last_train, last_eval = None, None
    for step in range(start_step, total):
        items = batches.step_items(step)
        count = train_data.scored(items)
        lr = optimizer.param_groups[0]["lr"]
        step_loss = torch.zeros((), device=device)
        for micro in range(cfg.grad_accum):
            micro_items = batches.micro_items(step, micro, dist.rank)
            sync = micro == cfg.grad_accum - 1 or dist.world == 1
            context = contextlib.nullcontext() if sync else runner.no_sync()
            with context:
                with autocast():
                    loss_sum, _ = runner(**train_data.batch(micro_items))
                scaled = loss_sum * (dist.world / count)
                (scaler.scale(scaled) if scaler else scaled).backward()
            step_loss += loss_sum.detach()
        if scaler is not None:
            scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        window.losses.append(step_loss / count)
        done = step + 1
        window.tokens += counter.after(done) - counter.after(step)
        log_now = done % cfg.log_every == 0 or done == total
        eval_now = cfg.eval_every > 0 and (done % cfg.eval_every == 0 or done == total)
        save_now = cfg.save_every > 0 and (done % cfg.save_every == 0 or done == total)
        record: dict[str, Any] = {}
        if log_now or save_now:
            losses = dist.all_sum(torch.stack(window.losses)).cpu()
            bad = [i for i, x in enumerate(losses.tolist()) if not math.isfinite(x)]
            problem = None
            if bad:
                problem = f"loss became {losses[bad[0]].item()} at step {done - len(losses) + bad[0] + 1}"
            elif save_now and not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
                problem = f"weights became non-finite at step {done} (its loss was still finite)"
            if problem:
                bar.close()
                last_good = latest_checkpoint(out)
                raise TrainingDiverged(
                    f"{stage} {problem}; stopped. "
                    + (f"The last good checkpoint is {last_good}." if last_good else "No checkpoint was saved yet.")
                )
        if log_now:
            now = time.perf_counter()
            last_train = float(losses.mean())
            record.update(train_loss=last_train, learning_rate=lr, grad_norm=float(grad_norm),
                          tokens_per_sec=window.tokens / max(now - window.start, 1e-9))
            window.losses, window.tokens, window.start = [], 0, now
        if eval_now:
            last_eval = evaluate()
            record.update(eval_loss=last_eval, perplexity=math.exp(min(last_eval, 700.0)))
        if record and dist.main:
            record = {"step": done, "epoch": done / batches.steps_per_epoch,
                      "tokens": counter.after(done), **record,
                      "elapsed_s": time.perf_counter() - run_start}
            with metrics_path.open("a") as fh:
                fh.write(json.dumps(record) + "\n")
            bar.set_postfix({k: f"{record[k]:.4g}" for k in ("train_loss", "eval_loss", "tokens_per_sec") if k in record},
                            refresh=False)
        if save_now:
            _save_checkpoint(out, done, model, tokenizer, optimizer, scheduler, scaler, dist, cfg.keep_checkpoints, {
                "step": done, "elapsed_s": time.perf_counter() - run_start,
                "window_losses": [float(x) for x in window.losses], "window_tokens": window.tokens,
                "world_size": dist.world,
            })
        if eval_now or save_now:  # tokens/s measures training alone
            window.start = time.perf_counter()
        bar.update(1)
    bar.close()
    if dist.main:
        _publish_final(model, tokenizer, out)
    dist.barrier()
    return RunResult(out, total, counter.after(total), last_train, last_eval, time.perf_counter() - run_start)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop records after ``step`` (written after the checkpoint a resumed run restarts from)."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    tmp = path.with_name(".metrics.jsonl.tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)


def _clear_run(out: Path) -> None:
    """A resumed run with no checkpoint starts over: forget its metrics."""
    (out / "metrics.jsonl").unlink(missing_ok=True)


def _save_checkpoint(out: Path, step: int, model, tokenizer, optimizer, scheduler, scaler, dist: _Dist,
                     keep: int, state: dict) -> None:
    """Write ``checkpoint-<step>`` under a temporary name, then rename it; keep the newest ``keep``."""
    import torch

    final, tmp = out / f"checkpoint-{step}", out / f".checkpoint-{step}.tmp"
    if dist.main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    torch.save(_rng_state(), tmp / f"rng-{dist.rank}.pt")
    dist.barrier()
    if dist.main:
        _save_model_files(model, tokenizer, tmp)
        torch.save({**state, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None}, tmp / "trainer_state.pt")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        checkpoints = sorted((int(p.name.split("-")[1]), p) for p in out.glob("checkpoint-*")
                             if p.name.split("-")[1].isdigit())
        for _, old in checkpoints[:-keep] if keep > 0 else []:
            shutil.rmtree(old)
    dist.barrier()


# ---------------------------------------------------------------- the paper's Trainer


def _train_hf(stage, profile, out, init, resume, progress, description) -> RunResult:
    """The same run through ``transformers.Trainer`` with the paper's ``TrainingArguments``."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    cfg: TrainConfig = getattr(profile, stage)
    dist = _setup_processes(profile.device)
    device = dist.device
    precision = _precision(cfg.precision, device)
    model, tokenizer = _load_model_and_tokenizer(stage, profile, init)
    cpu = torch.device("cpu")
    train_data, val_data, data_summary = _prepare_data(stage, profile, tokenizer, cpu, dist, progress)
    batches = _Batches(len(train_data), cfg, dist.world)
    if batches.steps_per_epoch == 0:
        raise RunError(f"{stage} data has {len(train_data)} items, fewer than one global batch of "
                       f"{batches.global_batch}; lower {stage}.batch_size or add data")
    total = cfg.max_steps or math.ceil(cfg.epochs * batches.steps_per_epoch)
    warmup = warmup_steps_for(cfg, total)
    counter = _TokenCount(train_data, batches)
    checkpoint = latest_checkpoint(out) if resume else None
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / "run.json", {**description, "data": data_summary, "total_steps": total,
                                       "warmup_steps": warmup, "precision": precision, "device": str(device),
                                       "global_batch": batches.global_batch})
        _truncate_metrics(out / "metrics.jsonl", 0 if checkpoint is None else int(checkpoint.name.split("-")[1]))

    class Items(torch.utils.data.Dataset):
        def __init__(self, data):
            self.data = data

        def __len__(self):
            return len(self.data)

        def __getitem__(self, i):
            return i

    def collate(indices):
        batch = train_data.batch(torch.tensor(indices)) if collate.train else val_data.batch(torch.tensor(indices))
        return {k: v for k, v in batch.items() if v is not None}

    collate.train = True

    class SameOrder(torch.utils.data.Sampler):
        """The fast engine's order: epoch e is randperm(n, seed + e), one rank's share."""

        def __init__(self):
            self.epoch = 0

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __len__(self):
            return batches.steps_per_epoch * cfg.grad_accum * cfg.batch_size

        def __iter__(self):
            for step in range(self.epoch * batches.steps_per_epoch, (self.epoch + 1) * batches.steps_per_epoch):
                for micro in range(cfg.grad_accum):
                    yield from batches.micro_items(step, micro, dist.rank).tolist()

    class PaperTrainer(Trainer):
        def _get_train_sampler(self, train_dataset=None):
            return SameOrder()

        def _get_eval_sampler(self, eval_dataset):
            return torch.utils.data.SequentialSampler(eval_dataset)

        def evaluate(self, *args, **kwargs):
            collate.train = False
            try:
                return super().evaluate(*args, **kwargs)
            finally:
                collate.train = True

    metrics_path = out / "metrics.jsonl"

    class MetricsFile(TrainerCallback):
        """Trainer's logs in this package's metrics.jsonl format."""

        def __init__(self):
            self.pending: dict = {}
            self.start = time.perf_counter()
            self.last_time, self.last_tokens = self.start, 0

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            rec = self.pending.setdefault(state.global_step, {})
            if "loss" in logs:
                now = time.perf_counter()
                tokens = counter.after(state.global_step)
                rec.update(train_loss=logs["loss"], learning_rate=logs.get("learning_rate"),
                           grad_norm=logs.get("grad_norm"),
                           tokens_per_sec=(tokens - self.last_tokens) / max(now - self.last_time, 1e-9))
                self.last_time, self.last_tokens = now, tokens
            if "eval_loss" in logs:
                rec.update(eval_loss=logs["eval_loss"], perplexity=math.exp(min(logs["eval_loss"], 700.0)))
            rec.update(step=state.global_step, epoch=state.global_step / batches.steps_per_epoch,
                       tokens=counter.after(state.global_step), elapsed_s=time.perf_counter() - self.start)

        def flush(self, up_to: int):
            if not state_is_main:
                self.pending.clear()
                return
            with metrics_path.open("a") as fh:
                for step in sorted(s for s in self.pending if s <= up_to):
                    rec = self.pending.pop(step)
                    order = ["step", "epoch", "tokens", "train_loss", "learning_rate", "grad_norm",
                             "tokens_per_sec", "eval_loss", "perplexity", "elapsed_s"]
                    fh.write(json.dumps({k: rec[k] for k in order if k in rec}) + "\n")

        def on_step_begin(self, args, state, control, **kwargs):
            self.flush(state.global_step)

        def on_train_end(self, args, state, control, **kwargs):
            self.flush(state.global_step)

    state_is_main = dist.main
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        num_train_epochs=cfg.epochs,
        max_steps=total,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        adam_beta1=cfg.adam_beta1,
        adam_beta2=cfg.adam_beta2,
        adam_epsilon=cfg.adam_epsilon,
        max_grad_norm=cfg.max_grad_norm,
        lr_scheduler_type="cosine",
        warmup_steps=warmup,
        eval_strategy="steps" if cfg.eval_every > 0 else "no",
        eval_steps=cfg.eval_every if cfg.eval_every > 0 else None,
        logging_steps=cfg.log_every,
        save_strategy="steps" if cfg.save_every > 0 else "no",
        save_steps=cfg.save_every if cfg.save_every > 0 else 500,
        save_total_limit=cfg.keep_checkpoints,
        fp16=precision == "fp16",
        bf16=precision == "bf16",
        tf32=cfg.tf32 if device.type == "cuda" else None,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to="none",
        disable_tqdm=not (progress and dist.main),
        dataloader_drop_last=False,  # the sampler already yields whole global batches
        remove_unused_columns=False,
        use_cpu=device.type == "cpu",
        torch_compile=cfg.compile,
    )
    eval_items = Items(val_data)
    if cfg.eval_max_batches:
        eval_items = torch.utils.data.Subset(eval_items, range(min(len(val_data), cfg.eval_max_batches * cfg.eval_batch_size)))
    callback = MetricsFile()
    trainer = PaperTrainer(model=model, args=args, train_dataset=Items(train_data), eval_dataset=eval_items,
                           data_collator=collate, callbacks=[callback])
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    if dist.main:
        _publish_final(trainer.model, tokenizer, out)
        for path in out.glob("checkpoint-*"):  # Trainer's own checkpoints carry no tokenizer
            tokenizer.save_pretrained(str(path))
    records = read_metrics(out) if dist.main else []
    train_losses = [r["train_loss"] for r in records if r.get("train_loss") is not None]
    eval_losses = [r["eval_loss"] for r in records if r.get("eval_loss") is not None]
    return RunResult(out, total, counter.after(total), train_losses[-1] if train_losses else None,
                     eval_losses[-1] if eval_losses else None, time.perf_counter() - callback.start)
