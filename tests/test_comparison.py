"""Setting two models side by side, and skipping cleanly when one cannot be loaded."""

from __future__ import annotations

import json
import time

from helpers.comparison import compare_models, load_comparison
from helpers.inference import Decoding
from helpers.runs import checkpoint_dir
from helpers.stories import corpus


# ----------------------------------------------------------------- comparison


def test_load_comparison_gpt2_skips_fast_without_hub(monkeypatch, capsys):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    start = time.perf_counter()
    loaded = load_comparison("gpt2")
    elapsed = time.perf_counter() - start
    assert loaded is None  # the suite's own Hugging Face cache (conftest) holds no gpt2
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "skipped" in lines[0] and "'gpt2'" in lines[0], lines
    assert elapsed < 5.0


def test_load_comparison_other_skip_paths(monkeypatch, capsys, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert load_comparison("helpers-tests/never-published-model") is None
    assert load_comparison(tmp_path) is None  # a folder without a model
    assert load_comparison(tmp_path / "missing") is None
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all("skipped" in line for line in lines)
    assert "HF_HUB_OFFLINE" in lines[0]


def test_compare_two_local_models(pre, pretrained_run, capsys):

    model, tok = pre
    early = load_comparison(checkpoint_dir(pretrained_run, 10))
    assert early is not None and capsys.readouterr().out == ""
    texts = [s.text for s in corpus("validation", 3)]
    prompts = ["Once upon a time,", "Lily had a red ball."]
    out = compare_models({"final": (model, tok), "step 10": early}, texts, prompts, decoding=Decoding(10),
                            progress=False)
    assert set(out["perplexity"]) == {"final", "step 10"}
    assert out["perplexity"]["final"]["word_perplexity"] < out["perplexity"]["step 10"]["word_perplexity"]
    assert out["perplexity"]["final"]["words"] == out["perplexity"]["step 10"]["words"]
    assert all(len(g["greedy"]) == len(g["sampled"]) == 2 for g in out["generations"].values())
    assert [r["model"] for r in out["repetition"]] == ["final, greedy", "final, sampled",
                                                       "step 10, greedy", "step 10, sampled"]
    assert out["judge"] is None
    json.dumps(out)

