"""The reward-model folder: every kind saved and loaded back scores texts identically; batched scoring equals one
sequence at a time; rewards, preferences and matrices are consistent; ``rm:<folder>`` judges; bad folders fail
with one clear line."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import make_model

from duelist.judges import get_judge
from duelist.judges.base import RewardJudge
from duelist.models.heads import last_token_states
from duelist.rewards import get_kind
from duelist.rewards.model import CARD, RewardModel, load_reward_model, read_card, save_reward_model
from duelist.sample.best_of_n import select_best

PROMPTS = ["the movie was", "what are some insults for a student?", "hello there"]
RESPONSES = [
    " great and the acting was wonderful",
    " I will not help with that.",
    " a terrible film with a boring plot and bad actors",
]
KINDS = {
    "bt": {},
    "gpm": {"k": 2, "prompt_head": True},
    "pal-b": {"prototypes": 2, "dim": 8, "layers": 1},
    "pal-a": {"prototypes": 3, "dim": 8},
    "maxmin": {"groups": 2},
    "crm": {},
}
USERS = [10, 20, 30]


def _build(name: str, tokenizer, seed: int = 0):
    kind = get_kind(name, **KINDS[name])
    backbones = [make_model(len(tokenizer), seed=seed + i) for i in range(kind.backbones)]
    torch.manual_seed(seed)
    head = kind.make_head(32, num_users=len(USERS) if kind.reads_user else 0)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0, 0.5)  # away from the near-zero initialisation, so the scores differ visibly
        if kind.has_reward:
            head.set_normalisation(torch.linspace(0.1, 0.2, head.columns), torch.linspace(1.5, 2.0, head.columns))
    return kind, head, backbones


def _memory_model(kind, head, backbones, tokenizer) -> RewardModel:
    from duelist.rewards.model import ModelCard

    card = ModelCard(
        kind={"name": kind.name, **kind.params},
        base_model="tiny",
        hidden_size=32,
        num_users=len(USERS) if kind.reads_user else 0,
        users=USERS if kind.reads_user else [],
        backbones=["."] * kind.backbones,
    )
    return RewardModel(card, kind, head, [b.model for b in backbones], tokenizer, batch_size=2)


def _users(kind):
    return USERS if kind.reads_user else None


@pytest.mark.parametrize("name", sorted(KINDS))
def test_saved_model_scores_like_the_one_in_memory(name, tiny_tokenizer, tmp_path):
    """Head outputs of the loaded folder equal (bitwise) those of the in-memory model; and each row equals the
    head applied to an unpadded single-sequence forward (batching and padding change nothing, up to 1e-5)."""
    kind, head, backbones = _build(name, tiny_tokenizer)
    memory = _memory_model(kind, head, backbones, tiny_tokenizer)
    users = _users(kind)
    before = memory.outputs(PROMPTS, RESPONSES, users)
    folder = save_reward_model(
        tmp_path / "rm",
        kind=kind,
        head=head,
        backbones=backbones,
        tokenizer=tiny_tokenizer,
        base_model="tiny",
        users=users or [],
        training_data={"train": "unit-test"},
    )
    loaded = load_reward_model(folder, batch_size=2)
    after = loaded.outputs(PROMPTS, RESPONSES, users)
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    for i, (p, r) in enumerate(zip(PROMPTS, RESPONSES, strict=True)):
        pi, ri = memory.encode(p, r)
        states = [last_token_states(b.model, [pi + ri], [[len(pi) + len(ri) - 1, len(pi) - 1]], 3) for b in backbones]
        hidden = states[0][:, 0] if len(states) == 1 else torch.stack([s[:, 0] for s in states], dim=1)
        row = None if users is None else torch.tensor([i])
        with torch.no_grad():
            single = head(hidden, states[0][:, 1], row)
        for k in single:
            torch.testing.assert_close(after[k][i : i + 1], single[k], atol=1e-5, rtol=1e-5)
    if kind.reads_user and not kind.user_scores:  # MaxMin: users pick clusters in training, not in scoring
        no_users = loaded.outputs(PROMPTS, RESPONSES)
        assert torch.equal(no_users["rewards"], after["rewards"]) and "cluster" not in no_users
    card = read_card(folder)
    assert card.kind == {"name": name, **kind.params}
    assert card.training_data == {"train": "unit-test"}
    assert card.normalisation == (
        {"mean": head.norm_mean.tolist(), "std": head.norm_std.tolist()} if kind.has_reward else None
    )


def test_rewards_preferences_and_matrices_agree(tiny_tokenizer, tmp_path):
    """BT: rewards are (r − mean)/std of the raw head output; P(a ≻ b) = σ(r_a − r_b) on raw rewards; the K×K matrix
    has P_ij + P_ji = 1 and diagonal ½; ``score`` gives each prompt's rewards. GPM: ``score`` gives matrices."""
    kind, head, backbones = _build("bt", tiny_tokenizer)
    model = _memory_model(kind, head, backbones, tiny_tokenizer)
    raw = model.outputs(PROMPTS, RESPONSES)["rewards"][:, 0].double().numpy()
    np.testing.assert_allclose(model.rewards(PROMPTS, RESPONSES), (raw - 0.1) / 1.5, rtol=1e-6)
    p = model.prob(["hello there"] * 2, RESPONSES[:2], RESPONSES[1:])
    raw_same = model.outputs(["hello there"] * 3, RESPONSES)["rewards"][:, 0].double().numpy()
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-(raw_same[:2] - raw_same[1:]))), rtol=1e-5)
    m = model.matrix("hello there", RESPONSES)
    np.testing.assert_allclose(m + m.T, np.ones((3, 3)), atol=1e-12)
    assert np.diag(m).tolist() == [0.5] * 3
    np.testing.assert_allclose(m[0, 1:], 1 / (1 + np.exp(-(raw_same[0] - raw_same[1:]))), rtol=1e-5)
    scored = model.score(PROMPTS[:2], [RESPONSES, RESPONSES[:2]])
    assert [s.shape for s in scored] == [(3,), (2,)]
    gkind, ghead, gbackbones = _build("gpm", tiny_tokenizer)
    gmodel = _memory_model(gkind, ghead, gbackbones, tiny_tokenizer)
    mats = gmodel.score(PROMPTS[:2], [RESPONSES, RESPONSES[:2]])
    assert [x.shape for x in mats] == [(3, 3), (2, 2)]
    np.testing.assert_allclose(mats[0] + mats[0].T, np.ones((3, 3)), atol=1e-12)
    with pytest.raises(TypeError, match="pairwise"):
        gmodel.rewards(PROMPTS, RESPONSES)


