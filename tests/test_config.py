"""Profiles hold the paper's values; overrides are typed and checked."""

import dataclasses
import json

import pytest
import torch

from helpers.config import ConfigError, Profile, get_profile, parse_overrides, stage_settings


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
        "pretrain.max_steps=12", "pretrain.warmup_steps=3", "pretrain.learning_rate=1e-3", "pretrain.compile=true",
        "data.train_stories=none", "pretrain.precision=bf16", "device=cpu", "data.stories=./x.txt"]))
    assert p.pretrain.max_steps == 12 and p.pretrain.learning_rate == 1e-3 and p.pretrain.compile is True
    assert p.data.train_stories is None and p.pretrain.precision == "bf16" and p.device == "cpu"
    assert p.data.stories == "./x.txt"


def test_typed_overrides_from_papermill():
    p = get_profile("lesson", {"pretrain.max_steps": 5, "pretrain.warmup_steps": 0, "pretrain.learning_rate": 1,
                               "pretrain.compile": False})
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
    p = get_profile("paper", {"pretrain.max_steps": 700})
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


# ------------------------------------------------------------------ ranges and cross rules


def _refused_by_cli(tmp_path, monkeypatch, capsys, *args):
    """Run the command line in-process; training must never start. Returns (status, stderr)."""
    from helpers import cli

    def no_training(*a, **k):
        raise AssertionError("training started with a setting that should have been refused")

    monkeypatch.setattr(cli, "train", no_training)
    status = cli.main(list(args))
    return status, capsys.readouterr().err


@pytest.mark.parametrize("setting, message", [
    ("pretrain.log_every=0", "pretrain.log_every=0: must be >= 1"),
    ("pretrain.batch_size=0", "pretrain.batch_size=0: must be >= 1"),
    ("model.n_head=7", "model.n_head=7: model.n_embd (64) must be divisible by model.n_head"),
    ("data.block_size=2000", "data.block_size=2000: must be <= model.n_positions (1024)"),
])
@pytest.mark.parametrize("command", ["pretrain", "finetune", "evaluate", "config"])
def test_the_known_failures_stop_in_one_line_before_any_folder(tmp_path, monkeypatch, capsys, setting, message,
                                                                command):
    out = tmp_path / "run"
    where = {"pretrain": ["--out", str(out)], "finetune": ["--out", str(out), "--init", str(tmp_path / "pre")],
             "evaluate": ["--run", str(out)], "config": []}[command]
    status, err = _refused_by_cli(tmp_path, monkeypatch, capsys, command, "--set", setting, *where)
    assert (status, err) == (2, f"error: {message}\n")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError) as raised:
        get_profile("paper", parse_overrides([setting]))
    assert str(raised.value) == message


def test_study_and_report_refuse_bad_settings_before_writing(tmp_path, monkeypatch, capsys):
    status, err = _refused_by_cli(tmp_path, monkeypatch, capsys, "study", "--set", "finetune.log_every=0",
                                  "--out", str(tmp_path / "runs"), "--figures", str(tmp_path / "figs"))
    assert (status, err) == (2, "error: finetune.log_every=0: must be >= 1\n")
    status, err = _refused_by_cli(tmp_path, monkeypatch, capsys, "report", "--set", "model.n_layer=0",
                                  "--out", str(tmp_path / "build"))
    assert (status, err) == (2, "error: model.n_layer=0: must be >= 1\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("profile, overrides, message", [
    # the heads divide the width
    ("paper", {"model.n_head": 7}, "model.n_head=7: model.n_embd (64) must be divisible by model.n_head"),
    ("paper", {"model.n_embd": 100}, "model.n_embd=100: must be divisible by model.n_head (8)"),
    # beginning and end of text are tokens of the vocabulary
    ("paper", {"model.bos_token_id": 50257}, "model.bos_token_id=50257: must be < model.vocab_size (50257)"),
    ("paper", {"model.eos_token_id": 50257}, "model.eos_token_id=50257: must be < model.vocab_size (50257)"),
    ("paper", {"model.vocab_size": 4096}, "model.vocab_size=4096: must be > model.bos_token_id (50256)"),
    ("lesson", {"model.bos_token_id": 1, "model.eos_token_id": 5000},
     "model.eos_token_id=5000: must be < model.vocab_size (2048)"),
    # pretraining blocks fit the positions
    ("paper", {"data.block_size": 1025}, "data.block_size=1025: must be <= model.n_positions (1024)"),
    ("paper", {"model.n_positions": 127}, "model.n_positions=127: must be >= data.block_size (128)"),
    # finetuning examples, moved right by the offset, fit the positions
    ("paper", {"data.position_offset": 513},
     "data.position_offset=513: data.position_offset + data.instruction_max_length (512) must be <= "
     "model.n_positions (1024)"),
    ("paper", {"data.instruction_max_length": 1025},
     "data.instruction_max_length=1025: data.position_offset (0) + data.instruction_max_length must be <= "
     "model.n_positions (1024)"),
    ("paper", {"data.block_size": 100, "model.n_positions": 511},
     "model.n_positions=511: must be >= data.position_offset + data.instruction_max_length (0 + 512)"),
    # warm-up within the run
    ("lesson", {"pretrain.max_steps": 49}, "pretrain.max_steps=49: must be none or >= pretrain.warmup_steps (50)"),
    ("lesson", {"pretrain.warmup_steps": 1001}, "pretrain.warmup_steps=1001: must be <= pretrain.max_steps (1000)"),
    ("paper", {"finetune.max_steps": 3, "finetune.warmup_steps": 4},  # both set: the rule's first key
     "finetune.warmup_steps=4: must be <= finetune.max_steps (3)"),
])
def test_cross_rules_name_the_key_that_was_set(profile, overrides, message):
    with pytest.raises(ConfigError) as raised:
        get_profile(profile, overrides)
    assert str(raised.value) == message


