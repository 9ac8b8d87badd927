"""Shared fixtures: the reference data beside the checkout, small profiles, one trained run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HELPERS_SHARED", ROOT.parent / "shared"))
DATA = SHARED / "data"
GPT2_TOKENIZER = DATA / "gpt2-tokenizer"
TINYSTORIES_TRAIN = DATA / "tinystories" / "TinyStories-train.first-2MiB.txt"
TINYSTORIES_VALID = DATA / "tinystories" / "TinyStories-validation.first-rows.hf-export.txt"
ALPACA_335 = DATA / "alpaca" / "alpaca_data.first335.json"
ALPACA_LONG = DATA / "alpaca" / "alpaca_data.long-outputs-2000.json"
PAPER = SHARED / "reference" / "story-based-qa-gpt-paper.txt"

# The suite is isolated from the user's environment, so that nothing set there turns a test into a skip
# or a pass: prepared data lives under build/, never in the user's cache; the Hugging Face cache is the
# suite's own (a gpt2 the user downloaded would make the comparison take another path); no experiment
# tracker or judge configured by the user is reached. The notebooks and subprocesses inherit all this.
os.environ["HELPERS_CACHE"] = str(ROOT / "build" / "test-cache")
os.environ["HF_HUB_CACHE"] = str(ROOT / "build" / "test-hf-cache")
for _name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_PROJECT", "WANDB_DIR", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
    os.environ.pop(_name, None)


def require_shared() -> None:
    if not GPT2_TOKENIZER.is_dir():
        pytest.fail(f"reference data not found at {DATA}; set HELPERS_SHARED to the shared/ folder")


TINY = {
    "device": "cpu",  # "auto" also says which device it chose: tests that read printed lines need none
    "data.block_size": 128,  # the lesson's 288 would make every tiny run twice as slow
    "data.train_stories": 600,
    "data.val_stories_count": 40,
    "pretrain.batch_size": 8,
    "pretrain.eval_batch_size": 16,
    "pretrain.max_steps": 30,
    "pretrain.warmup_steps": 5,
    "pretrain.log_every": 5,
    "pretrain.eval_every": 10,
    "pretrain.save_every": 10,
    "data.instruction_limit": 200,
    "finetune.batch_size": 4,
    "finetune.max_steps": 10,
    "finetune.log_every": 5,
    "finetune.eval_every": 5,
    "finetune.save_every": 5,
    "finetune.eval_max_batches": 2,
}


def tiny_profile(**overrides):
    """The lesson profile shrunk to seconds of training."""
    from helpers.config import get_profile

    return get_profile("lesson", {**TINY, **overrides})


@pytest.fixture(scope="session")
def gpt2_dir() -> Path:
    require_shared()
    return GPT2_TOKENIZER


@pytest.fixture(scope="session")
def pretrained_run(tmp_path_factory) -> Path:
    """A 30-step lesson-profile pretraining run (checkpoints at 10, 20, 30)."""
    from helpers.train import pretrain

    out = tmp_path_factory.mktemp("runs") / "pretrain"
    pretrain(tiny_profile(), out, progress=False)
    return out


@pytest.fixture(scope="session")
def finetuned_run(tmp_path_factory, pretrained_run) -> Path:
    """A 10-step finetuning run on story questions, started from ``pretrained_run``."""
    from helpers.train import finetune

    out = tmp_path_factory.mktemp("runs") / "finetune"
    finetune(tiny_profile(), out, init=pretrained_run, progress=False)
    return out


@pytest.fixture(scope="session")
def pre(pretrained_run):
    """The 30-step pretrained model and its tokenizer, loaded once."""
    from transformers import AutoTokenizer

    from helpers.model import load_model

    return load_model(pretrained_run), AutoTokenizer.from_pretrained(str(pretrained_run))


@pytest.fixture(scope="session")
def fin(finetuned_run):
    """The 10-step finetuned model and its tokenizer, loaded once."""
    from transformers import AutoTokenizer

    from helpers.model import load_model

    return load_model(finetuned_run), AutoTokenizer.from_pretrained(str(finetuned_run))