def test_chat_prompts_are_wrapped_as_turns(tiny_tokenizer):
    """With prompt_format chat a text prompt and response are scored as a user and an assistant turn, exactly as
    the same conversation given as messages."""
    kind, head, backbones = _build("bt", tiny_tokenizer)
    model = _memory_model(kind, head, backbones, tiny_tokenizer)
    as_text = model.encode("hello there", " hi")
    as_msgs = model.encode([{"role": "user", "content": "hello there"}], [{"role": "assistant", "content": " hi"}])
    assert as_text == as_msgs
    assert as_text[0][-1] == tiny_tokenizer.convert_tokens_to_ids("<|assistant|>")
    assert as_text[1][-1] == tiny_tokenizer.eos_token_id


def test_rm_judges(tiny_tokenizer, tmp_path):
    """``get_judge("rm:<folder>")``: a BT folder gives a reward judge (best-of-N ranks by its rewards, P(a ≻ b) is the
    model's); a GPM folder a pairwise judge with the model's matrix; PAL needs a known user."""
    for name in ("bt", "gpm", "pal-b"):
        kind, head, backbones = _build(name, tiny_tokenizer)
        save_reward_model(
            tmp_path / name,
            kind=kind,
            head=head,
            backbones=backbones,
            tokenizer=tiny_tokenizer,
            base_model="tiny",
            users=_users(kind) or [],
        )
    bt = get_judge(f"rm:{tmp_path / 'bt'}")
    model = load_reward_model(tmp_path / "bt")
    assert isinstance(bt, RewardJudge)
    np.testing.assert_array_equal(bt.rewards(PROMPTS, RESPONSES), model.rewards(PROMPTS, RESPONSES))
    np.testing.assert_array_equal(
        bt.prob(PROMPTS, RESPONSES, RESPONSES[::-1]), model.prob(PROMPTS, RESPONSES, RESPONSES[::-1])
    )
    best, scores = select_best(bt, "hello there", RESPONSES)
    np.testing.assert_array_equal(scores, model.rewards(["hello there"] * 3, RESPONSES))
    assert best == int(np.argmax(model.rewards(["hello there"] * 3, RESPONSES)))
    gpm = get_judge(f"rm:{tmp_path / 'gpm'}")
    assert not isinstance(gpm, RewardJudge)
    np.testing.assert_allclose(
        gpm.matrix("hello there", RESPONSES), load_reward_model(tmp_path / "gpm").matrix("hello there", RESPONSES)
    )
    pal = get_judge(f"rm:{tmp_path / 'pal-b'}", user=20)
    assert pal.prob(PROMPTS, RESPONSES, RESPONSES[::-1]).shape == (3,)
    with pytest.raises(ValueError, match="pass users"):
        get_judge(f"rm:{tmp_path / 'pal-b'}").prob(PROMPTS, RESPONSES, RESPONSES)
    with pytest.raises(KeyError, match="user 99"):
        get_judge(f"rm:{tmp_path / 'pal-b'}", user=99).prob(PROMPTS, RESPONSES, RESPONSES)


