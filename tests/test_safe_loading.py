"""Loading is safe by default: no remote code unless the config says so, and no pickle-based loading."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import transformers

from duelist.config import load_config
from duelist.models.load import load_model

SRC = Path(__file__).parents[1] / "src" / "duelist"


@pytest.mark.parametrize("setting, expected", [(None, False), ("true", True)])
def test_trust_remote_code_is_off_unless_set(setting, expected, tiny_model_dir, monkeypatch):
    seen: list[tuple[str, object]] = []
    for cls in (transformers.AutoModelForCausalLM, transformers.AutoTokenizer):
        real = cls.from_pretrained.__func__

        def spy(klass, *args, _real=real, _name=cls.__name__, **kwargs):
            seen.append((_name, kwargs.get("trust_remote_code", "not passed")))
            return _real(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    overrides = [f"model.name={tiny_model_dir}"] + ([f"model.trust_remote_code={setting}"] if setting else [])
    cfg = load_config(None, overrides)
    assert cfg.model.trust_remote_code is expected
    load_model(cfg.model)
    assert seen == [("AutoModelForCausalLM", expected), ("AutoTokenizer", expected)]


def test_documented():
    assert "model.trust_remote_code" in (Path(__file__).parents[1] / "docs" / "training.md").read_text()


UNSAFE = [
    (r"torch\.load\((?![^)]*weights_only=True)", "torch.load without weights_only=True"),
    (r"\bimport pickle\b|\bpickle\.loads?\(|\bdill\b|\bjoblib\b", "pickle"),
    (r"allow_pickle\s*=\s*True", "numpy allow_pickle=True"),
    (r"\bpd\.read_pickle\(", "pandas read_pickle"),
]


def test_no_pickle_based_loading_in_the_package():
    """Weights and state are safetensors and JSON; numpy arrays load with allow_pickle off (its default)."""
    found = []
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        for pattern, what in UNSAFE:
            found += [f"{path.relative_to(SRC)}: {what}" for _ in re.finditer(pattern, text)]
    assert found == []
