"""The on-task check: naive Bayes against a hand count, its share with an interval, the shipped classifier."""

import json
import math

import numpy as np
import pytest

from duelist.data import tasks
from duelist.eval.on_task import OnTaskClassifier, on_task_share, words
from duelist.eval.stats import mean_interval, wilson_interval

ON = ["Good film!", "the film's plot"]
OFF = ["help you", "you good"]


def test_words_keep_inner_apostrophes_only():
    assert words("''The film's plot'' -- DON'T") == ["the", "film's", "plot", "don't"]


def test_naive_bayes_matches_a_hand_count():
    """min_count 1: V = {film, film's, good, help, plot, the, you}, |V| = 7; on-task counts film 1, film's 1,
    good 1, plot 1, the 1 (N = 5 + 7 = 12), other counts good 1, help 1, you 2 (N = 4 + 7 = 11).
    weight(w) = log((n_on(w) + 1) / 12) − log((n_off(w) + 1) / 11)."""
    c = OnTaskClassifier.fit(ON, OFF, min_count=1)
    assert sorted(c.weights) == ["film", "film's", "good", "help", "plot", "the", "you"]
    assert c.weights["film"] == pytest.approx(math.log(2 / 12) - math.log(1 / 11))
    assert c.weights["good"] == pytest.approx(math.log(2 / 12) - math.log(2 / 11))
    assert c.weights["you"] == pytest.approx(math.log(1 / 12) - math.log(3 / 11))
    # "good film, you" = good + film + you; "unknown words" are ignored: 0, which is not > 0
    want = math.log(2 / 12 * 2 / 12 * 1 / 12) - math.log(2 / 11 * 1 / 11 * 3 / 11)
    assert c.log_odds(["good film, you", "unknown words"]) == pytest.approx([want, 0.0])
    assert want == pytest.approx(math.log(5324 / 10368)) == pytest.approx(-0.6665, abs=1e-4)
    assert list(c.on_task(["good film, you", "unknown words", "the plot"])) == [False, False, True]


def test_min_count_and_bias():
    """min_count 2 keeps good (1 + 1) and you (0 + 2): N_on = 1 + 2, N_off = 3 + 2."""
    c = OnTaskClassifier.fit(ON, OFF, min_count=2, bias=0.25)
    assert sorted(c.weights) == ["good", "you"]
    assert c.weights["you"] == pytest.approx(math.log(1 / 3) - math.log(3 / 5))
    assert c.log_odds(["film"]) == pytest.approx([0.25])


def test_save_and_load_round_trip(tmp_path):
    c = OnTaskClassifier.fit(ON, OFF, min_count=1)
    c.save(tmp_path / "c.json", {"source": "test"})
    d = OnTaskClassifier.load(tmp_path / "c.json")
    assert json.loads((tmp_path / "c.json").read_text())["about"] == {"source": "test"}
    assert d.weights == {w: round(v, 4) for w, v in c.weights.items()} and d.bias == 0.0


def test_share_averages_within_prompts():
    """Two samples per prompt: prompts' shares (0.5, 1, 0) and a t-interval; one sample each: Wilson."""
    est = on_task_share(np.array([True, False, True, True, False, False]), 2)
    assert est.mean == pytest.approx(0.5) and est.lo == max(0.0, mean_interval(np.array([0.5, 1, 0])).lo)
    one = on_task_share(np.array([True, False, True, True]), 1)
    assert (one.lo, one.hi) == (wilson_interval(3, 4).lo, wilson_interval(3, 4).hi)


def test_the_shipped_classifier():
    """positive-review ships one; held out (10%) it is right on 95.5% of reviews and 97.3% of other text,
    assistant talk is off task and a review sentence on task."""
    path = tasks.on_task_file("positive-review:test")
    assert path is not None and tasks.on_task_file("hh-harmless") is None and tasks.on_task_file("x.jsonl") is None
    about = json.loads(path.read_text())["about"]
    assert about["held_out_accuracy"] == {"on_task": 0.9555, "other": 0.9729, "share_held_out": 0.1}
    c = OnTaskClassifier.load(path)
    texts = [
        "I'd love to stay within the scope of my services. I'm here to help with any topic",
        "the acting was superb and the plot kept me gripped until the final scene",
    ]
    assert list(c.on_task(texts)) == [False, True]
