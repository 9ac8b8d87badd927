"""Data pipeline: tokenizers, real-format loaders, clear errors, packing, caching, prompts and masks."""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pytest

from conftest import ALPACA_335, ALPACA_LONG, DATA, TINYSTORIES_TRAIN, TINYSTORIES_VALID, require_shared
from helpers.config import ConfigError, get_profile
from helpers.data import (COPY_SPAN, FINETUNE_COPY_SPAN, before_verdict, copy_drills, copy_examples, dense_examples,
                          encode_instruction, finetuning_examples, pack_concat, pack_per_story, pad_batch,
                          pretraining_blocks, qa_blocks, verdict_examples)
from helpers.prompts import follow_up_prompt, format_prompt, model_prompt
from helpers.sources import (SAMPLES, DataError, load_instructions, load_stories, read_instruction_file,
                             read_story_file)
from helpers.tokenizer import load_tokenizer, profile_tokenizer, train_story_tokenizer


@pytest.fixture(scope="module")
def gpt2(gpt2_dir):
    """GPT-2's tokenizer read from the folder ``HELPERS_TOKENIZER`` names (set for this module only)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HELPERS_TOKENIZER", str(gpt2_dir))
        yield load_tokenizer(get_profile("paper").data)


# ------------------------------------------------------------------ tokenizers


def test_gpt2_tokenizer_from_the_environment_folder(gpt2):
    assert gpt2("Hello world")["input_ids"] == [15496, 995]
    assert len(gpt2) == 50257 and gpt2.eos_token_id == 50256 and gpt2.eos_token == "<|endoftext|>"
    text = "Once upon a time, there was a little girl named Lily."
    ids = [7454, 2402, 257, 640, 11, 612, 373, 257, 1310, 2576, 3706, 20037, 13]
    assert gpt2(text)["input_ids"] == ids and gpt2.decode(ids) == text
    assert gpt2.pad_token is None  # GPT-2 has none: batches are padded with eos and masked


def test_paper_profile_tokenizer_matches_the_model(gpt2, gpt2_dir, monkeypatch):
    monkeypatch.setenv("HELPERS_TOKENIZER", str(gpt2_dir))
    tok = profile_tokenizer(get_profile("paper"))
    assert len(tok) == 50257
    with pytest.raises(DataError, match="has 50257 tokens but model.vocab_size is 50304; set model.vocab_size=50257"):
        profile_tokenizer(get_profile("paper", {"model.vocab_size": 50304}))  # padded to a multiple of 64


def test_shipped_gpt2_files_are_openais_and_give_the_hubs_ids(gpt2, monkeypatch):
    """No network, no HELPERS_TOKENIZER, no ../shared: "gpt2" is the copy inside the package, the same tokenizer."""
    import hashlib

    from helpers import tokenizer as tokenizers

    sums = dict(line.split()[::-1] for line in (DATA / "SHA256SUMS").read_text().splitlines() if line.strip())
    for name in ("vocab.json", "merges.txt"):  # unchanged from the release
        digest = hashlib.sha256((tokenizers.SHIPPED_GPT2 / name).read_bytes()).hexdigest()
        assert digest == sums[f"gpt2-tokenizer/{name}"]
    assert "Modified MIT License" in (tokenizers.SHIPPED_GPT2 / "LICENSE").read_text()
    monkeypatch.delenv("HELPERS_TOKENIZER", raising=False)
    monkeypatch.setattr(tokenizers.constants, "HF_HUB_OFFLINE", True)
    tokenizers._hub_gpt2_available.cache_clear()
    try:
        assert tokenizers.tokenizer_source("gpt2") == str(tokenizers.SHIPPED_GPT2)
        shipped = profile_tokenizer(get_profile("paper"))
    finally:
        tokenizers._hub_gpt2_available.cache_clear()
    assert shipped("Hello world")["input_ids"] == [15496, 995] and len(shipped) == 50257
    assert shipped.eos_token_id == 50256 and shipped.pad_token is None
    texts = [TINYSTORIES_TRAIN.read_text()[:200_000], "naïve café 🦕\n\n  two spaces <|endoftext|> end"]
    texts += [r["instruction"] + "\n" + r["input"] + "\n" + r["output"] for r in read_instruction_file(ALPACA_335)]
    for text in texts:  # the same ids as the reference folder (tokenizer.json built from the same files)
        assert shipped(text)["input_ids"] == gpt2(text)["input_ids"]
    monkeypatch.setenv("HELPERS_TOKENIZER", "/somewhere/else")
    assert tokenizers.tokenizer_source("gpt2") == "/somewhere/else" and tokenizers.tokenizer_source("x/y") == "x/y"


def test_missing_tokenizer_folder_is_named(tmp_path):
    cfg = get_profile("paper", {"data.tokenizer": str(tmp_path / "nowhere")}).data
    with pytest.raises(DataError, match=f"tokenizer folder '{tmp_path / 'nowhere'}' does not exist"):
        load_tokenizer(cfg)


def test_story_bpe_is_deterministic_and_round_trips(tmp_path):
    cfg_a = get_profile("lesson", {"data.cache_dir": str(tmp_path / "a")}).data
    cfg_b = get_profile("lesson", {"data.cache_dir": str(tmp_path / "b")}).data
    folder_a, folder_b = train_story_tokenizer(cfg_a), train_story_tokenizer(cfg_b)
    assert (folder_a / "tokenizer.json").read_text() == (folder_b / "tokenizer.json").read_text()
    tok = load_tokenizer(cfg_a)
    assert len(tok) == 2048 and tok.eos_token_id == 0 and tok.convert_ids_to_tokens(0) == "<|endoftext|>"
    text = 'Lily said, "Look, a dinosaur!"\nPhotosynthesis is unknown here.'
    assert tok.decode(tok(text)["input_ids"]) == text
    # a known corpus sentence needs far fewer tokens than characters
    assert len(tok("Once upon a time, there was a little girl named Lily.")["input_ids"]) <= 13


def test_a_story_bpe_saved_first_by_another_process_is_kept(tmp_path, monkeypatch):
    """Two test workers (or a notebook and a test) may train the same tokenizer at once: the loser keeps the winner's."""
    from helpers import tokenizer as tokenizers

    cfg = get_profile("lesson", {"data.cache_dir": str(tmp_path)}).data
    rename = os.replace

    def other_process_wins(src, dst):  # the other process's rename lands just before this one's
        shutil.copytree(src, dst)
        rename(src, dst)

    monkeypatch.setattr(tokenizers.os, "replace", other_process_wins)
    folder = train_story_tokenizer(cfg)
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]  # no temporary folder left
    assert len(load_tokenizer(cfg)) == 2048


