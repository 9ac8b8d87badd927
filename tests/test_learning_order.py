"""The learning-order sweep over a run's checkpoints."""

from __future__ import annotations

from helpers.learning_order import learning_order
from helpers.runs import read_metrics


def test_learning_order_rows(pretrained_run, finetuned_run):
    rows = learning_order(pretrained_run, finetune_run=finetuned_run, prompts=3, questions=3,
                             max_new_tokens=16, progress=False)
    assert [(r["stage"], r["step"]) for r in rows] == [("pretrain", 10), ("pretrain", 20), ("pretrain", 30),
                                                       ("finetune", 0), ("finetune", 5), ("finetune", 10)]
    tokens = [r["tokens"] for r in rows]
    assert tokens[:3] == [10 * 8 * 128, 20 * 8 * 128, 30 * 8 * 128]
    assert tokens[3] == tokens[2]  # finetuning step 0 is the final pretrained model
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens) - 1
    fine = read_metrics(finetuned_run)
    assert tokens[-1] == tokens[2] + fine[-1]["tokens"]
    for row in rows:
        assert 0.0 <= row["grammar"] <= 1.0 and 0.0 <= row["consistency"] <= 1.0
    # the same weights with the same seed write the same continuations
    assert (rows[3]["grammar"], rows[3]["consistency"]) == (rows[2]["grammar"], rows[2]["consistency"])
    assert all("answers" not in r for r in rows[:3])
    assert all(0.0 <= r["answers"] <= 1.0 and 0.0 <= r["answer_template"] <= 1.0 for r in rows[3:])
    assert rows[3]["answer_template"] == 0.0  # the pretrained model goes on telling a story

