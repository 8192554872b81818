"""``duelist game [NAME | --matrix P.npy [--ref mu.npy]] --tau T --algorithms a,b --steps N ...``, and
``duelist game cliff [--reward 1,1,0 | --rewards "r1;r2" --aggregate sum|maxmin] --taus 0,0.1 ...`` (the
Policy Cliff, ``duelist.games.cliff``)."""

from __future__ import annotations

import argparse

CLIFF = "cliff"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("game", help="solve a tabular preference game and run Nash-learning algorithms on it",
                       description="Build a preference game (built-in or loaded), compute its exact equilibria, "
                       "run the chosen algorithms in exact or sampled mode and report their convergence.")
    p.add_argument("name", nargs="?", help=f"built-in game name (see --list), or {CLIFF!r}: how far the optimal "
                   "policy of a reward moves under small reward perturbations, for several τ")
    p.add_argument("--matrix", help="preference matrix P (.npy or .csv) with P + Pᵀ = 1")
    p.add_argument("--ref", help="reference policy μ: 'uniform', 'random' (softmax of normals) or a .npy/.csv "
                   "file (default: random for built-in games, uniform with --matrix)")
    p.add_argument("--n", type=int, default=10, help="responses, for the built-in games that take n (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed for the game and the sampled mode (default 0)")
    p.add_argument("--tau", type=float, default=0.1, help="KL regularisation τ (default 0.1)")
    p.add_argument("--flip", type=float, default=0.0, help="label-noise flip rate applied to P (default 0)")
    p.add_argument("--algorithms", default="all", help="comma-separated names or 'all' (see --list)")
    p.add_argument("--steps", type=int, default=300, help="iterations per algorithm (default 300)")
    p.add_argument("--mode", choices=("exact", "sampled"), default="exact")
    p.add_argument("--queries", type=int, default=100,
                   help="sampled mode: preference queries per response per win-rate estimate (default 100)")
    p.add_argument("--eta", type=float, help="step size for every selected algorithm (default: each one's own)")
    p.add_argument("--tol", type=float, default=1e-6, help="tolerance for 'iterations to tol' (default 1e-6)")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="write results (or, with --list, the lists) as JSON to FILE; alone: print only JSON")
    p.add_argument("--plot", help="write a convergence plot (PNG) to this file")
    p.add_argument("--list", action="store_true", help="list built-in games and algorithms, then exit")
    c = p.add_argument_group(f"policy cliff (duelist game {CLIFF})")
    c.add_argument("--reward", default="1,1,0",
                   help="comma-separated reward over actions (default 1,1,0: two tied best actions)")
    c.add_argument("--rewards", help="several group rewards, 'r1;r2;...' (each comma-separated), aggregated into "
                   "an effective reward by --aggregate (replaces --reward)")
    c.add_argument("--aggregate", choices=("sum", "maxmin"), default="sum",
                   help="weighted sum (--weights, default uniform) or MaxMin over the groups (default sum)")
    c.add_argument("--weights", help="comma-separated group weights for --aggregate sum")
    c.add_argument("--taus", default="0,0.01,0.1,1", help="temperatures τ (default 0,0.01,0.1,1)")
    c.add_argument("--eps-min", type=float, default=1e-4, help="smallest perturbation ‖Δr‖_∞ (default 1e-4)")
    c.add_argument("--eps-max", type=float, default=1.0, help="largest perturbation (default 1)")
    c.add_argument("--points", type=int, default=9, help="perturbation sizes, log-spaced (default 9)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import numpy as np

    from duelist.games import dynamics, matrices
    from duelist.games.metrics import exploitability
    from duelist.games.solvers import Solution

    if args.name == CLIFF:
        return run_cliff(args)
    if args.list:
        games = {**matrices.BUILTIN_GAMES,
                 CLIFF: ("(analysis) the Policy Cliff: policy distance against reward perturbation size", None)}
        return _print_lists(args.json, games, dynamics.algorithm_table())
    stdout_json = args.json == "-"
    say = (lambda *a, **k: None) if stdout_json else print
    game = _build_game(args, matrices)
    names = list(dynamics.ALGORITHMS) if args.algorithms == "all" else [a.strip() for a in args.algorithms.split(",")]
    for name in names:
        dynamics.get_algorithm(name)
    sol = Solution(game)
    say(f"game {game.name}: n={game.n}, tau={game.tau:g}, groups={game.num_groups}, mode={args.mode}")
    cw = sol.condorcet
    say(f"  Condorcet winner: {cw if cw is not None else 'none'}")
    nash = sol.nash
    say(f"  von Neumann winner (LP): support {np.flatnonzero(nash > 1e-9).tolist()}, "
          f"exploitability {exploitability(game.P, game.mu, 0.0, nash):.1e}")
    if game.tau > 0:
        star = sol.regularized
        shown = np.array2string(star, precision=4, separator=", ") if game.n <= 12 else f"max {star.max():.4f}"
        say(f"  pi*_tau: {shown}")
    runs, rows = [], []
    for name in names:
        cls = dynamics.get_algorithm(name)
        if cls.needs_tau and game.tau <= 0:
            say(f"  skipping {name}: needs tau > 0")
            continue
        r = dynamics.run(game, name, args.steps, mode=args.mode, queries=args.queries, seed=args.seed,
                         eta=args.eta, solution=sol)
        runs.append(r)
        rows.append(r.summary(args.tol))
    if not stdout_json:
        _print_table(rows)
    if args.json:
        out = {"game": {"name": game.name, "n": game.n, "tau": game.tau, "groups": game.num_groups,
                        "mode": args.mode, "queries": args.queries if args.mode == "sampled" else None,
                        "mu": game.mu.tolist()},
               "equilibrium": {"regularized": sol.regularized.tolist(), "nash": nash.tolist(), "condorcet": cw},
               "algorithms": {row["algorithm"]: row for row in rows}}
        if stdout_json:
            print(json.dumps(out, indent=2))
        else:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(out, indent=2))
            print(f"wrote {args.json}")
    if args.plot:
        from duelist.games.plots import convergence_plot

        convergence_plot(args.plot, runs, title=f"{game.name}, tau={game.tau:g}, {args.mode} mode", tol=args.tol)
        say(f"wrote {args.plot}")
    return 0


