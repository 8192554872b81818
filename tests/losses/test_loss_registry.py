"""Registry-driven checks of every loss (and its variants), the public API, and weighted sums."""

from __future__ import annotations

import math

import pytest
import torch
from loss_fixtures import DIFFERENTIABLE, SAMPLE_VARIANTS, VARIANTS, leaves, stats_from, variant_id

from duelist.config import ConfigError, load_config
from duelist.losses import (
    LossConfigError,
    PreferenceStats,
    WeightedSum,
    build_loss,
    get_loss,
    list_losses,
    registry,
)
from duelist.losses.docs import render_table


def test_variants_cover_the_registry():
    assert {n for n, _ in VARIANTS + SAMPLE_VARIANTS} == set(registry())
    assert {n for n, _ in SAMPLE_VARIANTS} == {n for n, s in registry().items() if s.inputs == "samples"}


@pytest.fixture(scope="module")
def table() -> str:
    return render_table()


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_finite_values_gradients_shapes_and_batch_splitting(variant, table):
    """Per-example losses [B] and metrics [B], finite, with finite non-zero gradients; the losses of a
    batch are the concatenation of the losses of its halves (so splitting cannot change the mean)."""
    name, params = variant
    loss = get_loss(name, **params)
    x = leaves(b=6, seed=1)
    for k in DIFFERENTIABLE:
        x[k] = x[k].clone().requires_grad_()
    s = stats_from(x)
    out = loss(s)
    assert out.losses.shape == (6,) and torch.isfinite(out.losses).all()
    for k, v in out.metrics.items():
        assert v.shape == (6,) and torch.isfinite(v).all(), k
        assert not v.requires_grad, f"metric {k} must be detached"
    out.losses.mean().backward()
    grads = [x[k].grad for k in DIFFERENTIABLE if x[k].grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    halves = torch.cat([loss(s.select(slice(0, 2))).losses, loss(s.select(slice(2, 6))).losses]).detach()
    full = out.losses.detach()
    assert torch.allclose(halves, full, atol=1e-13, rtol=0)
    assert float(halves.mean()) == pytest.approx(float(full.mean()), abs=1e-13)
    assert f"| `{name}` |" in table


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_float64_gradcheck(variant):
    """Analytic gradients w.r.t. per-token policy log-probs and per-token KL equal central finite differences
    (except where a loss stops the gradient on purpose: TDPO2's chosen-side KL, tested separately)."""
    name, params = variant
    loss = get_loss(name, **params)
    x = leaves(b=3, t=4, seed=2)
    stopped = {"tdpo2": ("chosen_token_kl",)}.get(name, ())
    keys = [k for k in DIFFERENTIABLE if k not in stopped and (loss.needs_token_kl or not k.endswith("token_kl"))]
    inputs = tuple(x[k].clone().requires_grad_() for k in keys)

    def f(*args):
        return loss(stats_from({**x, **dict(zip(keys, args, strict=True))})).losses

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_reference_free_losses_accept_no_reference():
    pc, pr = torch.tensor([-3.0, -4.0]), torch.tensor([-5.0, -4.5])
    n = torch.tensor([3.0, 4.0])
    for name in ("simpo", "sft"):
        out = get_loss(name)(policy_chosen_logps=pc, policy_rejected_logps=pr, ref_chosen_logps=None,
                             ref_rejected_logps=None, chosen_lengths=n, rejected_lengths=n)  # fmt: skip
        assert torch.isfinite(out.losses).all()
    with pytest.raises(ValueError, match=r"loss 'dpo' needs inputs that were not given: ref_chosen_logps"):
        get_loss("dpo")(policy_chosen_logps=pc, policy_rejected_logps=pr)
    with pytest.raises(ValueError, match=r"p_win, p_lose"):
        get_loss("sppo")(policy_chosen_logps=pc, policy_rejected_logps=pr, ref_chosen_logps=pc, ref_rejected_logps=pr)
    with pytest.raises(ValueError, match=r"chosen_token_kl"):
        get_loss("tdpo2")(policy_chosen_logps=pc, policy_rejected_logps=pr, ref_chosen_logps=pc, ref_rejected_logps=pr)


def test_keyword_api_puts_unknown_tensors_in_extra():
    t = torch.tensor([-1.0])
    out = get_loss("sppo", beta=0.1)(
        policy_chosen_logps=t, policy_rejected_logps=t, ref_chosen_logps=t, ref_rejected_logps=t,
        p_win=torch.tensor([0.6]), p_lose=torch.tensor([0.4]),
    )  # fmt: skip
    assert out.losses.tolist() == pytest.approx([0.5 * (1.0**2 + 1.0**2)])


def test_unknown_names_and_bad_parameters_list_what_is_valid():
    with pytest.raises(LossConfigError) as e:
        get_loss("dop")
    assert "unknown loss 'dop'" in str(e.value)
    assert all(n in str(e.value) for n in registry())
    with pytest.raises(LossConfigError, match=r"loss\.bta: unknown parameter.*Valid parameters: beta=0\.1 \(> 0\)"):
        get_loss("dpo", bta=0.1)
    with pytest.raises(LossConfigError, match=r"loss\.beta: Input should be greater than 0 \(got -1\)"):
        get_loss("dpo", beta=-1)
    with pytest.raises(LossConfigError, match=r"loss\.epsilon: Input should be less than 0\.5"):
        get_loss("rdpo", epsilon=0.5)
    with pytest.raises(LossConfigError, match=r"loss\.divergence: Input should be 'reverse_kl', 'forward_kl'"):
        get_loss("fdpo", divergence="kl")


def test_list_losses_reports_paper_params_and_needs():
    by = {d["name"]: d for d in list_losses()}
    assert set(by) == set(registry())
    assert by["dpo"]["params"] == {"beta": 0.1, "labels": "hard"} and by["dpo"]["needs_reference"]
    assert by["simpo"]["params"] == {"beta": 2.0, "gamma": 0.5}
    assert not by["simpo"]["needs_reference"] and by["simpo"]["length_normalized"]
    assert by["tdpo2"]["needs_token_kl"] and by["tdpo2"]["params"] == {"beta": 0.1, "alpha": 0.5}
    assert by["tgdpo"]["token_level"] and by["tgdpo"]["models"] == {"reward_model": "rm"}
    assert by["sppo"]["extra_fields"] == ["p_win", "p_lose"] and "extra: p_win" in by["sppo"]["needs"]
    assert by["rpo"]["params"] == {"beta": 0.01, "eta": 0.005, "sft": "sum"}
    assert all(d["paper"] and d["formula"] for d in by.values())


def test_data_fields_and_aux_models_follow_parameters():
    assert get_loss("sppo").data_fields == {"p_win": (0.0, 1.0), "p_lose": (0.0, 1.0)}
    assert get_loss("sppo", win_rates="from_scores").data_fields == {
        "score_chosen": (None, None),
        "score_rejected": (None, None),
    }
    tg = get_loss("tgdpo", reward_model="runs/dpo/final")
    assert tg.data_fields == {} and [(m.prefix, m.key, m.source) for m in tg.aux_models] == [
        ("rm", "loss.reward_model", "runs/dpo/final")
    ]


def test_weighted_sum_is_the_weighted_sum_and_needs_the_union():
    """L = 1·L_dpo + 0.005·L_sft per example; the sum needs what any term needs."""
    loss = build_loss({"name": "sum", "terms": [{"name": "dpo", "beta": 0.2}, {"name": "sft", "weight": 0.005}]})
    assert isinstance(loss, WeightedSum) and loss.name == "sum(1·dpo + 0.005·sft)"
    s = stats_from(leaves(b=5, seed=5))
    out = loss(s)
    want = get_loss("dpo", beta=0.2)(s).losses + 0.005 * get_loss("sft")(s).losses
    assert torch.allclose(out.losses, want, atol=1e-15, rtol=0)
    assert torch.equal(out.metrics["loss/sft"], get_loss("sft")(s).losses)
    assert "rewards/margin" in out.metrics and "sft/nll" in out.metrics
    assert loss.needs_reference and loss.length_normalized and not loss.needs_token_kl
    mixed = build_loss({"name": "sum", "terms": [{"name": "simpo"}, {"name": "tdpo2"}, {"name": "sppo"}]})
    assert mixed.needs_reference and mixed.needs_token_kl and mixed.data_fields.keys() == {"p_win", "p_lose"}
    twice = build_loss({"name": "sum", "terms": [{"name": "dpo"}, {"name": "dpo", "beta": 0.5, "weight": 2}]})
    assert twice.labels == ["dpo[0]", "dpo[1]"]
    assert "dpo[1]/rewards/margin" in twice(s).metrics
    halves = torch.cat([loss(s.select(slice(0, 2))).losses, loss(s.select(slice(2, 5))).losses])
    assert torch.allclose(halves, out.losses, atol=1e-15, rtol=0)  # batch splitting cannot change the mean


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"name": "sum", "terms": [{"name": "dpo"}, {"name": "sft", "weight": -1}]}, "loss.terms[1].weight: must be"),
        ({"name": "sum", "terms": [{"name": "dpo"}, {"name": "sft", "weight": "x"}]}, "loss.terms[1].weight"),
        ({"name": "sum", "terms": [{"name": "dpo", "beta": 0}]}, "loss.terms[0].beta: Input should be greater"),
        ({"name": "sum", "terms": [{"name": "dpo", "gamma": 1}]}, "loss.terms[0].gamma: unknown parameter"),
        ({"name": "sum", "terms": [{"name": "nope"}]}, "loss.terms[0].name: unknown loss 'nope'"),
        ({"name": "sum", "terms": [{"name": "sum", "terms": []}]}, "loss.terms[0].name: sums do not nest"),
        ({"name": "sum", "terms": []}, "loss.terms: expected a non-empty list"),
        ({"name": "sum", "terms": [{"weight": 1}]}, "loss.terms[0]: expected a mapping with a name"),
        ({"name": "sum", "terms": [{"name": "dpo"}], "beta": 0.1}, "loss.beta: unknown key for a 'sum'"),
        ({"name": "dpo", "terms": [{"name": "sft"}]}, "loss.terms: a weighted sum is written"),
        ({"beta": 0.1}, "loss.name is required"),
    ],
)
def test_build_loss_errors_name_the_key(config, named):
    with pytest.raises(LossConfigError) as e:
        build_loss(config)
    assert named in str(e.value)


