"""``run_tournament(policies, tcfg)``: sample every policy once on held-out prompts, judge every pair, write
``tournament.json`` and ``tournament.png`` to ``tcfg.output_dir``.

Each policy is loaded, sampled (``tcfg.samples_per_prompt`` per prompt, pure ancestral sampling at
``tcfg.temperature``, the same seed for all: common random numbers) and released before the next; its
samples serve against every opponent. Prompts are read and encoded as ``duelist eval`` does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from duelist.eval.tournament.config import TournamentConfig, judge_name, resolve_policies
from duelist.eval.tournament.matrix import TournamentResult, tournament_matrix
from duelist.judges import get_judge
from duelist.judges.base import Judge
from duelist.sample.generate import sample

console = Console(stderr=True)


def sample_policy(model_name: str, prompts: list[Any], tcfg: TournamentConfig, label: str) -> list[list[str]]:
    """``tcfg.samples_per_prompt`` completions of each prompt, as text, grouped by prompt."""
    from duelist.config import ModelConfig
    from duelist.data.tokenize import PairTokenizer
    from duelist.models.load import load_model

    model, tok = load_model(ModelConfig(name=model_name, dtype="float32"))
    enc = PairTokenizer(tok)
    k = tcfg.samples_per_prompt
    comps = sample(model, tok, [enc.encode_prompt(p) for p in prompts], n=k, max_new_tokens=tcfg.max_new_tokens,
                   temperature=tcfg.temperature, batch_size=tcfg.batch_size, seed=tcfg.seed, progress=True,
                   description=f"sampling {label}")
    return [[c.text for c in comps[i * k : (i + 1) * k]] for i in range(len(prompts))]


def run_tournament(policies: Mapping[str, str | Path], tcfg: TournamentConfig,
                   judge: Judge | None = None) -> dict[str, Any]:
    """Play every policy against every other; returns what ``tournament.json`` holds. ``judge`` overrides
    ``tcfg.judge`` (for a judge object that is not registered by name)."""
    from duelist.eval.run import _text, load_prompts

    t0 = time.perf_counter()
    paths = resolve_policies(dict(policies), tcfg.reference)  # every entry checked before any sampling
    jname = judge.name if judge is not None else judge_name(tcfg)
    judge = judge if judge is not None else get_judge(jname, **tcfg.judge_params)
    prompts = load_prompts(tcfg.prompts, tcfg.num_prompts)
    texts = [_text(p) for p in prompts]
    by_model: dict[str, list[list[str]]] = {}  # one sampling per distinct model, shared by its entries
    for name, path in paths.items():
        if path not in by_model:
            by_model[path] = sample_policy(path, prompts, tcfg, name)
    samples = {name: by_model[path] for name, path in paths.items()}
    console.print(f"judging {len(paths)} policies pairwise on {len(prompts)} prompts ({jname})")
    result = tournament_matrix(judge, texts, samples)
    out: dict[str, Any] = {
        **result.as_dict(),
        "paths": paths,
        "judge": jname,
        "prompts": tcfg.prompts,
        "num_prompts": len(prompts),
        "samples_per_prompt": tcfg.samples_per_prompt,
        "max_new_tokens": tcfg.max_new_tokens,
        "temperature": tcfg.temperature,
        "seed": tcfg.seed,
        "examples": [{"prompt": texts[i], **{name: s[i][0] for name, s in samples.items()}}
                     for i in range(min(3, len(texts)))],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_outputs(Path(tcfg.output_dir), out, result)
    print_result(result, out)
    return out


def write_outputs(out_dir: Path, out: dict[str, Any], result: TournamentResult) -> None:
    from duelist.eval.tournament.plot import heatmap

    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "tournament.json.tmp"
    tmp.write_text(json.dumps(out, indent=1))
    tmp.replace(out_dir / "tournament.json")  # never a half-written result
    heatmap(out_dir / "tournament.png", result, title=f"{out['judge']} judge, {out['prompts']}: "
            f"{out['num_prompts']} prompts × {out['samples_per_prompt']} samples")
    console.print(f"wrote {out_dir / 'tournament.json'} and {out_dir / 'tournament.png'}")


def print_result(result: TournamentResult, out: dict[str, Any]) -> None:
    t = Table(title=f"tournament — P(row ≻ column), 95% interval over {out['num_prompts']} prompts × "
              f"{out['samples_per_prompt']} samples, judge: {out['judge']}")
    t.add_column("rank")
    t.add_column("policy")
    for name in result.names:
        t.add_column(name, justify="center")
    t.add_column("worst case", justify="center")
    idx = {n: i for i, n in enumerate(result.names)}
    for rank, name in enumerate(result.ranking, 1):
        i = idx[name]
        cells = ["½" if i == j else f"{result.matrix[i, j]:.3f} [{result.lower[i, j]:.2f}, {result.upper[i, j]:.2f}]"
                 for j in range(len(result.names))]
        w = out["worst_case"][name]
        t.add_row(str(rank), name, *cells, f"{w['win_rate']:.3f} vs {w['opponent']}")
    Console().print(t)