# ------------------------------------------------------------------ story files


def test_real_tinystories_txt():
    require_shared()
    stories = read_story_file(TINYSTORIES_TRAIN)
    assert len(stories) == 2317  # 2,316 complete stories and the one cut at 2 MiB
    assert stories[0].startswith("One day, a little girl named Lily found a needle in her room.")
    assert stories[1].startswith("Once upon a time, there was a little car named Beep.")
    assert stories[-1].endswith("She said it was")
    assert all("<|endoftext|>" not in s and s == s.strip() for s in stories)


def test_txt_without_separators_splits_at_blank_lines():
    require_shared()
    blocks = read_story_file(TINYSTORIES_VALID)
    assert len(blocks) == 4300
    assert blocks[0].startswith('Spot. Spot saw the shiny car and said, "Wow, Kitty, your car')


def test_json_jsonl_and_parquet_with_text(tmp_path):
    rows = [{"text": "One. Two."}, {"text": "Three!"}]
    (tmp_path / "s.json").write_text(json.dumps(rows))
    (tmp_path / "s.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["One. Two.", "Three!"], "other": [1, 2]}), tmp_path / "s.parquet")
    for name in ("s.json", "s.jsonl", "s.parquet"):
        assert read_story_file(tmp_path / name) == ["One. Two.", "Three!"], name


@pytest.mark.parametrize("name, content, message", [
    ("missing.txt", None, "stories file '{p}' does not exist"),
    ("empty.txt", b"  \n", "stories file '{p}' is empty"),
    ("latin.txt", b"Once upon\n a time \xff there", "stories file '{p}' is not UTF-8 text: byte 0xff at offset 18 (line 2)"),
    ("bad.json", b'[{"text": "a"},\n {"text": }]', "'{p}' is not valid JSON: Expecting value at line 2 column 11"),
    ("notlist.json", b'{"text": "a"}', "'{p}' must hold a JSON list of records, got dict"),
    ("nofield.json", b'[{"text": "a"}, {"story": "b"}]', "'{p}' record 1: expected an object with a 'text' field"),
    ("wrongtype.json", b'[{"text": 5}]', "'{p}' record 0: 'text' must be a string, got int"),
    ("bad.jsonl", b'{"text": "a"}\n{"text": "b"\n', "'{p}' is not valid JSON: Expecting ',' delimiter at line 2 column 13"),
    ("lines.jsonl", b'{"text": "a"}\n\n{"txt": "b"}\n', "'{p}' line 3: expected an object with a 'text' field"),
    ("stories.csv", b"text\nabc\n", "stories file '{p}': unsupported type .csv; use .txt, .json, .jsonl or .parquet"),
])
def test_bad_story_files_name_file_and_record(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError) as err:
        read_story_file(path)
    assert str(err.value) == message.format(p=path)


# ------------------------------------------------------------------ instruction files


def test_real_alpaca_files():
    require_shared()
    records = read_instruction_file(ALPACA_335)
    assert len(records) == 335 and sum(bool(r["input"]) for r in records) == 172
    assert records[0]["instruction"] == "Give three tips for staying healthy."
    assert records[1]["output"] == "The three primary colors are red, blue, and yellow."
    assert records[8]["output"].startswith("<nooutput>")
    assert len(read_instruction_file(ALPACA_LONG)) == 2000


def test_the_shipped_samples_are_the_first_records_of_the_originals():
    """The package's samples are byte-for-byte prefixes of the shared copies (which record their sources)."""
    require_shared()
    shipped = SAMPLES["stories"].read_bytes()
    assert TINYSTORIES_TRAIN.read_bytes().startswith(shipped) and len(shipped) < 1024 * 1024
    stories = read_story_file(SAMPLES["stories"])
    assert len(stories) == 1000 and stories == read_story_file(TINYSTORIES_TRAIN)[:1000]
    assert SAMPLES["instructions"].read_bytes() == ALPACA_335.read_bytes()
    licences = (SAMPLES["stories"].parent / "README.md").read_text()
    assert "CDLA-Sharing-1.0" in licences and "CC BY-NC 4.0" in licences


def test_paper_data_falls_back_to_the_shipped_sample_when_the_hub_is_out_of_reach(monkeypatch, tmp_path):
    import helpers.sources as sources

    paper = get_profile("paper").data
    monkeypatch.setattr(sources, "hub_unreachable", lambda: "huggingface.co unreachable (test)")
    data, line = sources.paper_data_source(paper, "instructions")
    assert data.instructions == str(SAMPLES["instructions"]) and data.stories == "hub"
    assert line == ("the sample shipped with the package (alpaca_data.first335.json), because the hub is out of "
                    "reach: huggingface.co unreachable (test)")
    train, val = load_instructions(data)
    assert len(train) + len(val) == 335
    data, line = sources.paper_data_source(paper, "stories")
    assert load_stories(data, "train")[0].startswith("One day, a little girl named Lily found a needle")
    monkeypatch.setattr(sources, "hub_unreachable", lambda: None)
    assert sources.paper_data_source(paper, "stories") == (paper, "roneneldan/TinyStories from the Hugging Face hub")
    local = get_profile("paper", {"data.stories": str(tmp_path / "mine.txt")}).data
    assert sources.paper_data_source(local, "stories") == (local, f"the local file {tmp_path / 'mine.txt'}")
    with pytest.raises(DataError, match="data.stories='embedded' is the course's own corpus, not the paper's data"):
        sources.paper_data_source(get_profile("lesson").data, "stories")
    with pytest.raises(DataError, match="unknown dataset 'tokens'"):
        sources.paper_data_source(paper, "tokens")


@pytest.mark.parametrize("content, message", [
    (b'[{"instruction": "a", "output": "b"}, {"instruction": "c"}]', "'{p}' record 1 has no 'output' field"),
    (b'[{"output": "b"}]', "'{p}' record 0 has no 'instruction' field"),
    (b'[{"instruction": "a", "input": 3, "output": "b"}]', "'{p}' record 0: 'input' must be a string, got int"),
    (b'[{"instruction": " ", "output": "b"}]', "'{p}' record 0: 'instruction' is empty"),
    (b'["just text"]', "'{p}' record 0: expected an object, got str"),
    (b"[]", "'{p}' holds no records"),
    (b'[{"instruction": "a", "output": "b"}', "'{p}' is not valid JSON: Expecting ',' delimiter at line 1 column 37"),
])
def test_bad_alpaca_records_are_named(tmp_path, content, message):
    path = tmp_path / "alpaca_data.json"
    path.write_bytes(content)
    with pytest.raises(DataError) as err:
        read_instruction_file(path)
    assert str(err.value) == message.format(p=path)


def test_alpaca_split_is_deterministic_and_disjoint():
    require_shared()
    cfg = get_profile("lesson", {"data.instructions": str(ALPACA_335)}).data
    train, val = load_instructions(cfg)
    assert (len(train), len(val)) == (301, 34)  # 1/10 held out, as in the paper
    assert load_instructions(cfg) == (train, val)
    key = lambda r: (r["instruction"], r["input"], r["output"])  # noqa: E731
    assert not {key(r) for r in train} & {key(r) for r in val}
    assert len({key(r) for r in train + val}) == 335


def test_embedded_questions_come_from_disjoint_stories():
    cfg = get_profile("lesson", {"data.instruction_limit": 300}).data
    train, val = load_instructions(cfg)
    assert (len(train), len(val)) == (300, 30)
    assert {r["kind"] for r in train} == {"who", "what", "where", "feeling", "yes_no"}
    assert not {r["input"] for r in train} & {r["input"] for r in val}


def test_data_yes_no_fact_writes_both_splits_yes_no_answers_with_their_fact():
    plain = load_instructions(get_profile("lesson", {"data.instruction_limit": 300}).data)
    told_settings = {"data.instruction_limit": 300, "data.yes_no_fact": "before"}
    before = load_instructions(get_profile("lesson", told_settings).data)
    for bare, told in zip(plain, before):
        assert [r["instruction"] for r in told] == [r["instruction"] for r in bare]
        for b, t in zip(bare, told):
            if b["kind"] == "yes_no":
                assert t["output"].endswith(f", so {b['output']}.") and t["verdict"] == b["output"], t
            else:
                assert t == b
    with pytest.raises(ConfigError,
                       match="'data.yes_no_fact' must be one of \\['none', 'before', 'after', 'asked', "
                             "'compared'\\], got 'x'"):
        get_profile("lesson", {"data.yes_no_fact": "x"})


def test_local_story_file_holds_out_the_last_share():
    require_shared()
    cfg = get_profile("paper", {"data.stories": str(TINYSTORIES_TRAIN)}).data
    train, val = load_stories(cfg, "train"), load_stories(cfg, "validation")
    assert (len(train), len(val)) == (2201, 116)  # 5% of 2,317
    assert val[-1].endswith("She said it was")


# ------------------------------------------------------------------ packing


def test_pack_concat_exact():
    arr, counts = pack_concat([[1, 2, 3], [4, 5], [6]], eos_id=0, block_size=4)
    assert arr.dtype == np.uint16
    assert arr.tolist() == [[1, 2, 3, 0], [4, 5, 0, 6]]
    assert counts == {"stories": 3, "tokens": 9, "blocks": 2, "tokens_dropped": 1}


def test_pack_per_story_drops_short_pieces_like_the_paper():
    arr, counts = pack_per_story([[1, 2, 3, 4, 5], [6, 7], [8, 9, 10, 11]], block_size=2)
    assert arr.tolist() == [[1, 2], [3, 4], [6, 7], [8, 9], [10, 11]]
    assert counts == {"stories": 3, "tokens": 11, "blocks": 5, "tokens_dropped": 1}


def test_blocks_are_cached_and_rebuilt_when_the_file_changes(tmp_path, gpt2):
    require_shared()
    source = tmp_path / "stories.txt"
    text = TINYSTORIES_TRAIN.read_text(encoding="utf-8")
    source.write_text(text[:200_000], encoding="utf-8")
    cfg = get_profile("paper", {"data.stories": str(source), "data.cache_dir": str(tmp_path / "cache"),
                                "data.packing": "concat"}).data  # one stream of stories, end-of-text between them
    first = pretraining_blocks(cfg, "train", gpt2, progress=False)
    stories = load_stories(cfg, "train")
    expected = sum(len(gpt2(s)["input_ids"]) + 1 for s in stories)
    assert first.meta["tokens"] == expected and first.meta["stories"] == len(stories)
    assert len(first) == expected // 128 and first.array.shape == (expected // 128, 128)
    stream = [t for s in stories for t in gpt2(s)["input_ids"] + [50256]]
    assert first.array[0].tolist() == stream[:128] and first.array[-1].tolist() == stream[(len(first) - 1) * 128:len(first) * 128]
    mtime = first.path.stat().st_mtime_ns
    again = pretraining_blocks(cfg, "train", gpt2, progress=False)
    assert again.path == first.path and again.path.stat().st_mtime_ns == mtime  # reused, not rewritten
    source.write_text(text[:150_000], encoding="utf-8")
    changed = pretraining_blocks(cfg, "train", gpt2, progress=False)
    assert changed.path != first.path and len(changed) < len(first)
    assert not list((tmp_path / "cache").rglob("*.tmp*"))


def test_per_story_packing_throws_tokens_away(tmp_path, gpt2):
    require_shared()
    common = {"data.stories": str(TINYSTORIES_TRAIN), "data.cache_dir": str(tmp_path), "data.train_stories": 500}
    concat = pretraining_blocks(get_profile("paper", {**common, "data.packing": "concat"}).data, "train", gpt2,
                                progress=False)
    paper = pretraining_blocks(get_profile("paper", common).data, "train", gpt2, progress=False)
    assert get_profile("paper").data.packing == "per_story"  # the paper profile cuts each story alone
    assert paper.meta["tokens"] == concat.meta["tokens"] - 500  # no eos tokens between stories
    assert paper.meta["tokens_dropped"] == paper.meta["tokens"] - 128 * len(paper)
    assert paper.meta["tokens_dropped"] > 0.3 * paper.meta["tokens"]  # most stories end in a short piece
    assert concat.meta["tokens_dropped"] < 128


def test_blocks_follow_the_tokenizers_definition_not_its_name(tmp_path, gpt2_dir, monkeypatch):
    """Three folders all loaded as "gpt2": a copy reuses the cache, other merges or another end-of-text do not."""
    copy, edited = tmp_path / "gpt2-copy", tmp_path / "gpt2-edited"
    shutil.copytree(gpt2_dir, copy)
    shutil.copytree(gpt2_dir, edited)
    definition = json.loads((edited / "tokenizer.json").read_text())
    definition["model"]["merges"] = definition["model"]["merges"][100:]  # same vocabulary, 100 merges forgotten
    (edited / "tokenizer.json").write_text(json.dumps(definition))
    cfg = get_profile("paper", {"data.stories": "embedded", "data.train_stories": 50, "data.packing": "concat",
                                "data.cache_dir": str(tmp_path / "cache")}).data
    assert cfg.tokenizer == "gpt2"

    def tokenizer(folder):
        monkeypatch.setenv("HELPERS_TOKENIZER", str(folder))
        return load_tokenizer(cfg)

    first = pretraining_blocks(cfg, "train", tokenizer(gpt2_dir), progress=False)
    written = first.path.stat().st_mtime_ns
    again = pretraining_blocks(cfg, "train", tokenizer(copy), progress=False)
    assert again.path == first.path and again.path.stat().st_mtime_ns == written  # reused, not rewritten
    other = pretraining_blocks(cfg, "train", tokenizer(edited), progress=False)
    assert other.path != first.path and other.meta["tokens"] > first.meta["tokens"]
    assert first.array[0, :10].tolist() == tokenizer(gpt2_dir)(load_stories(cfg, "train")[0])["input_ids"][:10]
    dot_ends = tokenizer(copy)
    dot_ends.eos_token = "."  # what packing puts between stories, the tokenizer's definition unchanged
    separated = pretraining_blocks(cfg, "train", dot_ends, progress=False)
    assert separated.path not in {first.path, other.path} and separated.meta["tokens"] == first.meta["tokens"]
    assert 50256 in first.array and 50256 not in separated.array
    assert pretraining_blocks(cfg, "train", tokenizer(gpt2_dir), progress=False).path == first.path


def test_bad_source_leaves_no_cache_files(tmp_path, gpt2):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"Once \xfe upon")
    cfg = get_profile("paper", {"data.stories": str(bad), "data.cache_dir": str(tmp_path / "cache")}).data
    with pytest.raises(DataError, match="is not UTF-8 text"):
        pretraining_blocks(cfg, "train", gpt2, progress=False)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*"))