@pytest.mark.parametrize("profile, overrides", [
    ("paper", {"model.n_head": 16}), ("paper", {"model.n_head": 1, "model.n_embd": 7}),
    ("paper", {"model.bos_token_id": 50256, "model.vocab_size": 50257}),
    ("lesson", {"model.vocab_size": 1}),  # ids 0 < 1
    ("paper", {"data.block_size": 1024}), ("paper", {"model.n_positions": 512, "data.block_size": 128}),
    ("paper", {"data.position_offset": 512}), ("paper", {"data.instruction_max_length": 1024}),
    ("lesson", {"pretrain.max_steps": 50}), ("lesson", {"pretrain.max_steps": None, "pretrain.warmup_steps": 10**6}),
    ("lesson", {"pretrain.max_steps": 3, "pretrain.warmup_steps": 0}),
])
def test_cross_rules_accept_their_edges(profile, overrides):
    get_profile(profile, overrides)


# key, a value just outside, what is allowed, a value at the edge inside (the paper profile's other values)
RANGES = [
    ("model.vocab_size", 0, "must be >= 1", None), ("model.n_positions", 0, "must be >= 1", None),
    ("model.n_embd", 0, "must be >= 1", None), ("model.n_layer", 0, "must be >= 1", 1),
    ("model.n_head", 0, "must be >= 1", 1),
    ("model.resid_pdrop", 1.0, "must be in [0, 1)", 0.0), ("model.embd_pdrop", -0.1, "must be in [0, 1)", 0.0),
    ("model.attn_pdrop", 1.0, "must be in [0, 1)", 0.999),
    ("model.layer_norm_epsilon", 0.0, "must be > 0", 1e-12), ("model.initializer_range", 0.0, "must be > 0", 1e-6),
    ("model.bos_token_id", -1, "must be >= 0", 0), ("model.eos_token_id", -1, "must be >= 0", 0),
    ("data.story_vocab_size", 256, "must be in [257, 65536]", 257),
    ("data.story_vocab_size", 65537, "must be in [257, 65536]", 65536),
    ("data.story_vocab_questions", -1, "must be >= 0", 0), ("data.corpus_seed", -1, "must be >= 0", 0),
    ("data.train_stories", 0, "must be none or >= 1", 1), ("data.val_stories_count", 0, "must be none or >= 1", 1),
    ("data.val_fraction", 0.0, "must be in (0, 1)", 0.001), ("data.val_fraction", 1.0, "must be in (0, 1)", 0.999),
    ("data.block_size", 1, "must be >= 2", 2), ("data.instruction_max_length", 1, "must be >= 2", 2),
    ("data.instruction_limit", 0, "must be none or >= 1", 1),
    ("data.instruction_val_fraction", 0.0, "must be in (0, 1)", 0.5),
    ("data.instruction_val_fraction", 1.0, "must be in (0, 1)", 0.999),
    ("data.position_offset", -1, "must be >= 0", 0),
    ("pretrain.batch_size", 0, "must be >= 1", 1), ("pretrain.eval_batch_size", 0, "must be >= 1", 1),
    ("pretrain.grad_accum", 0, "must be >= 1", 1), ("pretrain.epochs", 0.0, "must be > 0", 0.01),
    ("pretrain.max_steps", 0, "must be none or >= 1", None),
    ("pretrain.learning_rate", -1e-9, "must be in [0, 1e6]", 0.0),
    ("pretrain.learning_rate", 1.000001e6, "must be in [0, 1e6]", 1e6),
    ("pretrain.weight_decay", -0.1, "must be in [0, 1e6]", 0.0),
    ("pretrain.weight_decay", 1.000001e6, "must be in [0, 1e6]", 1e6),
    ("pretrain.warmup_steps", -1, "must be >= 0", 0),
    ("pretrain.warmup_ratio", -0.01, "must be in [0, 1]", 0.0), ("pretrain.warmup_ratio", 1.01, "must be in [0, 1]", 1.0),
    ("pretrain.max_grad_norm", 0.0, "must be > 0", 1e-6),
    ("pretrain.adam_beta1", 1.0, "must be in [0, 1)", 0.0), ("pretrain.adam_beta2", 1.0, "must be in [0, 1)", 0.0),
    ("pretrain.adam_beta2", -0.5, "must be in [0, 1)", 0.9999),
    ("pretrain.adam_epsilon", 0.0, "must be > 0", 1e-30),
    ("pretrain.log_every", 0, "must be >= 1", 1), ("pretrain.eval_every", -1, "must be >= 0", 0),
    ("pretrain.save_every", -1, "must be >= 0", 0), ("pretrain.keep_checkpoints", -1, "must be >= 0", 0),
    ("pretrain.eval_max_batches", 0, "must be none or >= 1", 1),
    ("pretrain.seed", -1, "must be in [0, 4294967295]", 0),
    ("pretrain.seed", 2**32, "must be in [0, 4294967295]", 2**32 - 1),
    ("pretrain.loss_chunk", -1, "must be >= 0", 0),
    ("finetune.learning_rate", -1.0, "must be in [0, 1e6]", 0.0), ("finetune.log_every", 0, "must be >= 1", 1),
    ("finetune.batch_size", 0, "must be >= 1", 1),
]


