#!/usr/bin/env python3
"""Figures of issue 20 (loops in the IR), in one run: kernels and compile time against the inner
steps, unrolled and as a loop (scan); peak memory and step time under memory budgets of 1, 1/4
and 1/16 of the store-every-carry peak, and with every-k (k = sqrt(n)) checkpointing.

Every figure comes from `metagrad bench ... --json` of the build given (default build/metagrad).
The runs are short (a few meta-iterations each): they measure compilation, memory and step time,
not learning. PyTorch is not needed (the PyTorch comparison is bench/compare/conv_maml_torch.py).

  python3 bench/loop_figures.py [--cli build/metagrad] [--iters 5]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile


def bench(cli, args, iters):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        path = f.name
    cmd = ["nice", cli, "bench"] + args + ["--iters", str(iters), "--eval-tasks", "0", "--quiet", "--json", path]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        os.unlink(path)
        return {"error": (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1]}
    with open(path) as f:
        j = json.load(f)
    os.unlink(path)
    return j


def compile_row(j):
    r, t = j["result"], j["timing"]
    return r["kernels"], t.get("pass_seconds", 0.0) + r.get("compile_seconds", 0.0), r.get("planned_peak_bytes", 0)


def mib(b):
    return "%.2f" % (b / 2**20)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cli", default="build/metagrad")
    ap.add_argument("--iters", type=int, default=5, help="meta-iterations per run (step time is their mean)")
    a = ap.parse_args()
    workloads = {
        "sinusoid": (["sinusoid"], [1, 10, 100, 1000]),
        "conv-maml": (["conv-maml", "--synthetic"], [1, 5, 10, 25]),
    }

    print("## Kernels and compile time (passes + building the executable) against inner steps\n")
    print("| workload | inner steps | kernels unrolled | kernels scan | compile s unrolled | compile s scan |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, (base, steps) in workloads.items():
        for n in steps:
            cells = []
            for form in ["unrolled", "scan"]:
                # The unrolled conv-MAML at 25 steps and sinusoid at 1000 take minutes and GBs to compile.
                if form == "unrolled" and ((name == "sinusoid" and n > 100) or (name == "conv-maml" and n > 10)):
                    cells.append(None)
                    continue
                j = bench(a.cli, base + ["--inner-steps", str(n), "--inner-loop", form], 1)
                cells.append(None if "error" in j else compile_row(j))
            fmt = lambda c, i: "-" if c is None else ("%d" % c[i] if i == 0 else "%.2f" % c[i])
            print("| %s | %d | %s | %s | %s | %s |" % (name, n, fmt(cells[0], 0), fmt(cells[1], 0), fmt(cells[0], 1), fmt(cells[1], 1)))
            sys.stdout.flush()

    print("\n## Peak memory and step time under a memory budget (inner loop as scan)\n")
    print("| workload | inner steps | budget | policy (slots, recompute factor) | planned peak MiB | ms/step | vs store-all |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, base, n in [("sinusoid", ["sinusoid"], 100), ("conv-maml", ["conv-maml", "--synthetic"], 10)]:
        common = base + ["--inner-steps", str(n), "--inner-loop", "scan"]
        full = bench(a.cli, common + ["--loop-checkpoint", "all"], a.iters)
        if "error" in full:
            print("| %s | %d | - | store-all failed: %s | | | |" % (name, n, full["error"]))
            continue
        peak = full["result"]["planned_peak_bytes"]
        base_ms = full["timing"]["ms_per_iter"]
        runs = [("1 (%s MiB)" % mib(peak), ["--memory-budget", str(peak)])]
        runs += [("1/%d (%s MiB)" % (d, mib(peak // d)), ["--memory-budget", str(peak // d)]) for d in (4, 16)]
        runs += [("every-k, k = sqrt(n)", ["--loop-checkpoint", "every-k"])]
        for label, extra in runs:
            j = bench(a.cli, common + extra, a.iters)
            if "error" in j:
                print("| %s | %d | %s | does not fit: %s | | | |" % (name, n, label, j["error"]))
                continue
            r = j["result"]
            loops = r.get("loops", [])
            pol = ", ".join(sorted({"%s (%d, %.2f)" % (l["policy"], l["slots"], l["recompute_factor"]) for l in loops})) or "none"
            ms = j["timing"]["ms_per_iter"]
            print("| %s | %d | %s | %s | %s | %.1f | %.2fx |" % (name, n, label, pol, mib(r["planned_peak_bytes"]), ms, ms / base_ms))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