# ------------------------------------------------------------------ prompts and masks


def test_labels_hide_exactly_the_prompt(gpt2):
    record = {"instruction": "What are the three primary colors?", "input": "",
              "output": "The three primary colors are red, blue, and yellow."}
    example = encode_instruction(record, gpt2, max_length=512)
    # the template's final space starts the response: " The" is one token, as in any text
    assert format_prompt(record).endswith("### Response: ") and model_prompt(record).endswith(":")
    prompt = gpt2(model_prompt(record))["input_ids"]
    response = gpt2(" " + record["output"])["input_ids"]
    assert gpt2.convert_ids_to_tokens(prompt[-2:] + response[:2]) == ["ĠResponse", ":", "ĠThe", "Ġthree"]
    assert example["input_ids"] == prompt + response + [50256]
    assert example["labels"] == [-100] * len(prompt) + response + [50256]
    assert gpt2.decode(example["input_ids"]) == format_prompt(record) + record["output"] + "<|endoftext|>"


def test_truncation_and_dropping(gpt2):
    record = {"instruction": "Say hi.", "input": "", "output": "Hi there, friend."}
    full = encode_instruction(record, gpt2, max_length=512)
    cut = encode_instruction(record, gpt2, max_length=len(full["input_ids"]) - 2)
    assert cut["input_ids"] == full["input_ids"][:-2] and cut["labels"] == full["labels"][:-2]
    require_shared()
    cfg = get_profile("paper", {"data.instructions": str(ALPACA_335), "data.instruction_max_length": 48}).data
    train, val = finetuning_examples(cfg, gpt2)
    assert train.dropped > 0 and len(train) + train.dropped == 301
    assert all(len(e["input_ids"]) <= 48 and any(x != -100 for x in e["labels"][1:]) for e in train.examples)


