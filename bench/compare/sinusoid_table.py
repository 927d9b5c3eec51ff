#!/usr/bin/env python3
"""Sinusoid regression table: MAML, first-order MAML, Meta-SGD, ANIL and Reptile at 5, 10 and 20 shots.

One protocol for every row: meta-train with K support and K query points per task (meta-batch 25,
Adam 1e-3, inner step size 0.01, one inner step; Reptile takes --reptile-steps inner steps on all 2K
points), the same budget of meta-iterations and seed for every algorithm, then adapt with one step
on K points of each of --eval-tasks fresh tasks and report the query MSE with its 95% interval.
Published figures (Li et al. 2017, Table 1, 5 shots, one step) are printed beside ours.

Usage: python3 bench/compare/sinusoid_table.py [--metagrad build/metagrad] [--iters 20000] [--out table.md]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

PUBLISHED_5_SHOT = {"maml": "1.13 ± 0.18", "metasgd": "0.90 ± 0.16"}  # Li et al. 2017, Table 1
ALGOS = ["maml", "fomaml", "metasgd", "anil", "reptile"]
SHOTS = [5, 10, 20]


def run(binary, algo, shots, args, tmp):
    out = os.path.join(tmp, f"{algo}_{shots}.json")
    cmd = [binary, "bench", "sinusoid", "--algo", algo, "--shots", str(shots), "--query", str(shots),
           "--iters", str(args.iters), "--eval-tasks", str(args.eval_tasks), "--eval-steps", "1",
           "--seed", str(args.seed), "--quiet", "--json", out]
    if algo == "reptile":
        cmd += ["--inner-steps", str(args.reptile_steps)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(out) as f:
        j = json.load(f)
    # The figures this table reads: the result, and the whole-step time per meta-iteration.
    return {**j["result"], "ms_per_meta_iter": j["timing"]["ms_per_iter"]}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--metagrad", default="build/metagrad")
    p.add_argument("--iters", type=int, default=20000)
    p.add_argument("--eval-tasks", type=int, default=600)
    p.add_argument("--reptile-steps", type=int, default=5)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", default="-")
    args = p.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for algo in ALGOS:
            for k in SHOTS:
                r = run(args.metagrad, algo, k, args, tmp)
                results[(algo, k)] = r
                print(f"{algo:8s} {k:2d} shots: {r['post_adapt_mse']:.3f} ± {r['post_adapt_mse_ci95']:.3f} "
                      f"({r['ms_per_meta_iter']:.2f} ms/iter)", file=sys.stderr, flush=True)
    lines = [f"# Sinusoid regression, query MSE after one step ({args.iters} meta-iterations, "
             f"{args.eval_tasks} evaluation tasks, seed {args.seed})", "",
             "| algorithm | 5 shots | 10 shots | 20 shots | published, 5 shots | ms / meta-iteration (10 shots) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for algo in ALGOS:
        cells = [f"{results[(algo, k)]['post_adapt_mse']:.3f} ± {results[(algo, k)]['post_adapt_mse_ci95']:.3f}"
                 for k in SHOTS]
        lines.append(f"| {algo} | " + " | ".join(cells) + f" | {PUBLISHED_5_SHOT.get(algo, '-')} | "
                     f"{results[(algo, 10)]['ms_per_meta_iter']:.2f} |")
    beats = all(results[("metasgd", k)]["post_adapt_mse"] < results[("maml", k)]["post_adapt_mse"] for k in SHOTS)
    lines += ["", f"Meta-SGD below MAML at every shot count: {'yes' if beats else 'no'}"]
    text = "\n".join(lines) + "\n"
    if args.out == "-":
        print(text)
    else:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
