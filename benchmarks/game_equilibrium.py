"""Benchmark (not a test): the τ-regularised equilibrium of an n = 1000 random preference game.

Solves π*_τ = softmax(log μ + Pπ*/τ) with the Newton solver and reports wall time, the fixed-point
residual and the duality gap (target ≤ 1e-6); then runs Nash-MP and EGPO in exact mode until their
last-iterate gap is ≤ 1e-6 and reports their wall time and iteration counts.

    OPENBLAS_NUM_THREADS=1 python benchmarks/game_equilibrium.py [--n 1000] [--tau 0.1 0.01] [--seed 0]

On a busy machine, pin BLAS to one thread: the work is n = 1000 matrix-vector products and one dense
solve per Newton step, and a multi-threaded BLAS competing for cores was 6-40x slower in our runs
(2 shared cores: Newton at τ = 0.1 took 0.12 s single-threaded, 0.8 s with default threads).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from duelist.games import Solution, best_response, duality_gap, random_game, regularized_equilibrium, run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--tau", type=float, nargs="+", default=[0.1, 0.01])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    base = random_game(args.n, seed=args.seed, ref="random")
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    print(f"built n={args.n} random game in {time.perf_counter() - t0:.2f}s (BLAS threads: {threads})")
    for tau in args.tau:
        g = base.replace(tau=tau)
        t0 = time.perf_counter()
        pi = regularized_equilibrium(g.P, g.mu, tau)
        wall = time.perf_counter() - t0
        res = np.abs(pi - best_response(g.P, g.mu, tau, pi)).max()
        gap = duality_gap(g.P, g.mu, tau, pi)
        print(f"tau={tau:g}: Newton solve {wall:.3f}s  residual {res:.1e}  duality gap {gap:.1e}  "
              f"{'OK' if gap <= 1e-6 else 'FAIL'} (target 1e-6)")
        sol = Solution(g)
        sol.regularized = pi  # reuse the solve for the runs' metrics
        for name in ("nash_mp", "egpo"):
            t0 = time.perf_counter()
            r = run(g, name, 5000, solution=sol, tol=1e-6)
            print(f"  {name:8s} exact mode: gap {r.error[-1]:.1e} after {r.iterations_to(1e-6)} iterations, "
                  f"{time.perf_counter() - t0:.2f}s")


if __name__ == "__main__":
    main()
