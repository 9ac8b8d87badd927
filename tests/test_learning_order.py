"""The learning order of a pretraining run and the answer curve of a finetuning run, checked value by value."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import tiny_profile
from rigged import constant_model, first_token, one_thread, save_model  # noqa: F401 - one_thread: a fixture
from helpers.inference import Decoding, generate
from helpers.config import get_profile
from helpers.learning_order import answer_curve, answer_tokens, learning_order, thinned
from helpers.sources import story_questions
from helpers.copying import copying_probe
from helpers.model import build_model, load_model
from helpers.probes import cloze_accuracy
from helpers.runs import checkpoint_dir, read_metrics
from helpers.stories import YES_NO_FACTS, corpus, story_prompts
from helpers.story_cloze import cloze_items, without_story
from helpers.text_metrics import consistent_continuations, grammatical_sentences
from helpers.tokenizer import profile_tokenizer


def _rig(run, step, model):
    """Put ``model`` where the run's checkpoint ``step`` keeps its weights."""
    save_model(model, checkpoint_dir(run, step))


def test_learning_order_measures_every_checkpoint(pretrained_run, pre, tmp_path, one_thread):
    """Three checkpoints holding three known, different models: each row is its own checkpoint's."""
    run = Path(shutil.copytree(pretrained_run, tmp_path / "pretrain"))
    _, tok = pre
    # checkpoint 10: every token equally likely after any context; checkpoint 20: after any context,
    # " farm", " playground" and " fair" (the three stories' places) are the likely next words
    _rig(run, 10, constant_model(len(tok), {}, eos_token_id=tok.eos_token_id))
    places = {first_token(tok, " " + w): 5.0 for w in ("farm", "playground", "fair")}
    _rig(run, 20, constant_model(len(tok), places, eos_token_id=tok.eos_token_id))
    order = learning_order(run, prompts=4, cloze_stories=3, max_new_tokens=16, copy_sequences=5, seed=5,
                           profile=tiny_profile(), progress=False)
    rows = order["rows"]
    assert [r["step"] for r in rows] == [10, 20, 30]
    assert {r["copying"]["repeated_random"]["sequences"] for r in [*rows, order["untrained"]]} == {5}
    assert order["references"]["copying"]["repeated_random"]["sequences"] == 5
    assert [r["tokens"] for r in rows] == [10 * 8 * 128, 20 * 8 * 128, 30 * 8 * 128]  # steps x batch x block
    assert order["prompts"] == 4 and order["cloze_stories"] == 3
    assert order["cloze_items"] == {"story": 12, "absent": 12, "story without story": 12, "absent without story": 12}

    def cloze(row, design="story"):
        return {kind: (v["successes"], v["n"]) for kind, v in row["cloze"][design].items()}

    # The 12 blanks of 3 stories (6, 6 and 8 candidates, none sharing a first token). Checkpoint 10 ties
    # every candidate: nothing right. Checkpoint 20 puts the story's place first: the three where-blanks
    # right, every other blank wrong (its candidates include the place).
    assert cloze(rows[0]) == {"who": (0, 3), "where": (0, 3), "what": (0, 3), "feeling": (0, 3), "all": (0, 12)}
    assert cloze(rows[1]) == {"who": (0, 3), "where": (3, 3), "what": (0, 3), "feeling": (0, 3), "all": (3, 12)}
    assert rows[1]["cloze"]["story"]["where"]["share"] == 1.0 and rows[1]["cloze"]["story"]["all"]["share"] == 0.25
    chance = (1 / 6 + 1 / 6 + 1 / 8) / 3
    assert all(v["chance"] == pytest.approx(chance) for row in rows for v in row["cloze"]["story"].values())
    assert all(v["chance"] == pytest.approx(1 / 6) for row in rows for v in row["cloze"]["absent"].values())
    # the controls: these two checkpoints ignore their context, so removing the story changes nothing
    for row in rows[:2]:
        for design in ("story", "absent"):
            assert cloze(row, design) == cloze(row, f"{design} without story")
    # checkpoint 30 is the trained model, and its row is that model's
    final = load_model(checkpoint_dir(run, 30))
    stories = corpus("validation", 3)
    assert rows[2]["cloze"]["story"] == cloze_accuracy(final, tok, [i for s in stories for i in cloze_items(s)])
    assert rows[2]["cloze"]["absent"] == cloze_accuracy(final, tok, [i for s in stories for i in cloze_items(s, "absent")])
    assert rows[2]["cloze"]["story without story"] == cloze_accuracy(
        final, tok, without_story([i for s in stories for i in cloze_items(s)]))
    assert rows[2]["copying"] == copying_probe(final, tok, stories, 128, sequences=5)
    assert cloze(rows[2]) not in (cloze(rows[0]), cloze(rows[1]))
    # the untrained model: the run's first weights, as training drew them from its seed
    untrained = build_model(tiny_profile().model, seed=tiny_profile().pretrain.seed)
    assert order["untrained"]["copying"] == copying_probe(untrained, tok, stories, 128, sequences=5)
    assert order["references"]["copying"]["repeated_random"]["gain"] > 7  # the copying rule: near ln 2048
    # grammar and consistency: each row from its own checkpoint's sampled continuations
    prompts = story_prompts(4, seed=0, n_sentences=3)
    for row, step in zip(rows, (10, 20, 30)):
        texts = generate(load_model(checkpoint_dir(run, step)), tok, [b for b, _ in prompts],
                         Decoding(16, do_sample=True, seed=5), progress=False)
        good, total = grammatical_sentences(texts)
        assert (row["grammar"]["sentences"]["successes"], row["grammar"]["sentences"]["n"]) == (good, total)
        assert row["consistency"]["strict"]["successes"] == consistent_continuations(
            [(s, t) for (_, s), t in zip(prompts, texts)])
        assert row["consistency"]["strict"]["n"] == 4
    # The lines to read against, from the 4 stories themselves: their own continuations are all
    # grammatical and all keep their characters; another story's continuation keeps none of them;
    # no place, name, thing or feeling of these stories occurs in the training stories often enough
    # for the frequency guess to be right.
    refs = order["references"]
    own, other = "the stories' own continuations", "another story's continuation"
    assert {k: v["share"] for k, v in refs["grammar"][own].items()} == {"whole": 1.0, "sentences": 1.0, "words": 1.0}
    assert {k: v["share"] for k, v in refs["consistency"][own].items()} == {
        "strict": 1.0, "hero_again": 1.0, "first_name_is_hero": 1.0, "first_pronoun_fits": 1.0}
    assert refs["consistency"][other]["strict"]["share"] == 0.0
    assert refs["cloze"]["chance"]["story"] == {k: pytest.approx(chance) for k in ("who", "where", "what", "feeling")}
    assert refs["cloze"]["chance"]["absent without story"] == {k: pytest.approx(1 / 6)
                                                               for k in ("who", "where", "what", "feeling")}
    assert refs["cloze"]["word frequency"] == {"who": 0.0, "where": 0.0, "what": 0.0, "feeling": 0.0}