def _build_game(args: argparse.Namespace, matrices):
    from pathlib import Path

    if args.matrix:
        if args.name:
            raise matrices.GameError("give either a built-in game name or --matrix, not both")
        if args.ref == "random":
            raise matrices.GameError("--ref random is for built-in games; pass a file with --matrix")
        game = matrices.load_game(args.matrix, None if args.ref in (None, "uniform") else args.ref, args.tau)
    else:
        if not args.name:
            raise matrices.GameError("name a built-in game (see --list) or pass --matrix P.npy")
        ref = args.ref or "random"
        if ref not in ("uniform", "random"):
            n = 3 if args.name == "rps" else args.n
            ref = matrices.check_reference(matrices.read_array(Path(ref), "reference policy"), n, ref)
        game = matrices.builtin_game(args.name, args.n, args.tau, args.seed, ref)
    if args.flip:
        game = matrices.with_label_noise(game, args.flip)
    return game


def _print_lists(json_to: str | None, games: dict, algorithms: list[dict]) -> int:
    import json
    from pathlib import Path

    from duelist.tables import Column, print_json, print_table

    if json_to:
        lists = {"games": [{"name": n, "description": d} for n, (d, _) in games.items()], "algorithms": algorithms}
        if json_to == "-":
            print_json(lists)
        else:
            Path(json_to).write_text(json.dumps(lists, indent=2))
        return 0
    print_table("games", ["name", Column("description", wrap=True)], [(n, d) for n, (d, _) in games.items()])
    print_table("algorithms", ["name", "target", "iterate", Column("rule", wrap=True)],
                [(a["name"], a["target"], a["iterate"], a["rule"]) for a in algorithms])
    return 0


