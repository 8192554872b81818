"""Resume safety: which config changes a resume refuses, the list of safe fields, and the record of an
accepted change."""

from __future__ import annotations

import json

import pytest
import yaml
from pydantic import BaseModel

from duelist.config import Config, dump_config, load_config
from duelist.errors import USER_ERRORS
from duelist.train.resume_guard import (
    ALLOW_FLAG,
    CHANGES_FILE,
    SAFE_ON_RESUME,
    Change,
    ResumeConfigError,
    check_resume,
    config_changes,
    math_changes,
    record_changes,
)

BASE = ["train.steps=10", "loss.beta=0.1"]


def run_with(tmp_path, *overrides: str):
    (tmp_path / "config.yaml").write_text(dump_config(load_config(None, [*BASE, *overrides])))
    return tmp_path


def test_safe_list_names_only_real_fields():
    """Every entry is a field (or a whole section) of Config, and has a reason."""
    for key, why in SAFE_ON_RESUME.items():
        node: type[BaseModel] = Config
        *parents, last = key.split(".")
        for part in parents:
            node = node.model_fields[part].annotation
        assert last in node.model_fields, key
        assert len(why) > 10, key


def test_changed_beta_is_refused_and_listed(tmp_path):
    run = run_with(tmp_path)
    new = load_config(None, [*BASE, "loss.beta=0.2"])
    assert math_changes(run, new) == [Change("loss.beta", 0.1, 0.2)]
    with pytest.raises(ResumeConfigError) as e:
        check_resume(run, new)
    msg = str(e.value)
    assert "loss.beta 0.1 → 0.2" in msg and ALLOW_FLAG in msg and "\n" not in msg
    assert isinstance(e.value, USER_ERRORS)


def test_logging_and_cadence_changes_are_allowed(tmp_path):
    run = run_with(tmp_path)
    new = load_config(None, [*BASE, "train.log_every=5", "train.save_every=3", "train.threads=1",
                             "train.progress=false", "eval.num_prompts=8", "train.grad_accum=2"])
    assert len(config_changes(saved_tree(run), new)) == 6  # the diff sees them all ...
    assert math_changes(run, new) == [] and check_resume(run, new) == []  # ... and none changes the math


def saved_tree(run):
    return yaml.safe_load((run / "config.yaml").read_text())


def test_every_math_change_is_listed_in_config_order(tmp_path):
    run = run_with(tmp_path)
    new = load_config(None, [*BASE, "optim.lr=1e-4", "data.shuffle=false", "train.steps=20", "train.log_every=2",
                             "model.lora.r=8", "loss.name=ipo"])
    keys = [c.key for c in math_changes(run, new)]
    assert keys == ["model.lora", "data.shuffle", "loss.name", "optim.lr", "train.steps"]
    assert Change("model.lora", None, {"r": 8, "alpha": 32.0, "dropout": 0.0, "target_modules": "all-linear"}) in (
        math_changes(run, new))


def test_saved_config_of_another_version(tmp_path):
    """A field added since the run started compares equal to its default; a field since removed is a change."""
    tree = load_config(None, BASE).model_dump(mode="json")
    del tree["model"]["trust_remote_code"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(tree))
    assert math_changes(tmp_path, load_config(None, BASE)) == []
    tree["train"]["old_knob"] = 3
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(tree))
    assert [str(c) for c in math_changes(tmp_path, load_config(None, BASE))] == ["train.old_knob 3 → (absent)"]


def test_no_saved_config_nothing_to_compare(tmp_path):
    assert math_changes(tmp_path, load_config(None, BASE)) == []


def test_allowed_change_is_recorded(tmp_path):
    run = run_with(tmp_path)
    new = load_config(None, [*BASE, "loss.beta=0.2"])
    changes = check_resume(run, new, allow=True)
    line = record_changes(run, changes, step=40)
    assert line == f"resumed at step 40 with changed settings ({ALLOW_FLAG}): loss.beta 0.1 → 0.2"
    entry = json.loads((run / CHANGES_FILE).read_text())
    assert entry["step"] == 40 and entry["changes"] == [{"key": "loss.beta", "old": 0.1, "new": 0.2}]