@pytest.mark.parametrize("key, bad, allowed, edge", RANGES, ids=[f"{r[0]}={r[1]}" for r in RANGES])
def test_each_range_refuses_just_outside_and_accepts_its_edge(key, bad, allowed, edge):
    with pytest.raises(ConfigError) as raised:
        get_profile("paper", {key: bad})
    assert str(raised.value) == f"{key}={float(bad) if isinstance(edge, float) else bad!r}: {allowed}"
    if edge is not None:
        assert getattr(get_profile("paper", {key: edge}), key.split(".")[0]).__dict__[key.split(".")[1]] == edge
    with pytest.raises(ConfigError):  # the same through the command line's strings
        get_profile("paper", parse_overrides([f"{key}={bad}"]))


def test_every_number_has_a_range_and_every_free_string_its_choices():
    """A new setting without a rule fails here: say what it allows beside its definition."""
    import typing

    from helpers.config import DataConfig, ModelConfig, TrainConfig

    paths = {"data.stories", "data.val_stories", "data.instructions", "data.tokenizer", "data.cache_dir"}
    for section, cls in (("model", ModelConfig), ("data", DataConfig), ("pretrain", TrainConfig)):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kinds = {a for a in (typing.get_args(hints[f.name]) or (hints[f.name],)) if a is not type(None)}
            if kinds & {int, float, str} and f"{section}.{f.name}" not in paths:
                assert f.metadata.get("allowed"), f"{section}.{f.name} declares no range"
    assert dataclasses.fields(Profile)[-1].metadata["allowed"]  # device