def test_learning_order_counts_what_each_checkpoint_wrote(pretrained_run, monkeypatch, one_thread):
    """Continuations written by hand stand in for the sampled ones: grammar and consistency counted by hand."""
    import helpers.learning_order as lo

    written = {  # the 4 held-out beginnings (heroes Pete, Olivia, Bella, Matt), continued
        "Pete": " One sunny day, Pete went to the farm with Dad.",    # 1 sentence, grammatical; Pete: consistent
        "Olivia": " Bella jumped up and down.",                        # grammatical; Olivia never named: not
        "Bella": " Bella jumped up and down. Jumped Bella down.",      # 2 sentences, 1 grammatical; consistent
        "Matt": " Matt was so excited. The sun",                       # the cut-off piece is not counted
    }
    calls = []

    def fake_generate(model, tokenizer, prompts, decoding, **options):
        calls.append(decoding)
        return [next(text for hero, text in written.items() if f"named {hero}." in p or p.startswith(hero))
                for p in prompts]

    monkeypatch.setattr(lo, "generate", fake_generate)
    order = learning_order(pretrained_run, prompts=4, cloze_stories=3, max_new_tokens=16, seed=5,
                           profile=tiny_profile(), progress=False)
    assert calls == [Decoding(max_new_tokens=16, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, seed=5)] * 4
    # sampled, from the model's own distribution: three checkpoints and the untrained model
    for row in [*order["rows"], order["untrained"]]:
        grammar, consistency = row["grammar"], row["consistency"]
        assert (grammar["sentences"]["successes"], grammar["sentences"]["n"], grammar["sentences"]["share"]) == (4, 5, 0.8)
        assert (grammar["whole"]["successes"], grammar["whole"]["n"]) == (3, 4)  # Bella's second sentence fails
        assert (grammar["words"]["successes"], grammar["words"]["n"]) == (5, 5)
        assert {k: v["successes"] for k, v in consistency.items()} == {
            "strict": 3, "hero_again": 3, "first_name_is_hero": 3, "first_pronoun_fits": 0}
    steps = [r["step"] for r in order["rows"]]
    every_second = learning_order(pretrained_run, prompts=4, cloze_stories=3, max_new_tokens=16, seed=5, every=2,
                                  profile=tiny_profile(), progress=False)
    assert steps == [10, 20, 30] and [r["step"] for r in every_second["rows"]] == [20, 30]  # the last one always
    assert every_second["rows"][-1]["copying"] == order["rows"][-1]["copying"]


