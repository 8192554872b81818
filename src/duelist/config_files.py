"""Resolve a config argument: a YAML path, or the name of a config shipped in ``duelist/configs``."""

from __future__ import annotations

from pathlib import Path

from duelist.config import ConfigError

BUNDLED = Path(__file__).parent / "configs"


def bundled_names() -> list[str]:
    return sorted(p.stem for p in BUNDLED.glob("*.yaml"))


def resolve_config(arg: str | None) -> Path | None:
    if arg is None:
        return None
    p = Path(arg)
    if p.is_file():
        return p
    if (BUNDLED / f"{arg}.yaml").is_file():
        return BUNDLED / f"{arg}.yaml"
    if p.is_dir() and (p / "config.yaml").is_file():
        return p / "config.yaml"
    raise ConfigError(
        f"config {arg!r} is not a file, a run directory, or a bundled config ({', '.join(bundled_names())})"
    )


def split_args(args: list[str]) -> tuple[str | None, list[str]]:
    """Positional arguments → (config, overrides): overrides contain '='."""
    overrides = [a for a in args if "=" in a]
    rest = [a for a in args if "=" not in a]
    if len(rest) > 1:
        raise ConfigError(f"expected one config file, got {rest}")
    return (rest[0] if rest else None), overrides