@pytest.mark.parametrize("key, value, message", [
    ("pretrain.learning_rate", "nan", "pretrain.learning_rate=nan: must be a finite number in [0, 1e6]"),
    ("pretrain.max_grad_norm", "inf", "pretrain.max_grad_norm=inf: must be a finite number > 0"),
    ("model.resid_pdrop", "1e400", "model.resid_pdrop=inf: must be a finite number in [0, 1)"),
    ("device", "gpu", "device='gpu': must be one of ['auto', 'cpu', 'mps', 'cuda', 'cuda:N']"),
    ("device", "cuda:x", "device='cuda:x': must be one of ['auto', 'cpu', 'mps', 'cuda', 'cuda:N']"),
    ("device", "CPU", "device='CPU': must be one of ['auto', 'cpu', 'mps', 'cuda', 'cuda:N']"),
    ("pretrain.report_to", "mlflow",
     "pretrain.report_to='mlflow': must be 'none' or any of ['tensorboard', 'wandb'], comma-separated"),
    ("finetune.report_to", "none,wandb",
     "finetune.report_to='none,wandb': must be 'none' or any of ['tensorboard', 'wandb'], comma-separated"),
    ("model.activation_function", "gelu2", "model.activation_function='gelu2': must be one of ['gelu_new', 'gelu', "
     "'gelu_fast', 'gelu_pytorch_tanh', 'gelu_accurate', 'quick_gelu', 'relu', 'silu', 'swish', 'tanh', "
     "'sigmoid', 'mish', 'linear']"),
])
def test_non_finite_numbers_and_unknown_choices(key, value, message):
    with pytest.raises(ConfigError) as raised:
        get_profile("lesson", parse_overrides([f"{key}={value}"]))
    assert str(raised.value) == message


@pytest.mark.parametrize("key, value", [
    ("device", "auto"), ("device", "cpu"), ("device", "cuda"), ("device", "cuda:3"), ("device", "mps"),
    ("pretrain.report_to", "none"), ("pretrain.report_to", ""), ("pretrain.report_to", " TensorBoard , wandb"),
    ("pretrain.report_to", "wandb"),
])
def test_choices_accept_what_the_code_accepts(key, value):
    assert get_profile("lesson", {key: value})


def test_report_to_choices_are_the_viewers_tracking_knows():
    from helpers.config import TrainConfig
    from helpers.runs import RunError
    from helpers.settings_check import rule_of
    from helpers.tracking import REPORTERS, parse_report_to

    assert rule_of(TrainConfig, "report_to")[1:] == REPORTERS
    for value in ["none", "", "NONE", "wandb", "tensorboard,wandb", " wandb ,TensorBoard", "none,wandb", "mlflow",
                  "wandb,", ",", "tensorboard;wandb"]:
        try:
            parse_report_to(value)
            tracking_accepts = True
        except RunError:
            tracking_accepts = False
        try:
            get_profile("lesson", {"pretrain.report_to": value})
            config_accepts = True
        except ConfigError:
            config_accepts = False
        assert config_accepts == tracking_accepts, value


def test_every_activation_choice_builds_a_gpt2_equal_to_transformers():
    from transformers.activations import ACT2FN

    from helpers.config import ACTIVATIONS
    from helpers.model import build_model, hf_model

    ids = torch.tensor([[1, 5, 2, 7]])
    outputs = {}
    for name in ACTIVATIONS:
        assert name in ACT2FN
        cfg = get_profile("lesson", {"model.activation_function": name, "model.n_layer": 1, "model.vocab_size": 8,
                                     "model.n_embd": 8, "model.n_head": 2, "data.block_size": 4}).model
        model = build_model(cfg, seed=0).eval()
        with torch.no_grad():  # biases off zero, so that each activation's negative side shows
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
            ours, theirs = model(ids).logits, hf_model(model).eval()(ids).logits
        assert (ours - theirs).abs().max().item() < 1e-5, name
        outputs[name] = ours
    assert not torch.equal(outputs["gelu_new"], outputs["relu"])  # the name reaches the MLP


def test_odd_overrides_are_config_errors_not_tracebacks():
    with pytest.raises(ConfigError, match=r"setting 'pretrain.learning_rate' expects a number a float can hold"):
        get_profile("lesson", {"pretrain.learning_rate": 10**400})
    with pytest.raises(ConfigError, match=r"setting names are strings such as 'pretrain.max_steps', got 3"):
        get_profile("lesson", {3: 1})
    with pytest.raises(ConfigError, match=r"overrides must map 'section.name' keys to values, got \['a=1'\]"):
        get_profile("lesson", ["a=1"])
    with pytest.raises(ConfigError, match=r"unknown profile \['lesson'\]"):
        get_profile(["lesson"])
    with pytest.raises(ConfigError, match=r"a saved profile is a mapping"):
        Profile.from_dict([1])