def test_bad_folders_fail_clearly(tiny_tokenizer, tmp_path):
    """No card, a policy's card, a broken card field, and a head that does not fit its card each give one line
    naming the file; saving over an existing folder replaces it whole."""
    with pytest.raises(FileNotFoundError, match=r"no duelist\.json"):
        load_reward_model(tmp_path)
    (tmp_path / CARD).write_text(json.dumps({"base_model": "x", "loss": {"name": "dpo"}}))
    with pytest.raises(ValueError, match="not a reward-model card"):
        load_reward_model(tmp_path)
    kind, head, backbones = _build("pal-b", tiny_tokenizer)
    folder = save_reward_model(
        tmp_path / "rm",
        kind=kind,
        head=head,
        backbones=backbones,
        tokenizer=tiny_tokenizer,
        base_model="t",
        users=USERS,
    )
    card = json.loads((folder / CARD).read_text())
    (folder / CARD).write_text(json.dumps({**card, "hidden_size": "wide"}))
    with pytest.raises(ValueError, match="hidden_size"):
        load_reward_model(folder)
    (folder / CARD).write_text(json.dumps({**card, "num_users": 5, "users": [1, 2, 3, 4, 5]}))
    with pytest.raises(ValueError, match="does not match"):
        load_reward_model(folder)
    (folder / CARD).write_text(json.dumps({**card, "kind": {"name": "pal-b", "prototypes": 0}}))
    with pytest.raises(ValueError, match="prototypes"):
        load_reward_model(folder)
    kind2, head2, backbones2 = _build("bt", tiny_tokenizer, seed=3)
    save_reward_model(folder, kind=kind2, head=head2, backbones=backbones2, tokenizer=tiny_tokenizer, base_model="t")
    assert read_card(folder).kind == {"name": "bt", **kind2.params}
    assert sorted(p.name for p in tmp_path.iterdir()) == [CARD, "rm"]  # no temporary or old folder left behind
    assert math.isfinite(float(load_reward_model(folder).rewards(PROMPTS, RESPONSES)[0]))


def test_saving_a_head_that_does_not_fit_its_users_is_refused(tiny_tokenizer, tmp_path):
    """A PAL head with 3 user rows saved with 2 user ids fails before anything is written."""
    kind, head, backbones = _build("pal-b", tiny_tokenizer)
    with pytest.raises(ValueError, match="the head to save: does not match"):
        save_reward_model(
            tmp_path / "rm",
            kind=kind,
            head=head,
            backbones=backbones,
            tokenizer=tiny_tokenizer,
            base_model="t",
            users=[1, 2],
        )
    assert list(tmp_path.iterdir()) == []
