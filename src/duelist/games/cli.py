"""``duelist game [NAME | --matrix P.npy [--ref mu.npy]] --tau T --algorithms a,b --steps N ...``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("game", help="solve a tabular preference game and run Nash-learning algorithms on it",
                       description="Build a preference game (built-in or loaded), compute its exact equilibria, "
                       "run the chosen algorithms in exact or sampled mode and report their convergence.")
    p.add_argument("name", nargs="?", help="built-in game name (see --list)")
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
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import numpy as np

    from duelist.games import dynamics, matrices
    from duelist.games.metrics import exploitability
    from duelist.games.solvers import Solution

    if args.list:
        return _print_lists(args.json, matrices.BUILTIN_GAMES, dynamics.algorithm_table())
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