def test_a_refused_override_leaves_the_profile_as_it_was():
    from helpers.config import apply_overrides

    profile = get_profile("paper")
    before = profile.to_dict()
    with pytest.raises(ConfigError, match="pretrain.log_every=0"):
        apply_overrides(profile, {"pretrain.batch_size": 3, "model.n_layer": 2, "device": "cpu",
                                  "pretrain.log_every": 0})
    assert profile.to_dict() == before


def test_saved_profiles_are_checked_too():
    saved = get_profile("paper").to_dict()
    saved["pretrain"]["log_every"] = 0
    with pytest.raises(ConfigError) as raised:
        Profile.from_dict(saved)
    assert str(raised.value) == "pretrain.log_every=0: must be >= 1"
    saved = get_profile("paper").to_dict()
    saved["model"]["n_head"] = 7
    with pytest.raises(ConfigError) as raised:
        Profile.from_dict(saved)
    assert str(raised.value) == "model.n_head=7: model.n_embd (64) must be divisible by model.n_head"


def test_cli_refuses_a_device_this_machine_lacks(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for device, message in [("cuda", "device='cuda': this machine has no CUDA GPU; use 'cpu' or 'auto'"),
                            ("cuda:1", "device='cuda:1': this machine has no CUDA GPU; use 'cpu' or 'auto'"),
                            ("mps", "device='mps': this machine has no Apple-silicon GPU (MPS); use 'cpu' or 'auto'")]:
        status, err = _refused_by_cli(tmp_path, monkeypatch, capsys, "pretrain", "--set", f"device={device}",
                                      "--out", str(tmp_path / "run"))
        assert (status, err) == (2, f"error: {message}\n")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    status, err = _refused_by_cli(tmp_path, monkeypatch, capsys, "evaluate", "--set", "device=cuda:2",
                                  "--run", str(tmp_path / "run"))
    assert (status, err) == (2, "error: device='cuda:2': this machine has 2 CUDA GPUs; use 'cpu' or 'auto'\n")
    assert list(tmp_path.iterdir()) == []


def test_cli_exports_its_entry_points():
    from helpers import cli

    assert cli.__all__ == ["main", "build_parser"]


def test_a_model_beyond_two_billion_parameters_is_refused_before_anything_is_built():
    """The count is GPT-2's own (3,582,016 for the paper's shape); GPT-2 XL's shape (1.56 billion) still resolves."""
    from helpers.model import build_model, parameter_report
    from helpers.settings_check import gpt2_parameters

    paper = get_profile("paper")
    assert gpt2_parameters(paper.model) == parameter_report(build_model(paper.model))["total"] == 3_582_016
    xl = {"model.n_embd": 1600, "model.n_layer": 48, "model.n_head": 25}
    assert gpt2_parameters(get_profile("paper", xl).model) == 1_557_611_200
    too_large = "makes a GPT-2 of more than 2,000,000,000 parameters (GPT-2 XL has 1.5 billion)"
    for key, value in [("model.n_embd", 65536), ("model.n_layer", 10**400), ("model.vocab_size", 10**9)]:
        with pytest.raises(ConfigError) as raised:
            get_profile("paper", {key: value})
        assert str(raised.value) == f"{key}={value!r}: {too_large}"


def test_a_pretraining_is_compared_without_what_only_finetuning_reads():
    plain = get_profile("lesson").to_dict()
    tuned_otherwise = get_profile("lesson", {"finetune.max_steps": 9, "data.yes_no_fact": "asked",
                                             "data.position_offset": 3, "data.instruction_limit": 5}).to_dict()
    assert stage_settings("pretrain", plain) == stage_settings("pretrain", tuned_otherwise)
    assert stage_settings("finetune", tuned_otherwise) == tuned_otherwise != plain
    assert "finetune" not in stage_settings("pretrain", plain) and "block_size" in stage_settings("pretrain", plain)["data"]
    # a pretraining that mixes the training questions in reads them
    assert stage_settings("pretrain", plain, questions=True) != stage_settings("pretrain", tuned_otherwise, questions=True)
    mixed = get_profile("lesson", {"data.qa_share": 0.25}).to_dict()
    assert stage_settings("pretrain", mixed) != stage_settings("pretrain", {**mixed, "data": {**mixed["data"],
                                                                                              "yes_no_fact": "asked"}})
    assert stage_settings("pretrain", plain) != stage_settings("pretrain", get_profile("lesson", {
        "data.block_size": 64}).to_dict())