def test_pad_batch_masks_padding():
    batch = pad_batch([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}], pad_id=9)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 9, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]


def test_embedded_blocks_follow_the_generator(tmp_path, gpt2, monkeypatch):
    from helpers import data

    cfg = get_profile("paper", {"data.stories": "embedded", "data.train_stories": 50,
                                "data.cache_dir": str(tmp_path)}).data
    first = pretraining_blocks(cfg, "train", gpt2, progress=False)
    assert pretraining_blocks(cfg, "train", gpt2, progress=False).path == first.path
    monkeypatch.setattr(data, "corpus_version", lambda: "edited-grammar")
    assert pretraining_blocks(cfg, "train", gpt2, progress=False).path != first.path


def _as_pairs(row: list[int]) -> list[int]:
    """Read a copy drill back as spans written twice (lengths within COPY_SPAN; the last one may be cut)."""
    lengths, i = [], 1
    while i < len(row):
        rest = len(row) - i
        fits = [n for n in range(COPY_SPAN[0], COPY_SPAN[1] + 1)
                if row[i:i + n] == row[i + n:i + 2 * n] or (2 * n > rest and row[i + n:] == row[i:i + rest - n])]
        assert fits, f"no span written twice at position {i}"
        lengths.append(fits[0])
        i += 2 * fits[0]
    return lengths


