"""Profiles hold the paper's values; overrides are typed and checked."""

import json

import pytest

from helpers.config import ConfigError, Profile, get_profile, parse_overrides


def test_paper_profile_holds_the_papers_values():
    p = get_profile("paper")
    m = p.model
    assert (m.vocab_size, m.n_positions, m.n_embd, m.n_layer, m.n_head) == (50257, 1024, 64, 6, 8)
    assert m.activation_function == "gelu_new"
    assert (m.resid_pdrop, m.embd_pdrop, m.attn_pdrop) == (0.1, 0.1, 0.1)
    assert (m.layer_norm_epsilon, m.initializer_range) == (1e-5, 0.02)
    assert (m.bos_token_id, m.eos_token_id) == (50256, 50256)
    assert p.data.block_size == 128 and p.data.tokenizer == "gpt2"
    assert (p.data.stories, p.data.instructions) == ("hub", "hub")
    t = p.pretrain
    assert (t.batch_size, t.eval_batch_size, t.grad_accum, t.epochs) == (32, 32, 8, 1.0)
    assert (t.weight_decay, t.warmup_steps, t.learning_rate, t.precision) == (0.1, 100, 5e-4, "fp16")
    assert (t.eval_every, t.log_every, t.save_every) == (100, 100, 100)
    f = p.finetune
    assert p.data.instruction_max_length == 512
    assert (f.precision, f.epochs, f.grad_accum, f.learning_rate) == ("bf16", 3.0, 8, 2e-5)
    assert (f.weight_decay, f.warmup_ratio, f.warmup_steps, f.seed, f.log_every, f.tf32) == (0.0, 0.03, 0, 42, 1, True)
    assert p.data.instruction_val_fraction == 0.1


def test_lesson_keeps_the_shape_and_shrinks_the_amounts():
    paper, lesson = get_profile("paper"), get_profile("lesson")
    for key in ("n_embd", "n_layer", "n_head", "n_positions", "activation_function"):
        assert getattr(lesson.model, key) == getattr(paper.model, key)
    # Longer blocks than the paper's 128, so that pretraining trains every position a story question reaches
    assert paper.data.block_size == 128 and lesson.data.block_size == 288
    assert lesson.data.tokenizer == "story-bpe" and lesson.model.vocab_size == lesson.data.story_vocab_size
    assert lesson.pretrain.max_steps and lesson.pretrain.precision == "fp32"
    assert (lesson.model.resid_pdrop, lesson.model.embd_pdrop, lesson.model.attn_pdrop) == (0.0, 0.0, 0.0)


def test_profiles_are_fresh_copies():
    a = get_profile("lesson")
    a.pretrain.learning_rate = 1.0
    assert get_profile("lesson").pretrain.learning_rate != 1.0


def test_string_overrides_are_parsed_by_type():
    p = get_profile("lesson", parse_overrides([
        "pretrain.max_steps=12", "pretrain.learning_rate=1e-3", "pretrain.compile=true",
        "data.train_stories=none", "pretrain.precision=bf16", "device=cpu", "data.stories=./x.txt"]))
    assert p.pretrain.max_steps == 12 and p.pretrain.learning_rate == 1e-3 and p.pretrain.compile is True
    assert p.data.train_stories is None and p.pretrain.precision == "bf16" and p.device == "cpu"
    assert p.data.stories == "./x.txt"


def test_typed_overrides_from_papermill():
    p = get_profile("lesson", {"pretrain.max_steps": 5, "pretrain.learning_rate": 1, "pretrain.compile": False})
    assert p.pretrain.max_steps == 5 and p.pretrain.learning_rate == 1.0 and isinstance(p.pretrain.learning_rate, float)


@pytest.mark.parametrize("overrides, message", [
    ({"pretrain.lr": 1}, "unknown setting 'pretrain.lr' (did you mean 'pretrain.learning_rate'?)"),
    ({"pretrain.warmup": 1}, "unknown setting 'pretrain.warmup' (did you mean 'pretrain.warmup_steps' or 'pretrain.warmup_ratio'?)"),
    ({"training.batch_size": 1}, "unknown setting 'training.batch_size': keys look like 'section.name' with a "
                                 "section in ['model', 'data', 'pretrain', 'finetune'], or 'device' "
                                 "(did you mean 'pretrain.batch_size' or 'finetune.batch_size'?)"),
    ({"colour": 1}, "unknown setting 'colour': keys look like 'section.name' with a section in "
                    "['model', 'data', 'pretrain', 'finetune'], or 'device'"),
    ({"pretrain.batch_size": "abc"}, "setting 'pretrain.batch_size' expects an integer, got 'abc'"),
    ({"pretrain.batch_size": 2.5}, "setting 'pretrain.batch_size' expects an integer, got 2.5"),
    ({"pretrain.batch_size": True}, "setting 'pretrain.batch_size' expects an integer, got True"),
    ({"pretrain.learning_rate": "fast"}, "setting 'pretrain.learning_rate' expects a number, got 'fast'"),
    ({"pretrain.compile": "maybe"}, "setting 'pretrain.compile' expects true or false, got 'maybe'"),
    ({"pretrain.precision": "fp8"}, "setting 'pretrain.precision' must be one of ['auto', 'fp32', 'bf16', 'fp16'], got 'fp8'"),
    ({"pretrain.max_steps": None, "model.n_layer": None}, "setting 'model.n_layer' expects an integer, got None"),
    ({"data.stories": 3}, "setting 'data.stories' expects a string, got 3"),
])
def test_bad_overrides_name_the_key(overrides, message):
    with pytest.raises(ConfigError) as err:
        get_profile("lesson", overrides)
    assert str(err.value) == message


def test_unknown_profile_and_malformed_pairs():
    with pytest.raises(ConfigError, match="unknown profile 'big'; choose one of \\['lesson', 'paper'\\]"):
        get_profile("big")
    with pytest.raises(ConfigError, match="--set expects key=value, got 'pretrain.max_steps'"):
        parse_overrides(["pretrain.max_steps"])


def test_round_trip_through_json():
    p = get_profile("paper", {"pretrain.max_steps": 7})
    again = Profile.from_dict(json.loads(p.to_json()))
    assert again == p


def test_every_lesson_finetuning_example_fits_the_pretrained_context():
    """The lesson's choice: the story BPE knows the template and blocks are long enough for every question."""
    from helpers.data import finetuning_examples
    from helpers.tokenizer import profile_tokenizer

    lesson = get_profile("lesson")
    train, val = finetuning_examples(lesson.data, profile_tokenizer(lesson))
    longest = max(len(e["input_ids"]) for part in (train, val) for e in part.examples)
    assert len(train) == lesson.data.instruction_limit and train.dropped == val.dropped == 0
    assert longest <= lesson.data.block_size and lesson.data.position_offset == 0
    paper = get_profile("paper")  # the paper's values stay: 128-token blocks, answers up to 512
    assert (paper.data.block_size, paper.data.instruction_max_length, paper.data.packing) == (128, 512, "per_story")
