"""The course's GPT-2 equals Hugging Face's, saves as Hugging Face's, and its cached decoder does what it says."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from transformers import GPT2LMHeadModel

from helpers.config import ModelConfig, get_profile
from helpers.gpt import GPT, LayerNorm, generate, gelu_new, gpt2_config, next_token_probs

TOL = 1e-5  # fp32; measured differences are below 1e-6

SMALL = dict(vocab_size=300, n_positions=64, n_embd=48, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: a second thread only waits on a busy machine (measured 30x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small(**changes) -> ModelConfig:
    return ModelConfig(**{**SMALL, **changes})


def build_hf(cfg: ModelConfig, seed: int = 0) -> GPT2LMHeadModel:
    """transformers' GPT2LMHeadModel of this shape, initialised by transformers itself."""
    torch.manual_seed(seed)
    return GPT2LMHeadModel(gpt2_config(cfg))


def hf_output(out) -> torch.Tensor:
    """A block's output: a tensor in transformers 5, a tuple (hidden, ...) before."""
    return out[0] if isinstance(out, tuple) else out


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def train_a_little(hf, steps: int = 3, lr: float = 0.5, seed: int = 0) -> None:
    """A few SGD steps on random tokens, so the weights are no longer at their initial values."""
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(hf.parameters(), lr=lr)
    hf.train()
    for _ in range(steps):
        ids = torch.randint(0, hf.config.vocab_size, (2, 16), generator=gen)
        optimizer.zero_grad()
        hf(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
    hf.eval()


def perturbed(cfg: ModelConfig, seed: int = 0, scale: float = 0.3):
    """An HF model with seeded noise on every weight: peaked, varied predictions (greedy does not loop on one token)."""
    hf = build_hf(cfg, seed=seed).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return hf


# --- the architecture equals GPT2LMHeadModel ---------------------------------------------------


@pytest.mark.parametrize(
    "cfg, length",
    [
        pytest.param(get_profile("paper").model, 24, id="paper"),
        pytest.param(get_profile("lesson").model, 24, id="lesson"),
        pytest.param(small(), 20, id="width48-4heads"),
        pytest.param(small(n_head=3), 20, id="3heads-of-16"),
        pytest.param(small(n_layer=1), 20, id="1layer"),
        pytest.param(small(n_embd=32, n_head=2), 20, id="width32-vocab300"),
        pytest.param(small(n_positions=40), 1, id="ctx40-len1"),
        pytest.param(small(n_positions=40), 40, id="ctx40-len40"),
    ],
)
def test_logits_equal_hugging_face(cfg, length):
    hf = build_hf(cfg, seed=1).eval()
    gpt = GPT.from_hf(hf).eval()
    ids = torch.randint(0, cfg.vocab_size, (2, length), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = gpt(ids).logits, hf(ids).logits
    assert ours.shape == theirs.shape == (2, length, cfg.vocab_size)
    assert max_diff(ours, theirs) < TOL


@pytest.mark.parametrize("cfg", [get_profile("lesson").model, small(n_head=3)], ids=["lesson", "3heads"])
def test_logits_equal_hugging_face_after_training(cfg):
    hf = build_hf(cfg, seed=2)
    before = hf.transformer.h[0].attn.c_attn.weight.detach().clone()
    train_a_little(hf)
    assert max_diff(hf.transformer.h[0].attn.c_attn.weight, before) > 1e-4  # really moved
    gpt = GPT.from_hf(hf).eval()
    ids = torch.randint(0, cfg.vocab_size, (3, 30), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert max_diff(gpt(ids).logits, hf(ids).logits) < TOL


def test_one_block_equals_hugging_face_block():
    hf = perturbed(small(), scale=0.1)
    gpt = GPT.from_hf(hf).eval()
    hidden = torch.randn(2, 9, 48, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert max_diff(gpt.h[0](hidden)[0], hf_output(hf.transformer.h[0](hidden))) < TOL


def test_attention_weights_equal_hugging_face_eager_attention():
    hf = perturbed(small(), scale=0.1)
    gpt = GPT.from_hf(hf).eval()
    hf.set_attn_implementation("eager")  # the fused kernel never materialises the weights
    ids = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ours = gpt(ids, output_attentions=True).attentions
        theirs = hf(ids, output_attentions=True).attentions
        assert gpt(ids).attentions is None  # only when asked for
    assert len(ours) == len(theirs) == 2
    for a, b in zip(ours, theirs):
        assert a.shape == (2, 4, 12, 12) and max_diff(a, b) < TOL
    assert torch.equal(ours[0].triu(diagonal=1), torch.zeros_like(ours[0]))  # no weight on the future
    assert torch.allclose(ours[0].sum(-1), torch.ones(2, 4, 12))


def test_weights_are_copied_transposed_and_tied():
    hf = build_hf(small(), seed=0)
    gpt = GPT.from_hf(hf)
    hf_block, block = hf.transformer.h[1], gpt.h[1]
    assert torch.equal(block.attn.c_attn.weight, hf_block.attn.c_attn.weight.t())  # Conv1D (in, out)
    assert torch.equal(block.mlp.c_fc.bias, hf_block.mlp.c_fc.bias)
    assert gpt.lm_head.weight is gpt.wte.weight
    assert torch.equal(gpt.wte.weight, hf.transformer.wte.weight)


def test_layer_norm_from_the_formula_equals_torch():
    gen = torch.Generator().manual_seed(0)
    norm = LayerNorm(48, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(48, generator=gen))
        norm.bias.copy_(torch.randn(48, generator=gen))
    x = torch.randn(4, 7, 48, generator=gen) * 3 + 2
    mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    expected = (x - mean) / torch.sqrt(var + 1e-5) * norm.weight + norm.bias  # the formula, biased variance
    assert max_diff(norm(x), expected) < 1e-5
    unbiased = (x - mean) / torch.sqrt(x.var(-1, keepdim=True) + 1e-5) * norm.weight + norm.bias
    assert max_diff(norm(x), unbiased) > 1e-3  # dividing by n - 1 would show


def test_every_layer_norm_uses_the_configured_epsilon():
    """At epsilon 1e-2, far above the variance of freshly initialised activations, a wrong epsilon shows."""
    hf = build_hf(small(layer_norm_epsilon=1e-2), seed=1).eval()
    gpt = GPT.from_hf(hf).eval()
    assert [m.eps for m in gpt.modules() if isinstance(m, LayerNorm)] == [1e-2] * 5  # 2 blocks x 2, and ln_f
    ids = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(0))
    hidden = torch.randn(2, 9, 48, generator=torch.Generator().manual_seed(3)) * 0.02
    with torch.no_grad():
        assert max_diff(gpt(ids).logits, hf(ids).logits) < TOL
        for ours, theirs in zip(gpt.h, hf.transformer.h):
            assert max_diff(ours(hidden)[0], hf_output(theirs(hidden))) < TOL
        # the same weights at GPT-2's default epsilon give visibly other logits: the test can see it
        default = GPT.from_hf(hf).eval()
        for m in default.modules():
            if isinstance(m, LayerNorm):
                m.eps = 1e-5
        assert max_diff(default(ids).logits, hf(ids).logits) > 1e-2
    # the epsilon formula itself: sqrt(var + eps), not sqrt(var) + eps
    norm = LayerNorm(4, eps=1e-2)
    x = torch.tensor([[1.0, -1.0, 1.0, -1.0]]) * 0.1  # mean 0, variance 0.01
    expected = x / math.sqrt(0.01 + 0.01)  # = x * 7.0711
    assert max_diff(norm(x), expected) < 1e-6


def test_gelu_new_equals_transformers():
    from transformers.activations import ACT2FN

    x = torch.linspace(-8, 8, 1001)
    formula = 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    assert max_diff(gelu_new(x), formula) < 1e-6 and max_diff(gelu_new(x), ACT2FN["gelu_new"](x)) < 1e-6
    assert max_diff(gelu_new(x), F.gelu(x)) > 1e-4  # the tanh approximation, not the exact erf GELU


# --- size and initialisation -------------------------------------------------------------------


def test_parameter_counts_match_the_paper():
    paper = GPT(get_profile("paper").model)
    assert paper.num_parameters() == 3_582_016
    assert paper.lm_head.weight is paper.wte.weight
    assert GPT(get_profile("lesson").model).num_parameters() == 496_640


def test_initialisation_follows_gpt2():
    cfg = get_profile("paper").model
    torch.manual_seed(0)
    gpt = GPT(cfg)
    hf = build_hf(cfg, seed=0)
    scaled = 0.02 / math.sqrt(2 * cfg.n_layer)
    for model, prefix in ((gpt, ""), (hf, "transformer.")):
        params = dict(model.named_parameters())
        assert params[prefix + "wte.weight"].std().item() == pytest.approx(0.02, rel=0.02)
        assert params[prefix + "wpe.weight"].std().item() == pytest.approx(0.02, rel=0.02)
        for kind, std in (("attn.c_attn", 0.02), ("mlp.c_fc", 0.02), ("attn.c_proj", scaled), ("mlp.c_proj", scaled)):
            weights = torch.cat([params[f"{prefix}h.{i}.{kind}.weight"].flatten() for i in range(cfg.n_layer)])
            assert weights.std().item() == pytest.approx(std, rel=0.03), (prefix, kind)
            assert abs(weights.mean().item()) < std / 20
        for name, p in params.items():
            if name.endswith("bias"):
                assert torch.count_nonzero(p) == 0, name
            if ".ln_" in name and name.endswith("weight"):
                assert torch.equal(p, torch.ones_like(p)), name
    torch.manual_seed(0)
    again = GPT(cfg)
    assert torch.equal(again.h[3].mlp.c_proj.weight, gpt.h[3].mlp.c_proj.weight)  # seeded: reproducible


# --- decoding ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def decoders():
    hf = perturbed(small(), seed=5)
    return hf, GPT.from_hf(hf).eval()


def without_cache(gpt, prompt, n, positions=None, generator=None, **knobs):
    """The plainest decoder: rerun the whole sequence for every new token (what the cache must reproduce)."""
    ids = prompt
    for _ in range(n):
        pos = None if positions is None else torch.arange(ids.shape[1])[None] + positions
        logits = gpt(ids, position_ids=pos).logits[:, -1]
        if knobs.get("temperature", 1.0) == 0:
            step = logits.argmax(-1, keepdim=True)
        else:
            step = torch.multinomial(next_token_probs(logits, **knobs), 1, generator=generator)
        ids = torch.cat([ids, step], dim=1)
    return ids


def test_greedy_equals_hugging_face_generate(decoders):
    hf, gpt = decoders
    prompt = torch.randint(1, 300, (2, 5), generator=torch.Generator().manual_seed(6))
    expected = hf.generate(
        prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=20, pad_token_id=0
    )
    assert expected.shape == (2, 25)
    assert len(set(expected[:, 5:].flatten().tolist())) > 5  # not one token repeated
    assert torch.equal(generate(gpt, prompt, 20, temperature=0, eos_token_id=0), expected)


@pytest.mark.parametrize("cfg", [get_profile("paper").model, get_profile("lesson").model], ids=["paper", "lesson"])
def test_greedy_equals_hugging_face_generate_on_the_course_shapes(cfg):
    hf = perturbed(cfg, seed=11, scale=0.05)
    gpt = GPT.from_hf(hf).eval()
    prompt = torch.randint(1, cfg.vocab_size, (3, 7), generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        expected = hf.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=30,
                               pad_token_id=cfg.eos_token_id, eos_token_id=None)
    assert torch.equal(generate(gpt, prompt, 30, temperature=0), expected)


def test_the_cache_gives_the_tokens_of_rerunning_the_prefix(decoders):
    _, gpt = decoders
    prompt = torch.randint(1, 300, (2, 6), generator=torch.Generator().manual_seed(13))
    with torch.no_grad():
        assert torch.equal(generate(gpt, prompt, 25, temperature=0), without_cache(gpt, prompt, 25, temperature=0))
        knobs = dict(temperature=0.9, top_k=40, top_p=0.95)
        cached = generate(gpt, prompt, 25, generator=torch.Generator().manual_seed(3), **knobs)
        plain = without_cache(gpt, prompt, 25, generator=torch.Generator().manual_seed(3), **knobs)
    assert torch.equal(cached, plain)


def test_left_padded_prompts_decode_as_each_prompt_alone(decoders):
    _, gpt = decoders
    gen = torch.Generator().manual_seed(14)
    prompts = [torch.randint(1, 300, (n,), generator=gen) for n in (3, 8, 5)]
    ids = torch.zeros(3, 8, dtype=torch.long)
    mask = torch.zeros(3, 8, dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, 8 - len(p):], mask[row, 8 - len(p):] = p, 1
    batch = generate(gpt, ids, 12, attention_mask=mask, temperature=0)
    for row, p in enumerate(prompts):
        alone = generate(gpt, p[None], 12, temperature=0)
        assert torch.equal(batch[row, 8:], alone[0, len(p):]), row


def test_position_offset_reads_the_prompt_further_right(decoders):
    _, gpt = decoders
    prompt = torch.randint(1, 300, (1, 5), generator=torch.Generator().manual_seed(15))
    with torch.no_grad():
        shifted = generate(gpt, prompt, 10, temperature=0, position_offset=30)
        assert torch.equal(shifted, without_cache(gpt, prompt, 10, positions=30, temperature=0))
        assert not torch.equal(shifted, generate(gpt, prompt, 10, temperature=0))
    with pytest.raises(ValueError, match="a prompt of 5 tokens from position 60 plus 10 new tokens exceeds the model's 64"):
        generate(gpt, prompt, 10, temperature=0, position_offset=60)


def test_generate_refuses_to_run_past_the_context(decoders):
    _, gpt = decoders
    prompt = torch.randint(1, 300, (1, 60), generator=torch.Generator().manual_seed(7))
    assert generate(gpt, prompt, 4, temperature=0).shape == (1, 64)
    with pytest.raises(ValueError, match="a prompt of 60 tokens plus 5 new tokens exceeds the model's 64 positions"):
        generate(gpt, prompt, 5, temperature=0)


def test_seeded_sampling_is_reproducible(decoders):
    _, gpt = decoders
    prompt = torch.randint(1, 300, (2, 4), generator=torch.Generator().manual_seed(8))

    def sample(seed, **knobs):
        return generate(gpt, prompt, 15, generator=torch.Generator().manual_seed(seed), **knobs)

    assert torch.equal(sample(0), sample(0))
    assert not torch.equal(sample(0), sample(1))
    assert torch.equal(sample(0, top_k=20, top_p=0.9, temperature=0.8), sample(0, top_k=20, top_p=0.9, temperature=0.8))
    greedy = generate(gpt, prompt, 15, temperature=0)
    assert torch.equal(sample(0, top_k=1), greedy)
    assert torch.equal(sample(1, top_p=1e-6), greedy)


class CountingLM(torch.nn.Module):
    """A stand-in language model that always predicts (last token + 1) mod 10, and records what it is fed."""

    def __init__(self, n_positions=1024):
        super().__init__()
        self.config = type("Config", (), {"n_positions": n_positions})()
        self.seen = []

    def forward(self, ids, **cache):
        self.seen.append(ids.shape[1])
        return type("Output", (), {"logits": F.one_hot((ids + 1) % 10, 10).float() * 20, "past_key_values": None})()


def test_eos_stops_a_row_and_pads_it():
    prompt = torch.tensor([[5], [1]])
    out = generate(CountingLM(), prompt, 10, temperature=0, eos_token_id=7)
    assert out.tolist() == [[5, 6, 7, 7, 7, 7, 7], [1, 2, 3, 4, 5, 6, 7]]  # stops when both rows have ended
    sampled = generate(CountingLM(), prompt, 10, eos_token_id=7, generator=torch.Generator().manual_seed(0))
    assert sampled.tolist() == out.tolist()  # a 20-logit gap: sampling picks the same tokens
    assert generate(CountingLM(), prompt, 4, temperature=0).tolist() == [[5, 6, 7, 8, 9], [1, 2, 3, 4, 5]]


def test_after_the_prompt_only_the_newest_token_is_fed():
    model = CountingLM()
    generate(model, torch.tensor([[0, 1, 2]]), 5, temperature=0)
    assert model.seen == [3, 1, 1, 1, 1]


# --- next_token_probs --------------------------------------------------------------------------


def test_next_token_probs_sum_to_one_and_temperature_sharpens():
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(9))
    plain = next_token_probs(logits)
    assert torch.allclose(plain, F.softmax(logits, -1))
    assert torch.allclose(plain.sum(-1), torch.ones(3))
    assert next_token_probs(logits[0]).shape == (50,)
    sharp, flat = next_token_probs(logits, temperature=0.5), next_token_probs(logits, temperature=2.0)
    assert torch.all(sharp.max(-1).values > plain.max(-1).values)
    assert torch.all(flat.max(-1).values < plain.max(-1).values)
    greedy = next_token_probs(logits, temperature=0)
    assert torch.equal(greedy, F.one_hot(logits.argmax(-1), 50).float())


def test_top_k_keeps_exactly_the_k_largest():
    logits = torch.randn(2, 50, generator=torch.Generator().manual_seed(10))
    probs = next_token_probs(logits, top_k=5)
    assert torch.equal((probs > 0).sum(-1), torch.tensor([5, 5]))
    assert torch.equal(probs.topk(5).indices.sort().values, logits.topk(5).indices.sort().values)
    assert torch.allclose(probs.sum(-1), torch.ones(2))
    assert torch.equal(next_token_probs(logits, top_k=50), next_token_probs(logits))


@pytest.mark.parametrize(
    "top_p, expected",
    [
        (1.0, [0.10, 0.50, 0.15, 0.25]),
        (0.8, [0.0, 0.50 / 0.9, 0.15 / 0.9, 0.25 / 0.9]),  # 0.5 + 0.25 = 0.75 < 0.8: the 0.15 is needed
        (0.7, [0.0, 0.50 / 0.75, 0.0, 0.25 / 0.75]),  # 0.5 + 0.25 reaches 0.7
        (0.3, [0.0, 1.0, 0.0, 0.0]),  # the most likely token alone
        (1e-9, [0.0, 1.0, 0.0, 0.0]),  # always at least one token
    ],
)
def test_top_p_keeps_the_smallest_set_reaching_p(top_p, expected):
    logits = torch.tensor([0.10, 0.50, 0.15, 0.25]).log() + 3.0  # unsorted on purpose
    assert torch.allclose(next_token_probs(logits, top_p=top_p), torch.tensor(expected), atol=1e-6)


def test_top_k_then_top_p_on_two_rows():
    logits = torch.tensor([[0.10, 0.50, 0.15, 0.25], [0.40, 0.30, 0.20, 0.10]]).log()
    probs = next_token_probs(logits, top_k=3, top_p=0.6)
    # row 0: top 3 = 0.5, 0.25, 0.15 -> renormalised 0.556, 0.278 (reaches 0.6 with two)
    # row 1: top 3 = 0.4, 0.3, 0.2 -> 0.444, 0.333 (reaches 0.6 with two)
    assert torch.allclose(probs, torch.tensor([[0.0, 2 / 3, 0.0, 1 / 3], [4 / 7, 3 / 7, 0.0, 0.0]]), atol=1e-6)


# --- errors ------------------------------------------------------------------------------------


def test_too_long_input_names_the_limit():
    gpt = GPT(small(n_positions=40))
    with pytest.raises(ValueError, match=r"input has 41 tokens .* n_positions=40"):
        gpt(torch.zeros(1, 41, dtype=torch.long))
    past = gpt(torch.zeros(1, 40, dtype=torch.long), use_cache=True).past_key_values
    with pytest.raises(ValueError, match=r"input has 41 tokens .* n_positions=40"):
        gpt(torch.zeros(1, 1, dtype=torch.long), past_key_values=past)


@pytest.mark.parametrize(
    "knobs, message",
    [
        (dict(temperature=-1.0), "temperature must be >= 0"),
        (dict(top_k=-1), "top_k must be >= 0"),
        (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
        (dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
    ],
)
def test_bad_decoding_settings_raise(knobs, message):
    with pytest.raises(ValueError, match=message):
        next_token_probs(torch.zeros(5), **knobs)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="n_embd=48 is not divisible by n_head=5"):
        GPT(small(n_head=5))
    with pytest.raises(ValueError, match=r"input_ids must be \(batch, time\)"):
        generate(CountingLM(), torch.tensor([1, 2]), 3)


def test_from_hf_refuses_an_untied_model():
    config = gpt2_config(small())
    config.tie_word_embeddings = False
    untied = GPT2LMHeadModel(config)
    with pytest.raises(ValueError, match="not tied"):
        GPT.from_hf(untied)



def test_a_saved_model_loads_in_eval_mode_as_hugging_face_loads_it(tmp_path):
    """Dropout off after loading: two forward passes of a loaded model with dropout 0.5 agree exactly."""
    model = GPT(small(resid_pdrop=0.5, embd_pdrop=0.5, attn_pdrop=0.5)).train()
    model.save_pretrained(tmp_path)
    loaded = GPT.from_pretrained(tmp_path)
    assert not loaded.training and not any(m.training for m in loaded.modules())
    ids = torch.arange(12)[None]
    assert torch.equal(loaded(input_ids=ids).logits, loaded(input_ids=ids).logits)

# --- the loss and the two ways of computing attention ------------------------------------------


def test_loss_is_the_mean_cross_entropy_of_the_scored_next_tokens(decoders):
    hf, gpt = decoders
    ids = torch.randint(0, 300, (2, 10), generator=torch.Generator().manual_seed(16))
    labels = ids.clone()
    labels[0, :4] = -100  # a masked prompt: tokens 1..3 of row 0 are not scored
    with torch.no_grad():
        out = gpt(ids, labels)
        by_hand = [-F.log_softmax(out.logits[b, t], -1)[labels[b, t + 1]]
                   for b in range(2) for t in range(9) if labels[b, t + 1] != -100]
        assert len(by_hand) == 15
        assert abs(out.loss.item() - torch.stack(by_hand).mean().item()) < 1e-6
        assert abs(out.loss.item() - hf(ids, labels=labels).loss.item()) < 1e-6
    assert gpt(ids).loss is None


def test_fused_attention_equals_the_written_out_scores(decoders):
    _, gpt = decoders
    ids = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(17))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, :5] = 0  # left padding
    with torch.no_grad():
        fused, written = gpt(ids).logits, gpt(ids, output_attentions=True).logits
        assert max_diff(fused, written) < TOL
        fused = gpt(ids, attention_mask=mask).logits
        out = gpt(ids, attention_mask=mask, output_attentions=True)
        assert max_diff(fused, out.logits) < TOL
        assert out.attentions[0][1, :, 5:, :5].abs().max().item() == 0.0  # real tokens never read padding
        assert max_diff(fused[0], gpt(ids[:1]).logits[0]) < TOL  # an all-ones mask changes nothing