def test_copy_drills_write_random_spans_twice():
    drills = copy_drills(6, 288, range(5, 405), eos_id=0, seed=3)
    assert drills.shape == (6, 288) and drills.dtype == np.uint16
    assert (drills[:, 0] == 0).all() and drills[:, 1:].min() >= 5 and drills[:, 1:].max() < 405
    for row in drills.tolist():
        assert len(_as_pairs(row)) >= 2
    assert (copy_drills(6, 288, range(5, 405), eos_id=0, seed=3) == drills).all()
    assert (copy_drills(6, 288, range(5, 405), eos_id=0, seed=4) != drills).any()


def test_copy_drills_join_the_training_blocks_only(tmp_path, gpt2):
    base = {"data.stories": "embedded", "data.train_stories": 200, "data.val_stories_count": 20,
            "data.cache_dir": str(tmp_path)}
    stories = get_profile("paper", base).data
    mixed = get_profile("paper", {**base, "data.copy_share": 0.25}).data
    plain, drilled = (pretraining_blocks(cfg, "train", gpt2, progress=False) for cfg in (stories, mixed))
    extra = round(len(plain) * 0.25 / 0.75)
    assert len(drilled) == len(plain) + extra and drilled.meta["copy_drills"] == extra
    assert (drilled.array[:len(plain)] == plain.array).all()  # the stories' blocks, then the drills
    assert drilled.meta["tokens"] == plain.meta["tokens"]  # story tokens, as before
    assert all(_as_pairs(row) for row in drilled.array[len(plain):].tolist())
    fresh = get_profile("paper", {**base, "data.copy_share": 0.25, "data.cache_dir": str(tmp_path / "fresh")}).data
    validation = pretraining_blocks(fresh, "validation", gpt2, progress=False)  # measured on stories alone
    assert "copy_drills" not in validation.meta
    assert (validation.array == pretraining_blocks(stories, "validation", gpt2, progress=False).array).all()


