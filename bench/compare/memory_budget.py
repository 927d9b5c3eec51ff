#!/usr/bin/env python3
"""Peak memory and step time under --memory-budget, for conv-MAML and LeNet-5 on Fashion-MNIST.

For each workload, in one run: no budget; budgets of 3/4 and 1/2 of the unconstrained peak; and the
smallest budget that fits (the one the error of a 1-byte budget names). Each row gives the compiled
plan's peak (the arena, loop kernels' regions included, `result.compile.planned_peak_bytes`, which equals the planner's
estimate), what rematerialization recomputed (`remat`), the time to build the executable (the
budget's search included, the graph passes before it not) and the time per step against the
unconstrained row.
Prints a markdown table.

Usage: python3 bench/compare/memory_budget.py [--cli build/metagrad] [--iters 6] [--threads 2]
"""
import argparse
import json
import os
import re
import subprocess
import tempfile

from metagrad_json import compiled

MiB = 2**20


def workloads(iters):
    return {
        "conv-maml": ["bench", "conv-maml", "--synthetic", "--iters", str(iters), "--eval-tasks", "0"],
        "lenet5 fashion-mnist": ["bench", "fashion-mnist", "--model", "lenet5", "--epochs", "1",
                                 "--max-train", str(64 * iters), "--batch", "64"],
    }


def run(cli, args, budget, threads):
    """The JSON summary, or the error line when compilation does not fit."""
    extra = ["--threads", str(threads)] + (["--memory-budget", str(budget)] if budget else [])
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "out.json")
        p = subprocess.run([cli, *args, *extra, "--quiet", "--json", path], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            return None, p.stderr.strip()
        with open(path) as f:
            return json.load(f), ""


def smallest_named(err):
    """The smallest budget a does-not-fit error names, in bytes, or None."""
    m = re.search(r"give a budget of at least (\d+) bytes", err)
    return int(m.group(1)) if m else None


def row(name, label, budget, summary, base_ms):
    r, t = compiled(summary), summary["timing"]
    remat = r.get("remat", {})
    ms = t["ms_per_iter"]
    compile_s = r["compile_seconds"]
    return (f"| {name} | {label} | {budget / MiB:.2f} | {r['planned_peak_bytes'] / MiB:.2f} | "
            f"{remat.get('values', 0)} | {remat.get('extra_flops', 0) / 1e6:.1f} | {compile_s:.2f} | {ms:.1f} | "
            f"{ms / base_ms:.2f}x |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cli", default="build/metagrad", help="path to the metagrad binary")
    ap.add_argument("--iters", type=int, default=6, help="steps timed per row (conv-MAML meta-iterations; LeNet batches)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    print("| workload | budget | budget MiB | compiled peak MiB | values recomputed | extra MFLOP | build s | ms/step | vs none |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, args in workloads(a.iters).items():
        free, err = run(a.cli, args, 0, a.threads)
        if free is None:
            raise SystemExit(f"{name}: {err}")
        full = compiled(free)["planned_peak_bytes"]
        base_ms = free["timing"]["ms_per_iter"]
        print(row(name, "none", full, free, base_ms))
        _, err = run(a.cli, args, 1, a.threads)
        least = smallest_named(err)
        if least is None:
            raise SystemExit(f"{name}: a 1-byte budget did not name the smallest: {err}")
        for label, budget in (("3/4", full * 3 // 4), ("1/2", full // 2), ("smallest", least)):
            s, err = run(a.cli, args, budget, a.threads)
            if s is None:
                named = smallest_named(err)
                why = err if named is None else f"the smallest is {named / MiB:.2f} MiB"
                print(f"| {name} | {label} | {budget / MiB:.2f} | does not fit: {why} | | | | | |")
            else:
                print(row(name, label, budget, s, base_ms))


if __name__ == "__main__":
    main()