def test_config_selects_any_loss_and_sums_with_keys_named():
    cfg = load_config(None, ["loss.name=simpo", "loss.gamma=0.3"])
    assert cfg.loss == {"name": "simpo", "gamma": 0.3}
    cfg = load_config(None, ["loss.name=sum", "loss.terms=[{name: dpo, beta: 0.1}, {name: sft, weight: 0.005}]"])
    assert isinstance(build_loss(cfg.loss), WeightedSum)
    with pytest.raises(ConfigError, match=r"loss\.terms\[1\]\.weight: must be a finite number"):
        load_config(None, ["loss.name=sum", "loss.terms=[{name: dpo}, {name: sft, weight: -2}]"])
    with pytest.raises(ConfigError, match=r"loss\.terms\[0\]\.alpha: Input should be greater than 0"):
        load_config(None, ["loss.name=sum", "loss.terms=[{name: fdpo, alpha: 0}]"])


def test_losses_follow_input_dtype():
    x32 = leaves(b=3, seed=6, dtype=torch.float32)
    for name, params in VARIANTS:
        out = get_loss(name, **params)(stats_from(x32))
        assert out.losses.dtype == torch.float32, name
        assert math.isfinite(float(out.losses.sum()))


def test_stats_select_and_shape_check():
    s = stats_from(leaves(b=4))
    sub = s.select(torch.tensor([0, 2]))
    assert sub.batch_size == 2 and sub.extra["p_win"].shape == (2,)
    s.extra["p_win"] = s.extra["p_win"][:3]
    with pytest.raises(ValueError, match=r"extra\['p_win'\] has shape \(3,\); expected batch size 4"):
        get_loss("sppo")(s)
    with pytest.raises(TypeError, match="not both"):
        get_loss("dpo")(s, policy_chosen_logps=s.policy_chosen_logps)
    assert isinstance(PreferenceStats.from_kwargs(policy_chosen_logps=1, policy_rejected_logps=2, foo=3).extra, dict)
