#!/usr/bin/env python3
"""Default pipeline (-O1) versus no passes (-O0) on both issue-4 meta-steps, side by side in one run.

Workloads: the second-order MAML sinusoid step with 5 inner steps, and the conv-MAML step
(`bench conv-maml --synthetic`). The two levels alternate for --rounds rounds, so a load change on
a shared machine hits both; the table gives the median time per meta-iteration of each, kernels
per step, arena peak against the naive total (every intermediate kept), and the ratios.

Usage: python3 bench/compare/opt_levels.py [--metagrad build/metagrad] [--rounds 3] [--threads 2]
"""
import argparse
import statistics

from metagrad_json import compiled, run_metagrad_json

WORKLOADS = {
    "sinusoid (5 inner steps)": ["bench", "sinusoid", "--inner-steps", "5", "--iters", "2000", "--eval-tasks", "0"],
    "conv-maml": ["bench", "conv-maml", "--synthetic", "--iters", "12", "--eval-tasks", "0"],
}


def run(binary, args, level, threads):
    return run_metagrad_json(binary, [*args, "--opt-level", str(level), "--threads", str(threads)])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--metagrad", default="build/metagrad", help="path to the metagrad binary")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per workload")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    print(f"{'workload':26s} {'level':>5s} {'ms/iter':>9s} {'kernels':>8s} {'peak MiB':>9s} {'naive MiB':>10s} {'peak/naive':>10s}")
    for name, args in WORKLOADS.items():
        results = {0: [], 1: []}
        for _ in range(a.rounds):
            for level in (1, 0):
                results[level].append(run(a.metagrad, args, level, a.threads))
        ms = {lv: statistics.median(r["timing"]["ms_per_iter"] for r in rs) for lv, rs in results.items()}
        for level in (1, 0):
            r = compiled(results[level][-1])
            print(f"{name:26s} {'-O' + str(level):>5s} {ms[level]:9.3f} {r['kernels']:8d} {r['peak_bytes'] / 2**20:9.2f} "
                  f"{r['naive_bytes'] / 2**20:10.2f} {r['peak_bytes'] / r['naive_bytes']:10.2f}")
        k1, k0 = compiled(results[1][-1])["kernels"], compiled(results[0][-1])["kernels"]
        print(f"{name:26s} -O1/-O0 time {ms[1] / ms[0]:.2f}, kernels {k1 / k0:.2f} ({100 * (1 - k1 / k0):.0f}% fewer)")


if __name__ == "__main__":
    main()
