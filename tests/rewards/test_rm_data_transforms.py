"""Data transforms: label flips at an exact, seeded rate with the truth recorded; reward augmentation as the
deterministic doubling of §7.2; both driven from the data config on a built-in task."""

from __future__ import annotations

import pytest

from duelist.config import ConfigError, load_config
from duelist.data.formats import PreferenceExample, validate
from duelist.data.sources import read_records
from duelist.data.transforms import FLIPPED_FIELD, apply, flip_labels, goal_text, required_fields, reward_augment


def _examples(n: int = 10) -> list[PreferenceExample]:
    return [
        PreferenceExample(
            [{"role": "user", "content": f"q{i}"}],
            [{"role": "assistant", "content": f"good {i}"}],
            [{"role": "assistant", "content": f"bad {i}"}],
            number=i + 1,
            extra={"score_chosen": 0.5 + i / 10, "score_rejected": -0.25, "margin": 1.0},
        )
        for i in range(n)
    ]


def test_flip_labels_swaps_an_exact_seeded_subset():
    """rate 0.3 of 10 → exactly 3 pairs swapped, each recording flipped = 1 (the others 0); the same seed gives the
    same subset, other numbers are untouched."""
    ex = _examples()
    out = flip_labels(ex, 0.3, seed=4)
    flipped = [i for i, e in enumerate(out) if e.extra[FLIPPED_FIELD] == 1.0]
    assert len(flipped) == 3
    for i, (a, b) in enumerate(zip(ex, out, strict=True)):
        swapped = i in flipped
        assert (b.chosen, b.rejected) == ((a.rejected, a.chosen) if swapped else (a.chosen, a.rejected))
        assert b.extra["margin"] == 1.0 and b.prompt == a.prompt
    assert [e.extra[FLIPPED_FIELD] for e in flip_labels(ex, 0.3, seed=4)] == [e.extra[FLIPPED_FIELD] for e in out]
    assert flip_labels(ex, 0.0)[0].extra[FLIPPED_FIELD] == 0.0


def test_reward_augment_doubles_with_mirrored_goals():
    """N = 3 rated pairs → 2N rows: row i is (g(r_w) ⊕ x, y_w ≻ y_l), row N + i is (g(r_l) ⊕ x, y_l ≻ y_w), the goal a
    system message naming the data's rating scale [−0.25, 0.7]; the rating fields are consumed."""
    ex = _examples(3)
    out, dropped = reward_augment(ex)
    assert dropped == 0 and len(out) == 6
    for i, e in enumerate(ex):
        first, mirror = out[i], out[3 + i]
        assert first.prompt == [
            {"role": "system", "content": goal_text(e.extra["score_chosen"], -0.25, 0.7)},
            *e.prompt,
        ]
        assert (first.chosen, first.rejected) == (e.chosen, e.rejected)
        assert mirror.prompt == [{"role": "system", "content": goal_text(-0.25, -0.25, 0.7)}, *e.prompt]
        assert (mirror.chosen, mirror.rejected) == (e.rejected, e.chosen)
        assert mirror.extra == {"margin": 1.0}
    assert goal_text(0.5, -0.25, 0.7).endswith("(on a scale from -0.25 to 0.7, higher is better).\nTarget score: 0.5.")


def test_reward_augment_placements_and_consistency():
    """A text prompt gets the goal as its first paragraph; ``user`` placement prefixes the first user turn; an
    existing system message is extended; a pair rated against its label is dropped."""
    text = PreferenceExample("Q:", " a", " b", extra={"score_chosen": 2.0, "score_rejected": 1.0})
    t = reward_augment([text], low=1, high=10)[0][0]
    assert t.prompt == goal_text(2.0, 1, 10) + "\n\nQ:"
    sys = PreferenceExample(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
        [{"role": "assistant", "content": "a"}],
        [{"role": "assistant", "content": "b"}],
        extra={"score_chosen": 2.0, "score_rejected": 1.0},
    )
    g = goal_text(2.0, 1.0, 2.0)
    assert reward_augment([sys])[0][0].prompt[0] == {"role": "system", "content": f"{g}\n\nS"}
    assert reward_augment([sys], placement="user")[0][0].prompt[1] == {"role": "user", "content": f"{g}\n\nU"}
    bad = PreferenceExample("Q:", " a", " b", extra={"score_chosen": 0.0, "score_rejected": 1.0})
    out, dropped = reward_augment([text, bad])
    assert dropped == 1 and len(out) == 2
    with pytest.raises(KeyError, match="score_chosen"):
        reward_augment([PreferenceExample("Q:", " a", " b")])


def test_transforms_from_the_data_config():
    """positive-review's 512 rated pairs with reward_augment and flip_rate 0.25: 1,024 pairs, 256 flipped."""
    cfg = load_config(None, ["data.train=positive-review", "data.reward_augment.low=-1", "data.flip_rate=0.25"])
    assert required_fields(cfg.data) == {"score_chosen": (None, None), "score_rejected": (None, None)}
    examples = validate(read_records("positive-review"), fields=required_fields(cfg.data)).examples
    out, note = apply(examples, cfg.data)
    assert len(examples) == 512 and len(out) == 1024
    assert sum(e.extra[FLIPPED_FIELD] for e in out) == 256
    assert note == (
        "reward-augmented 512 → 1024 pairs (0 with contradicting ratings dropped); "
        "flipped 256 of 1024 labels (flip_rate=0.25, seed 0)"
    )
    assert apply(examples, load_config().data) == (list(examples), "")
    with pytest.raises(ConfigError, match="flip_rate"):
        load_config(None, ["data.flip_rate=0.5"])