def _print_table(rows: list[dict]) -> None:
    from duelist.tables import Column, print_table

    num = {"justify": "right"}
    cols = ["algorithm", "target", "iterate", Column("error", **num), Column("gap(tau)", **num),
            Column("KL(pi*|pi)", **num), Column("iters<tol", **num), Column("cost", **num)]
    print_table(None, cols, [
        (r["algorithm"], r["target"], r["iterate"], f"{r['error']:.2e}", f"{r['gap']:.2e}",
         f"{r['kl_to_equilibrium']:.2e}", r["iterations_to_tol"] if r["iterations_to_tol"] is not None else "-",
         r["cost"]) for r in rows])


def _floats(text: str, what: str) -> list[float]:
    from duelist.games.matrices import GameError

    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise GameError(f"{what}: expected comma-separated numbers, got {text!r}") from None


def run_cliff(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import numpy as np

    from duelist.games import cliff, matrices

    if args.rewards:
        cols = [_floats(g, "--rewards") for g in args.rewards.split(";")]
        if len({len(c) for c in cols}) != 1:
            raise matrices.GameError(f"--rewards: every group needs the same number of actions, got {args.rewards!r}")
        R = np.array(cols).T
    else:
        R = np.array(_floats(args.reward, "--reward"))[:, None]
    n, k = R.shape
    if n < 2:
        raise matrices.GameError("the policy cliff needs at least 2 actions")
    weights = np.array(_floats(args.weights, "--weights")) if args.weights else None
    if weights is not None and weights.size != k:
        raise matrices.GameError(f"--weights: {weights.size} weights for {k} group rewards")
    ref = args.ref or "uniform"
    if ref in ("uniform", "random"):
        mu = matrices._reference(n, ref, np.random.default_rng(args.seed))
    else:
        mu = matrices.check_reference(matrices.read_array(Path(ref), "reference policy"), n, ref)
    taus = _floats(args.taus, "--taus")
    if min(taus) < 0:
        raise matrices.GameError(f"--taus: temperatures must be >= 0, got {args.taus!r}")
    if args.aggregate == "maxmin" and 0 in taus:
        print("  skipping tau=0 for maxmin: its tau=0 problem is a linear programme (see docs/games.md)")
        taus = [t for t in taus if t > 0]
    eps = np.geomspace(args.eps_min, args.eps_max, args.points)
    rows = cliff.cliff_sweep(R, mu, taus, eps, args.aggregate, weights)
    how = "single reward" if k == 1 else f"{k} group rewards, {args.aggregate}"
    shown = np.array2string(R.T.squeeze(), precision=4, separator=", ")
    print(f"policy cliff: n={n}, {how}, reward{'s' if k > 1 else ''} {shown}")
    _print_cliff(rows, args.aggregate)
    if args.json:
        out = {"rewards": R.T.tolist(), "mu": mu.tolist(), "aggregate": args.aggregate,
               "weights": None if weights is None else weights.tolist(), "rows": rows}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    if args.plot:
        from duelist.games.plots import cliff_plot

        cliff_plot(args.plot, rows, title=f"policy cliff: {how}")
        print(f"wrote {args.plot}")
    return 0


def _print_cliff(rows: list[dict], aggregate: str) -> None:
    import math

    extra = f" {'sqrt(2e/tau)':>12s}" if aggregate == "maxmin" else f" {'2tanh(e/2tau)':>13s}"
    head = f"{'tau':>6s} {'eps':>9s} {'|dpi|_1':>9s} {'eps/tau':>9s}{extra} {'|dpi|_1*tau/eps':>15s}"
    print(head)
    print("-" * len(head))
    for r in rows:
        more = r["holder_bound"] if aggregate == "maxmin" else r["modulus"]
        ratio = f"{r['distance'] / r['bound']:15.4f}" if math.isfinite(r["bound"]) else f"{'-':>15s}"
        print(f"{r['tau']:6g} {r['eps']:9.2e} {r['distance']:9.3e} {r['bound']:9.2e} "
              f"{more:{12 if aggregate == 'maxmin' else 13}.3e} {ratio}")
