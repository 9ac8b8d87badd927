"""Decoding speed: the KV cache of :func:`helpers.gpt.generate` against recomputing the whole prefix.

The paper profile's model (3,582,016 parameters, GPT-2's 50257-token
vocabulary, 1024 positions) continues a batch of story beginnings, tokenised
with GPT-2's BPE and left-padded, greedily for a fixed number of tokens (no
early stop at end-of-text, so every variant does the same work):

- ``cache``: :func:`helpers.gpt.generate`, the course's decoder: the prompt
  once, then one new token per step against the cached keys and values;
- ``recompute``: the same model rerun over the whole sequence at every step,
  only the last position projected onto the vocabulary (a fair baseline: the
  plain loop without the 50257-wide logits of every position);
- ``transformers``: ``GPT2LMHeadModel.generate`` on the same weights (its own
  cache), the decoder the package used before it had one.

All three must produce the same tokens (the script fails below 99% equal
tokens: a near-tie flipped by rounding is all it allows; the untrained
model's token table is scaled up 30x so that greedy choices are clear).
Variants alternate over ``--repeats`` and the median time is reported.

    python benchmarks/decode_cache.py --json benchmarks/results/decode-cache.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from helpers.config import get_profile, parse_overrides
from helpers.devices import describe_machine
from helpers.gpt import GPT, generate
from helpers.model import build_model, hf_model
from helpers.stories import story_prompts
from helpers.tokenizer import load_tokenizer


def prompt_batch(n: int, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` story beginnings of the embedded corpus, left-padded: token ids and attention mask."""
    encoded = [tokenizer(text)["input_ids"] for text, _ in story_prompts(n, seed=0)]
    width = max(len(ids) for ids in encoded)
    ids = torch.full((n, width), tokenizer.eos_token_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for row, prompt in enumerate(encoded):
        ids[row, width - len(prompt):] = torch.tensor(prompt)
        mask[row, width - len(prompt):] = 1
    return ids, mask


@torch.no_grad()
def recompute(model: GPT, ids: torch.Tensor, mask: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """Greedy decoding that reruns every layer over the whole sequence for each new token."""
    for _ in range(new_tokens):
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        hidden, _, _ = model.hidden_states(ids, attention_mask=mask, position_ids=positions)
        step = model.lm_head(hidden[:, -1]).argmax(-1, keepdim=True)
        ids, mask = torch.cat([ids, step], 1), torch.cat([mask, torch.ones_like(step)], 1)
    return ids


def variants(model: GPT, ids: torch.Tensor, mask: torch.Tensor, new_tokens: int) -> dict:
    hf = hf_model(model).eval()
    hf.generation_config.eos_token_id = None  # every variant writes all new_tokens

    @torch.no_grad()
    def with_transformers():
        return hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False,
                           pad_token_id=model.config.eos_token_id)

    return {
        "cache": lambda: generate(model, ids, new_tokens, attention_mask=mask, temperature=0),
        "recompute": lambda: recompute(model, ids, mask, new_tokens),
        "transformers": with_transformers,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    parser.add_argument("--variants", nargs="*", default=["cache", "recompute", "transformers"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="change a model setting of the paper profile, e.g. model.n_layer=1")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    profile = get_profile("paper", parse_overrides(args.overrides))
    model = build_model(profile.model, seed=0).eval()
    with torch.no_grad():  # untrained logits are nearly flat; 30x sharper, greedy choices are no near-ties
        model.wte.weight.mul_(30)
    ids, mask = prompt_batch(args.prompts, load_tokenizer(profile.data))
    runs = variants(model, ids, mask, args.new_tokens)
    outputs, times = {}, {name: [] for name in args.variants}
    for name, run in variants(model, ids[:2], mask[:2], 4).items():  # warm-up: first calls pay for set-up
        if name in args.variants:
            run()
    for repeat in range(args.repeats):  # alternating: the machine drifts over minutes
        for name in args.variants:
            start = time.perf_counter()
            outputs[name] = runs[name]()
            times[name].append(time.perf_counter() - start)
            print(f"repeat {repeat + 1}: {name:13} {times[name][-1]:8.2f} s", flush=True)
    reference = outputs[args.variants[0]]
    same = {name: float((out == reference).float().mean()) for name, out in outputs.items()}
    median = {name: statistics.median(t) for name, t in times.items()}
    result = {
        "machine": describe_machine("cpu"), "threads": torch.get_num_threads(), "prompts": args.prompts,
        "prompt_tokens": int(mask.sum()), "padded_width": ids.shape[1], "new_tokens": args.new_tokens,
        "parameters": model.num_parameters(), "overrides": args.overrides, "seconds": times,
        "median_s": median, "tokens_equal_to_first": same,
    }
    if "cache" in median and "recompute" in median:
        result["recompute_over_cache"] = median["recompute"] / median["cache"]
    for name in args.variants:
        print(f"{name:13} median {median[name]:8.2f} s  tokens/s {args.prompts * args.new_tokens / median[name]:9.0f}"
              f"  tokens equal to {args.variants[0]}'s: {same[name]:.2%}")
    if "recompute_over_cache" in result:
        print(f"the cache is {result['recompute_over_cache']:.1f}x faster than recomputing the prefix")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if min(same.values()) >= 0.99 else 1  # float rounding may flip a rare near-tie, nothing more


if __name__ == "__main__":
    sys.exit(main())
