"""The copying probe on models whose answers are known: a context-free model, a rule that copies, a position reader."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from rigged import constant_model, one_thread, parity_model  # noqa: F401 - one_thread: a fixture
from helpers.config import ModelConfig
from helpers.copying import CopyingOracle, _token_losses, copying_probe, far_context, name_mentions, repeated_random
from helpers.model import build_model
from helpers.stories import corpus

V = 300  # vocabulary of the hand-made models


def test_a_model_that_ignores_its_context_gains_nothing_from_a_repeat(one_thread):
    """Equal logits after every context: every token costs ln V, both writings alike."""
    scores = repeated_random(constant_model(V, {}), range(1, V), 0, sequences=3, length=10, seed=1)
    assert scores["first"] == pytest.approx(math.log(V), abs=1e-5)
    assert scores["repeat"] == pytest.approx(math.log(V), abs=1e-5)
    assert scores["gain"] == pytest.approx(0.0, abs=1e-5) and scores["control_gain"] == pytest.approx(0.0, abs=1e-5)
    assert scores["uniform"] == pytest.approx(math.log(V - 1))


def test_the_copying_rule_reaches_the_ceiling_and_the_control_stays_at_the_floor():
    """Seed 0 draws no token twice among its 2 x 2 x 8 (else these exact values could not hold), so the rule is sure of every repeated token
    (loss -ln(1 - miss)) and has nothing to copy in either first writing or in the fresh control (ln V)."""
    oracle = CopyingOracle(2048, miss=1e-3)
    scores = repeated_random(oracle, range(1, 2048), 0, sequences=2, length=8, seed=0)
    assert scores["first"] == pytest.approx(math.log(2048), abs=1e-5)
    assert scores["repeat"] == pytest.approx(-math.log(1 - 1e-3), abs=1e-5)  # float32 sums over 2,048 logits
    assert scores["gain"] == pytest.approx(math.log(2048) + math.log(1 - 1e-3), abs=1e-5)
    assert scores["control_gain"] == pytest.approx(0.0, abs=1e-5)


class DistanceReader(torch.nn.Module):
    """Copies the token ``distance`` places before the one it predicts, sure to within ``miss``: a positional head."""

    def __init__(self, vocab_size: int, distance: int, miss: float = 1e-3):
        super().__init__()
        self.vocab_size, self.distance, self.miss = vocab_size, distance, miss
        self.anchor = torch.nn.Parameter(torch.empty(0), requires_grad=False)  # the probes ask a model for its device

    def forward(self, input_ids, **_):
        B, T = input_ids.shape
        logits = torch.full((B, T, self.vocab_size), math.log(self.miss / (self.vocab_size - 1)))
        for t in range(T):  # position t predicts token t + 1
            if t + 1 - self.distance >= 0:
                logits[torch.arange(B), t, input_ids[:, t + 1 - self.distance]] = math.log(1 - self.miss)
            else:
                logits[:, t] = -math.log(self.vocab_size)
        return dataclasses.make_dataclass("Out", ["logits"])(logits)


def test_the_shifted_repeat_tells_a_copier_from_a_reader_of_a_fixed_distance():
    """Both gain the whole ceiling on the plain repeat; with 5 fresh tokens between the writings the copying rule
    still does, the distance reader is sure of the wrong token at every place (seed 0 draws no token twice)."""
    V, miss = 2048, 1e-3
    sure, wrong = -math.log(1 - miss), -math.log(miss / (V - 1))
    rule = repeated_random(CopyingOracle(V, miss), range(1, V), 0, sequences=2, length=8, gap=5, seed=0)
    reader = repeated_random(DistanceReader(V, 8, miss), range(1, V), 0, sequences=2, length=8, gap=5, seed=0)
    assert rule["repeat"] == pytest.approx(sure, abs=1e-5) and rule["shifted_repeat"] == pytest.approx(sure, abs=1e-5)
    assert rule["shifted_gain"] == pytest.approx(rule["gain"], abs=1e-5) and rule["gap"] == 5
    assert reader["repeat"] == pytest.approx(sure, abs=1e-5)
    assert reader["shifted_repeat"] == pytest.approx(wrong, abs=1e-4)
    assert reader["shifted_gain"] == pytest.approx(reader["first"] - wrong, abs=1e-4) and reader["shifted_gain"] < -5
    assert reader["control_gain"] < -5  # sure of the token a fixed distance back, which the fresh control does not hold


def test_losses_scored_a_few_rows_at_a_time_line_up_with_their_rows():
    """Seven rows scored three at a time: the distance-1 reader is sure that each token comes again, so a
    place costs -ln(1 - miss) where the row repeats its token and -ln(miss / (V - 1)) where it does not;
    row r repeats its token at its first r places."""
    V, miss = 50, 1e-3
    ids = torch.tensor([[5] * (r + 1) + list(range(10, 17 - r)) for r in range(7)])
    expected = torch.tensor([[-math.log(1 - miss)] * r + [-math.log(miss / (V - 1))] * (7 - r) for r in range(7)])
    losses = _token_losses(DistanceReader(V, 1, miss), ids, "cpu", rows=3)
    assert losses.shape == (7, 7) and torch.allclose(losses, expected, atol=1e-4)


def test_the_probes_switch_dropout_off(one_thread):
    """A model left in training mode with dropout 0.5 scores the same twice: the probe measures the model,
    not one draw of its dropout masks."""
    cfg = ModelConfig(vocab_size=V, n_positions=256, n_embd=16, n_layer=2, n_head=2, resid_pdrop=0.5,
                      embd_pdrop=0.5, attn_pdrop=0.5, bos_token_id=0, eos_token_id=0)
    model = build_model(cfg, seed=0).train()
    first, again = (repeated_random(model, range(1, V), 0, sequences=4, length=10) for _ in range(2))
    assert first == again

def test_the_oracle_copies_what_followed_the_latest_occurrence():
    logits = CopyingOracle(10, miss=0.1)(torch.tensor([[3, 5, 3, 7, 3]])).logits[0]
    assert logits[0].argmax() != 5 and torch.allclose(logits[0], torch.full((10,), -math.log(10)))
    assert logits[2].argmax() == 5  # 3 was followed by 5
    assert logits[4].argmax() == 7  # the latest 3 was followed by 7
    assert float(logits[4].exp().sum()) == pytest.approx(1.0)


def _story(text: str, hero: str = "Lily"):
    return dataclasses.replace(corpus("validation", 1)[0], text=text, hero=hero, hero_gender="female")


def test_name_mentions_score_the_tokens_that_spell_the_name(pre, one_thread):
    """A model that expects " Lily" (logit 10) after any context: the later mentions, written " Lily",
    cost ln(e^10 + V - 1) - 10 each; the first, at the start of the text, is spelled with other tokens."""
    _, tok = pre
    lily = tok(" Lily", add_special_tokens=False)["input_ids"]
    assert len(lily) == 1
    model = constant_model(len(tok), {lily[0]: 10.0}, eos_token_id=tok.eos_token_id)
    story = _story("Lily ran to the park. Then Lily sat down. Lily and Lilyanne hid.")
    scores = name_mentions(model, tok, [story])
    assert (scores["first_mentions"], scores["later_mentions"]) == (1, 2)  # "Lilyanne" is not a mention
    assert scores["later"] == pytest.approx(math.log(math.exp(10) + len(tok) - 1) - 10, abs=1e-4)
    spelled = tok("Lily", add_special_tokens=False)["input_ids"]
    other = math.log(math.exp(10) + len(tok) - 1)  # a token that is not " Lily"
    assert scores["first"] == pytest.approx(other * len(spelled), abs=1e-3)


def test_far_context_swaps_only_what_lies_beyond_the_window(one_thread):
    """A model that reads only positions (after an even position 7, after an odd one 8) is unmoved by the
    swap; a model that expects 50 after anything is right on the last token only (with 150 beside it), swapped or not; the
    copying rule, whose source lies 50 tokens back,, loses it when the far tokens are another block's:
    ln V + ln(1 - miss) per token."""
    even_odd = parity_model(V, even=7, odd=8)
    position = far_context(even_odd, torch.tensor([[8, 7] * 50, [7, 8] * 50]), window=21, targets=2)
    assert position["value"] == pytest.approx(0.0, abs=1e-6) and position["tokens"] == 4
    blocks = torch.tensor([list(range(1, 51)) * 2, list(range(101, 151)) * 2])
    last = far_context(constant_model(V, {50: 10.0, 150: 10.0}), blocks, window=20, targets=1)
    assert last["swapped"] == pytest.approx(math.log(2 * math.exp(10) + V - 2) - 10, abs=1e-5)
    oracle = far_context(CopyingOracle(V, miss=1e-3), blocks, window=20, targets=16)
    assert oracle["own"] == pytest.approx(-math.log(1 - 1e-3), abs=1e-6)
    assert oracle["value"] == pytest.approx(math.log(V) + math.log(1 - 1e-3), abs=1e-5)
    near = far_context(CopyingOracle(V, miss=1e-3), blocks, window=60, targets=16)
    assert near["value"] == pytest.approx(0.0, abs=1e-6)  # the source lies within 60 tokens
    with pytest.raises(ValueError, match="no room for 80 targets after a 20-token window"):
        far_context(even_odd, blocks, window=20, targets=80)
    with pytest.raises(ValueError, match="at least two blocks"):
        far_context(even_odd, blocks[:1])


def test_the_probe_reads_the_stories_as_pretraining_packs_them(pre, one_thread):
    model, tok = pre
    stories = corpus("validation", 6)
    probe = copying_probe(model, tok, stories, 128)
    assert set(probe) == {"repeated_random", "name_mentions", "far_context"}
    assert probe["name_mentions"]["first_mentions"] == 6
    assert probe["name_mentions"]["later_mentions"] == sum(s.text.count(s.hero) for s in stories) - 6
    assert probe["far_context"]["tokens"] == 16 * min(8, sum(len(tok(s.text)["input_ids"]) + 1 for s in stories) // 128)
    assert probe["repeated_random"]["uniform"] == pytest.approx(math.log(len(tok) - len(tok.all_special_ids)))
    with pytest.raises(ValueError, match="fewer than one 4096-token block"):
        copying_probe(model, tok, stories, 4096)