def test_qa_blocks_write_the_questions_as_finetuning_does_and_start_again_when_they_run_out(gpt2):
    records = [{"instruction": "Who is the main character?", "input": "Tom had a red ball.", "output": "Tom"},
               {"instruction": "Is the ball red?", "input": "Tom had a red ball.", "output": "Yes."}]
    written = [encode_instruction(r, gpt2, 512)["input_ids"] for r in records]
    assert written[0][-1] == gpt2.eos_token_id and gpt2.decode(written[0]).endswith("Tom<|endoftext|>")
    stream = (written[0] + written[1]) * 8
    blocks = qa_blocks(3, 32, records, gpt2, 512)
    assert blocks.shape == (3, 32) and blocks.dtype == np.uint16
    assert blocks.reshape(-1).tolist() == stream[:96]
    cut = qa_blocks(1, 32, records, gpt2, 10)  # cut to 10 tokens each, as finetuning cuts them
    assert cut.reshape(-1).tolist() == written[0][:10] + written[1][:10] + written[0][:10] + written[1][:2]
    with pytest.raises(DataError, match="data.qa_share needs training questions"):
        qa_blocks(1, 32, [], gpt2, 512)


def test_qa_blocks_join_the_training_blocks_beside_the_drills(tmp_path, gpt2):
    base = {"data.stories": "embedded", "data.train_stories": 200, "data.val_stories_count": 20,
            "data.instructions": "embedded", "data.instruction_limit": 50, "data.cache_dir": str(tmp_path)}
    stories = get_profile("paper", base).data
    both = get_profile("paper", {**base, "data.copy_share": 0.2, "data.qa_share": 0.3}).data
    plain, mixed = (pretraining_blocks(cfg, "train", gpt2, progress=False) for cfg in (stories, both))
    drills, questions = round(len(plain) * 0.2 / 0.5), round(len(plain) * 0.3 / 0.5)  # stories: half of the whole
    assert (mixed.meta["copy_drills"], mixed.meta["qa_blocks"]) == (drills, questions) and questions > drills
    assert len(mixed) == len(plain) + drills + questions
    records = load_instructions(both)[0]
    expected = qa_blocks(questions, both.block_size, records, gpt2, both.instruction_max_length)
    assert (mixed.array[len(plain) + drills:] == expected).all()  # stories, drills, then the questions
    assert (mixed.array[:len(plain)] == plain.array).all()
    held_out = {r["input"] for r in load_instructions(both)[1]}
    assert not held_out & {r["input"] for r in records}  # no validation story among the questions trained on
    other = get_profile("paper", {**base, "data.copy_share": 0.2, "data.qa_share": 0.3,
                                  "data.instruction_limit": 60}).data  # other questions: another cached file
    assert (pretraining_blocks(other, "train", gpt2, progress=False).array[len(plain) + drills:] != expected).any()
    with pytest.raises(ConfigError, match=r"^data.copy_share=0.5: data.copy_share \+ data.qa_share \(0.5\) must be < 1$"):
        get_profile("paper", {**base, "data.copy_share": 0.5, "data.qa_share": 0.5})


def test_copy_examples_score_only_the_second_writing_of_one_span():
    examples = copy_examples(40, range(5, 405), eos_id=0, seed=3)
    lengths = set()
    for e in examples:
        ids, labels = e["input_ids"], e["labels"]
        n = (len(ids) - 1) // 2
        lengths.add(n)
        assert ids[0] == 0 and len(ids) == 1 + 2 * n and ids[1:1 + n] == ids[1 + n:] and min(ids[1:]) >= 5
        assert labels == [-100] * (1 + n) + ids[1 + n:]
    assert min(lengths) >= FINETUNE_COPY_SPAN[0] and max(lengths) <= FINETUNE_COPY_SPAN[1] and len(lengths) > 10
    assert copy_examples(40, range(5, 405), eos_id=0, seed=3) == examples != copy_examples(40, range(5, 405), 0, seed=4)


