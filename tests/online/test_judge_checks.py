"""Judges in the loop: one batched call per round, and a bad answer stops the round naming judge and prompt."""

from __future__ import annotations

import numpy as np
import pytest

from duelist.judges import LexiconJudge, get_judge
from duelist.judges.base import Judge, JudgeError, judge_checked


class Counting(Judge):
    name = "counting"

    def __init__(self, answer=None):
        self.calls = 0
        self.answer = answer

    def prob(self, prompts, a, b):
        self.calls += 1
        p = np.array([0.5 + 0.1 * (len(x) > len(y)) - 0.1 * (len(x) < len(y)) for x, y in zip(a, b, strict=True)])
        return p if self.answer is None else self.answer(prompts, a, b, p)


PROMPTS = ["first prompt", "second prompt"]
GROUPS = [["a", "bb", "ccc"], ["dddd", "e"]]


def test_one_batched_call_and_antisymmetric_matrices():
    j = Counting()
    mats, rewards = judge_checked(j, PROMPTS, GROUPS)
    assert j.calls == 1 and rewards is None
    assert mats[0].tolist() == [[0.5, 0.4, 0.4], [0.6, 0.5, 0.4], [0.6, 0.6, 0.5]]
    assert mats[1].tolist() == [[0.5, 0.6], [0.4, 0.5]]


def test_a_reward_judge_scores_each_response_once():
    mats, rewards = judge_checked(LexiconJudge(), ["p"], [["great fun", "awful", "great fun"]])
    assert rewards[0][0] > 0 > rewards[0][1] and rewards[0][0] == rewards[0][2]
    assert mats[0].tolist() == [[0.5, 1.0, 0.5], [0.0, 0.5, 0.0], [0.5, 1.0, 0.5]]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (lambda pr, a, b, p: np.where(np.array(pr) == "second prompt", np.nan, p), "non-finite .* on prompt 1"),
        (lambda pr, a, b, p: p * 3, r"outside \[0, 1\] .* on prompt 0"),
        (lambda pr, a, b, p: -np.ones_like(p), r"outside \[0, 1\]"),  # TRL's old judge answered −1 on errors
    ],
)
def test_bad_answers_stop_the_round(answer, message):
    with pytest.raises(JudgeError, match=message) as e:
        judge_checked(Counting(answer), PROMPTS, GROUPS)
    assert "judge 'counting'" in str(e.value)


def test_a_failing_judge_is_retried_per_prompt_to_name_the_prompt():
    def boom(prompts, a, b, p):
        if "second prompt" in prompts:
            raise RuntimeError("rate limit")
        return p

    with pytest.raises(JudgeError, match=r"judge 'counting' failed on prompt 1 \('second prompt'\): rate limit"):
        judge_checked(Counting(boom), PROMPTS, GROUPS)


def test_a_matrix_that_is_not_antisymmetric_is_refused():
    class Lopsided(Judge):
        name = "lopsided"

        def judge_groups(self, prompts, groups):
            return [np.full((len(g), len(g)), 0.7) for g in groups], None

        def prob(self, prompts, a, b):
            raise NotImplementedError

    with pytest.raises(JudgeError, match=r"P\(a ≻ b\) \+ P\(b ≻ a\) = 1.4, not 1 on prompt 0"):
        judge_checked(Lopsided(), PROMPTS, GROUPS)
    assert get_judge("intransitive").matrix("p", ["a", "b"]).shape == (2, 2)
