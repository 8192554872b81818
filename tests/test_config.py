"""Config: YAML + dotted overrides, typed, unknown keys and wrong types named in the error."""

import pytest
import yaml

from duelist.config import ConfigError, load_config
from duelist.config_files import BUNDLED, resolve_config


def test_overrides_apply_and_parse_types(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("loss: {name: dpo, beta: 0.1}\ntrain: {steps: 5}\n")
    cfg = load_config(p, ["loss.beta=0.25", "optim.lr=1e-5", "train.output_dir=x", "model.lora.r=4"])
    assert cfg.loss == {"name": "dpo", "beta": 0.25}
    assert cfg.optim.lr == 1e-5
    assert cfg.train.steps == 5
    assert cfg.model.lora is not None and cfg.model.lora.r == 4


@pytest.mark.parametrize(
    ("override", "named"),
    [
        (["train.stepz=3"], "train.stepz: unknown key"),
        (["bogus.x=1"], "bogus: unknown key"),
        (["train.batch_size=eight"], "train.batch_size"),
        (["loss.beta=abc"], "loss.beta"),
        (["loss.gamma=1"], "loss.gamma: unknown parameter"),
        (["loss.name=nope"], "unknown loss 'nope'; valid losses: "),
        (["optim.schedule=wavy"], "optim.schedule"),
    ],
)
def test_bad_keys_and_types_are_named(override, named):
    with pytest.raises(ConfigError) as e:
        load_config(None, override)
    assert named in str(e.value)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"valid keys here: .*batch_size"):
        load_config(None, ["train.batchsize=8"])


def test_changing_loss_name_drops_old_params():
    # beta belongs to dpo; switching the name must not carry dpo's params into another loss silently
    cfg = load_config(None, ["loss.name=dpo"])
    assert cfg.loss["name"] == "dpo"


@pytest.mark.parametrize("path", sorted(BUNDLED.glob("*.yaml")), ids=lambda p: p.stem)
def test_bundled_configs_validate(path):
    """A training config validates as one; a tournament file validates with every entrant's config, also
    under --quick."""
    from duelist.eval.tournament.config import load_tournament_file
    from duelist.eval.tournament.entrants import entrant_configs

    if "tournament" in yaml.safe_load(path.read_text()):
        for quick in (False, True):
            tf = load_tournament_file(resolve_config(path.stem), quick=quick)
            assert len(entrant_configs(tf, quick=quick)) == len(tf.entrants)
    else:
        assert load_config(resolve_config(path.stem)) is not None


@pytest.mark.parametrize(
    ("overrides", "updates", "compiled"),
    [
        ([], 249, False),  # too short to repay the compile
        ([], 250, True),
        (["train.compile=false"], 10_000, False),  # an explicit setting is kept
        (["train.compile=true"], 1, True),
        (["online.prompts=positive-review:prompts"], 10_000, False),  # online: never by default
    ],
)
def test_compile_default_needs_a_run_long_enough(overrides, updates, compiled):
    from duelist.train.learner import COMPILE_PAYBACK_UPDATES, resolve_compile

    assert COMPILE_PAYBACK_UPDATES == 250
    assert resolve_compile(load_config(None, overrides), updates) is compiled