def test_finetuning_drills_follow_the_training_answers_only(gpt2):
    base = {"data.instructions": "embedded", "data.instruction_limit": 60}
    plain_train, plain_val = finetuning_examples(get_profile("paper", base).data, gpt2)
    train, val = finetuning_examples(get_profile("paper", {**base, "data.finetune_copy_share": 0.2}).data, gpt2)
    drills = round(len(plain_train) * 0.2 / 0.8)
    assert train.copy_drills == drills > 0 and len(train) == len(plain_train) + drills
    assert train.examples[:len(plain_train)] == plain_train.examples and train.records == plain_train.records
    assert train.examples[len(plain_train):] == copy_examples(drills, [i for i in range(len(gpt2)) if i != gpt2.eos_token_id],
                                                              gpt2.eos_token_id, 0)
    assert val.examples == plain_val.examples and val.copy_drills == 0


def _written_densely(records, tokenizer):
    """What a dense example of ``records`` (in this order) must hold: the first as finetuning writes it, then each
    other in the follow-up template with its answer and end-of-text; labels on answers and end-of-texts only."""
    first = encode_instruction(records[0], tokenizer, 512)
    ids, labels = list(first["input_ids"]), list(first["labels"])
    for record in records[1:]:
        prompt = tokenizer(follow_up_prompt(record), add_special_tokens=False)["input_ids"]
        answer = tokenizer(" " + record["output"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids += prompt + answer
        labels += [-100] * len(prompt) + answer
    return {"input_ids": ids, "labels": labels}


def test_dense_examples_read_a_story_once_then_answer_its_questions_scoring_only_the_answers(gpt2):
    story = "Tom had a red ball. Mia came to play."
    asked = [{"instruction": "Who had a ball?", "input": story, "output": "Tom"},
             {"instruction": "What color was the ball?", "input": story, "output": "red"},
             {"instruction": "Who came to play?", "input": story, "output": "Mia"}]
    other = {"instruction": "Who ran?", "input": "Sam ran.", "output": "Sam"}
    examples = dense_examples(5, asked + [other], gpt2, 512, seed=1)
    texts = [gpt2.decode(e["input_ids"]) for e in examples]
    assert len(examples) == 5 and all(t.count("### Input:") == 1 for t in texts)
    # each round holds every story once, in a shuffled order; the last round is cut at n
    assert sorted("Sam ran." in t for t in texts[:2]) == sorted("Sam ran." in t for t in texts[2:4]) == [False, True]
    orders = []
    for example, text in zip(examples, texts):
        if "Sam ran." in text:
            assert example == encode_instruction(other, gpt2, 512)
            continue
        order = sorted(asked, key=lambda r: text.index(r["instruction"]))
        assert example == _written_densely(order, gpt2) and text.endswith("<|endoftext|>")
        assert gpt2.decode([t for t in example["labels"] if t != -100]) == "".join(
            f" {r['output']}<|endoftext|>" for r in order)
        orders.append([r["output"] for r in order])
    assert len({tuple(o) for o in orders}) > 1  # the questions come in a new order each time
    assert dense_examples(5, asked + [other], gpt2, 512, seed=1) == examples != dense_examples(5, asked + [other], gpt2, 512, seed=2)
    # questions stop before the example would pass max_length
    whole = dense_examples(1, asked, gpt2, 512, seed=1)[0]
    assert dense_examples(1, asked, gpt2, len(whole["input_ids"]), seed=1)[0] == whole  # exactly max_length fits
    cut = dense_examples(1, asked, gpt2, len(whole["input_ids"]) - 1, seed=1)[0]
    assert cut == _written_densely(sorted(asked, key=lambda r: gpt2.decode(whole["input_ids"]).index(r["instruction"]))[:2], gpt2)
    with pytest.raises(DataError, match="data.finetune_dense_share needs training questions"):
        dense_examples(1, [], gpt2, 512, seed=1)


def test_finetuning_shares_of_dense_examples_and_drills_are_shares_of_the_whole_training_set(gpt2):
    base = {"data.instructions": "embedded", "data.instruction_limit": 60}
    plain_train, plain_val = finetuning_examples(get_profile("paper", base).data, gpt2)
    cfg = get_profile("paper", {**base, "data.finetune_dense_share": 0.3, "data.finetune_copy_share": 0.2}).data
    train, val = finetuning_examples(cfg, gpt2)
    dense, drills = round(len(plain_train) * 0.3 / 0.5), round(len(plain_train) * 0.2 / 0.5)
    assert (train.dense, train.copy_drills) == (dense, drills) and len(train) == len(plain_train) + dense + drills
    assert train.examples[:len(plain_train)] == plain_train.examples and train.records == plain_train.records
    assert train.examples[len(plain_train):len(plain_train) + dense] == dense_examples(
        dense, plain_train.records, gpt2, cfg.instruction_max_length, 0)
    assert train.examples[len(plain_train) + dense:] == copy_examples(drills, [i for i in range(len(gpt2)) if i != gpt2.eos_token_id],
                                                                     gpt2.eos_token_id, 0)
    assert val.examples == plain_val.examples and val.dense == 0
    with pytest.raises(ConfigError, match=r"^data.finetune_dense_share=0.5: data.finetune_dense_share \+ "
                                          r"data.finetune_copy_share \(0.5\) \+ data.finetune_verdict_share \(0.0\) "
                                          r"must be < 1$"):
        get_profile("paper", {**base, "data.finetune_dense_share": 0.5, "data.finetune_copy_share": 0.5})
    with pytest.raises(ConfigError, match=r"^data.finetune_copy_share=0.6: data.finetune_dense_share \(0.0\) \+ "
                                          r"data.finetune_copy_share \+ data.finetune_verdict_share \(0.4\) must be < 1$"):
        get_profile("paper", {**base, "data.finetune_verdict_share": 0.4, "data.finetune_copy_share": 0.6,
                              "data.yes_no_fact": "compared"})


_COMPARED = [{"instruction": "Did the story happen at the beach?", "input": "Tom played at the park.",
              "output": "At the beach? The story says at the park, so no.", "kind": "yes_no", "verdict": "no"},
             {"instruction": "Is there someone named Tom in the story?", "input": "Tom played at the park.",
              "output": "Tom? The story says Tom, so yes.", "kind": "yes_no", "verdict": "yes"},
             {"instruction": "Who played?", "input": "Tom played at the park.", "output": "Tom", "kind": "who"}]


def test_before_verdict_cuts_a_compared_answer_before_its_verdict_and_refuses_other_ways():
    assert before_verdict("At the beach? The story says at the park, so no.") == "At the beach? The story says at the park, so"
    assert before_verdict("Tom? The story says Tom, so yes.") == "Tom? The story says Tom, so"
    assert before_verdict("It happened at the park, so no.") == "It happened at the park, so"
    for other in ("At the beach? No, it happened at the park.", "no", "Tom, so maybe.", "Tom, no."):
        with pytest.raises(ValueError, match=re.escape("not a yes/no answer ending in its verdict (', so yes.' or "
                                                       f"', so no.'): {other!r}")):
            before_verdict(other)


def test_verdict_examples_are_compared_answers_alone_with_only_the_verdict_scored(gpt2):
    examples = verdict_examples(30, _COMPARED, gpt2, seed=5)
    texts = [gpt2.decode(e["input_ids"]) for e in examples]
    assert set(texts) == {"<|endoftext|> At the beach? The story says at the park, so no.<|endoftext|>",
                          "<|endoftext|> Tom? The story says Tom, so yes.<|endoftext|>"}  # never the who-answer
    for example, text in zip(examples, texts):
        scored = [t for t in example["labels"] if t != -100]
        assert gpt2.decode(scored) == (" no." if "beach" in text else " yes.") + "<|endoftext|>"
        assert example["labels"] == [-100] * (len(example["input_ids"]) - len(scored)) + example["input_ids"][-len(scored):]
    assert verdict_examples(30, _COMPARED, gpt2, seed=5) == examples != verdict_examples(30, _COMPARED, gpt2, seed=6)
    with pytest.raises(DataError, match="data.finetune_verdict_share needs training yes/no answers"):
        verdict_examples(3, _COMPARED[2:], gpt2, seed=5)


def test_verdict_drills_follow_the_other_drills_and_need_compared_answers(gpt2):
    base = {"data.instructions": "embedded", "data.instruction_limit": 60, "data.yes_no_fact": "compared"}
    plain_train, plain_val = finetuning_examples(get_profile("paper", base).data, gpt2)
    cfg = get_profile("paper", {**base, "data.finetune_copy_share": 0.2, "data.finetune_verdict_share": 0.3}).data
    train, val = finetuning_examples(cfg, gpt2)
    copies, verdicts = round(len(plain_train) * 0.2 / 0.5), round(len(plain_train) * 0.3 / 0.5)
    assert (train.copy_drills, train.verdict_drills) == (copies, verdicts) and len(train) == len(plain_train) + copies + verdicts
    assert train.examples[:len(plain_train)] == plain_train.examples
    assert train.examples[len(plain_train):len(plain_train) + copies] == copy_examples(
        copies, [i for i in range(len(gpt2)) if i != gpt2.eos_token_id], gpt2.eos_token_id, 0)
    assert train.examples[len(plain_train) + copies:] == verdict_examples(verdicts, plain_train.records, gpt2, 0)
    assert val.examples == plain_val.examples and val.verdict_drills == 0
    with pytest.raises(ConfigError, match=r"^data.finetune_verdict_share=0.3: needs data.yes_no_fact=compared \(the "
                                          r"verdict drills are yes/no answers written that way\), not asked$"):
        get_profile("paper", {**base, "data.yes_no_fact": "asked", "data.finetune_verdict_share": 0.3})