def test_thinned_keeps_every_nth_saved_model_and_the_last():
    stages = [(step, Path(f"checkpoint-{step}")) for step in (50, 100, 150, 200, 250)]
    assert [s for s, _ in thinned(stages, 1)] == [50, 100, 150, 200, 250]
    assert [s for s, _ in thinned(stages, 2)] == [100, 200, 250]
    assert [s for s, _ in thinned(stages, 3)] == [150, 250]
    assert [s for s, _ in thinned(stages, 5)] == [250] and [s for s, _ in thinned(stages, 9)] == [250]
    assert thinned([], 2) == []
    with pytest.raises(ValueError, match="every must be at least 1, got 0"):
        thinned(stages, 0)


def test_answer_curve_from_the_init_model_to_the_end(pretrained_run, finetuned_run, pre, tmp_path, one_thread):
    """The init model and two checkpoints, each answering one known word: the rows counted by hand."""
    init = Path(shutil.copytree(pretrained_run, tmp_path / "pretrain"))
    run = Path(shutil.copytree(finetuned_run, tmp_path / "finetune"))
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "init": str(init)}))
    _, tok = pre

    def says(word):
        return constant_model(len(tok), {first_token(tok, " " + word): 9.0}, eos_token_id=tok.eos_token_id)

    save_model(says("no"), init)  # step 0
    _rig(run, 5, says("Dad"))
    _rig(run, 10, says("proud"))
    profile = tiny_profile()
    curve = answer_curve(run, stories=3, max_new_tokens=1, profile=profile, progress=False)
    assert [r["step"] for r in curve["rows"]] == [0, 5, 10]
    assert curve["questions"] == 28 and curve["stories"] == 3
    metrics = {r["step"]: r["tokens"] for r in read_metrics(run)}
    assert [r["tokens"] for r in curve["rows"]] == [0, metrics[5], metrics[10]]

    def counts(row):
        return {kind: (v["successes"], v["n"], v["right_form"]) for kind, v in row.items()
                if kind not in ("step", "tokens")}

    # The 28 questions about the first 3 held-out stories: who 6 (Pete, Dad, Olivia, Mom, Bella, Jess),
    # where 3, what 4, feeling 6 (proud, scared, brave, nervous, cozy, tired), yes/no 9 (6 "no", 3 "yes").
    # "no" answers 6 yes/no questions right and is the right form only for yes/no (9 of 28).
    # The who-questions by role: the hero 3 (Pete, Olivia, Bella), a parent 2 (Dad, Mom), a friend 1 (Jess).
    assert counts(curve["rows"][0]) == {"feeling": (0, 6, 0.0), "what": (0, 4, 0.0), "where": (0, 3, 0.0),
                                        "who": (0, 6, 0.0), "who/friend": (0, 1, 0.0), "who/hero": (0, 3, 0.0),
                                        "who/parent": (0, 2, 0.0), "yes_no": (6, 9, 1.0), "all": (6, 28, 9 / 28)}
    # "Dad": one who-question right, every who-question answered with a name (6 of 28)
    assert counts(curve["rows"][1]) == {"feeling": (0, 6, 0.0), "what": (0, 4, 0.0), "where": (0, 3, 0.0),
                                        "who": (1, 6, 1.0), "who/friend": (0, 1, 1.0), "who/hero": (0, 3, 1.0),
                                        "who/parent": (1, 2, 1.0), "yes_no": (0, 9, 0.0), "all": (1, 28, 6 / 28)}
    # "proud": one feeling right, every feeling-question answered with a feeling
    assert counts(curve["rows"][2]) == {"feeling": (1, 6, 1.0), "what": (0, 4, 0.0), "where": (0, 3, 0.0),
                                        "who": (0, 6, 0.0), "who/friend": (0, 1, 0.0), "who/hero": (0, 3, 0.0),
                                        "who/parent": (0, 2, 0.0), "yes_no": (0, 9, 0.0), "all": (1, 28, 6 / 28)}
    assert curve["rows"][0]["all"]["share"] == 6 / 28 and curve["rows"][1]["who"]["share"] == 1 / 6
    # Baselines from the training questions: "no" for yes/no (6 of 9 held-out questions), and the tiny
    # profile's most common training answer per kind ("dad": 1 of the 6 who-questions; the others never)
    assert curve["baselines"] == {
        "feeling": {"answer": "glad", "share": 0.0, "n": 6}, "what": {"answer": "big goose", "share": 0.0, "n": 4},
        "where": {"answer": "by the pond", "share": 0.0, "n": 3}, "who": {"answer": "dad", "share": 1 / 6, "n": 6},
        "yes_no": {"answer": "no", "share": 6 / 9, "n": 9}, 
        "who/friend": {"answer": "nick", "share": 0.0, "n": 1}, "who/hero": {"answer": "leo", "share": 0.0, "n": 3},
        "who/parent": {"answer": "dad", "share": 1 / 2, "n": 2}}  # Dad and Mom: "dad" right once
    # the trivial readers: the first name is each hero (3 of 3) and no friend or parent; lookup answers all 9
    assert {k: (v["share"], v["n"]) for k, v in curve["readers"].items()} == {
        "who": (3 / 6, 6), "who/friend": (0.0, 1), "who/hero": (1.0, 3), "who/parent": (0.0, 2), "yes_no": (1.0, 9)}
    coarse = answer_curve(run, stories=3, max_new_tokens=1, every=2, profile=profile, progress=False)
    assert coarse["rows"] == [curve["rows"][0], curve["rows"][2]]  # the start, then every second checkpoint
    assert answer_curve(pretrained_run, profile=tiny_profile(**{"data.instructions": "x.json"}),
                        progress=False) == {"skipped": "answers are scored on the embedded story questions only"}


def test_a_greedy_answer_has_room_for_the_longest_training_answer_of_each_way_of_writing_yes_no():
    tokenizer = profile_tokenizer(get_profile("lesson"))
    longest = {fact: max(len(tokenizer(r["output"])["input_ids"]) for r in story_questions("train", 3000, 0, fact))
               for fact in YES_NO_FACTS}
    assert longest == {"none": 9, "before": 13, "after": 12, "asked": 20, "compared": 22}  # as answer_tokens says
    assert all(longest[fact] < answer_tokens(fact) for fact in YES_NO_FACTS)
