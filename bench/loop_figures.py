#!/usr/bin/env python3
"""Figures of issue 20 (loops in the IR), in one run: kernels and compile time against the inner
steps, unrolled and as a loop (scan); peak memory and step time under memory budgets of 1, 1/4
and 1/16 of the store-every-carry peak, and with every-k (k = sqrt(n)) checkpointing; and
conv-MAML at 10 inner steps side by side with PyTorch (bench/compare/conv_maml_torch.py, every
step stored, create_graph=True), metagrad with no budget and with the smallest budget that fits.

Every metagrad figure comes from `metagrad bench ... --json` of the build given (default
build/metagrad). The runs are short (a few meta-iterations each): they measure compilation,
memory and step time, not learning. In the PyTorch part both sides run as child processes with
2 threads, and each one's peak resident set is its ru_maxrss from wait4, measured the same way;
a baseline child of each (PyTorch: `import torch` only; metagrad: the same command with `--help`)
is subtracted for the working memory. --parts picks the parts (compile, budget, torch).

--cli may be given twice or more (e.g. a build of main, then this tree's): the budget part then
runs every row with each build in turn, one after the other, so that their step times are
measured side by side under the same load (each build's ratio is against its own store-all);
the compile and torch parts use the first. --repeat N runs each budget row N times (the builds
interleaved each time) and keeps the least step time, the run least disturbed by other load;
--threads N passes --threads to its runs (on a shared, loaded machine one thread per run is far
less disturbed than OpenMP threads waiting for each other).

  python3 bench/loop_figures.py [--cli build/metagrad [--cli other/metagrad]] [--iters 5]
      [--repeat 1] [--threads N] [--parts compile,budget,torch] [--torch-python /usr/bin/python3] [--torch-iters 3]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile


def run_child(cmd):
    """Runs cmd; returns (exit status, stderr, peak resident set in bytes from wait4)."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, err, ru.ru_maxrss * 1024  # Linux: kilobytes


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


def bench_rss(cli, args, iters):
    """bench --json as a child process, with its peak resident set (result['maxrss_bytes'])."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        path = f.name
    cmd = [cli, "bench"] + args + ["--iters", str(iters), "--eval-tasks", "0", "--quiet", "--json", path]
    status, err, rss = run_child(cmd)
    if status != 0:
        os.unlink(path)
        return {"error": (err.strip().splitlines() or ["exit %d" % status])[-1]}
    with open(path) as f:
        j = json.load(f)
    os.unlink(path)
    j["maxrss_bytes"] = rss
    return j


def smallest_budget(cli, args):
    """The smallest budget metagrad names for args (it compiles with it), or None."""
    j = bench_rss(cli, args + ["--memory-budget", "1K"], 1)
    m = re.search(r"at least (\d+) bytes", j.get("error", ""))
    return int(m.group(1)) if m else None


def torch_part(a):
    here = os.path.dirname(os.path.abspath(__file__))
    script = os.path.join(here, "compare", "conv_maml_torch.py")
    n = 10
    print("\n## conv-MAML, %d inner steps, side by side with PyTorch (2 threads each, child processes)\n" % n)
    # Baselines: what each process holds before its work (interpreter and libraries; binary and libraries).
    _, _, torch_base = run_child([a.torch_python, "-c", "import torch"])
    _, _, mg_base = run_child([a.cli[0], "bench", "conv-maml", "--help"])
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        path = f.name
    status, err, torch_rss = run_child([a.torch_python, script, "--torch-only", "--inner-steps", str(n), "--iters",
                                        str(a.torch_iters), "--warmup", "1", "--json", path])
    if status != 0:
        print("PyTorch failed: %s" % (err.strip().splitlines() or ["exit %d" % status])[-1])
        return
    with open(path) as f:
        t = json.load(f)
    os.unlink(path)
    common = ["conv-maml", "--synthetic", "--inner-steps", str(n), "--inner-loop", "scan", "--threads", "2"]
    runs = [("metagrad, no budget", bench_rss(a.cli[0], common, a.torch_iters + 1))]
    least = smallest_budget(a.cli[0], common)
    if least is not None:
        runs.append(("metagrad, budget %s MiB (smallest)" % mib(least),
                     bench_rss(a.cli[0], common + ["--memory-budget", str(least)], a.torch_iters + 1)))
    print("| run | ms/iter | peak RSS MiB | working MiB (RSS - baseline) | vs PyTorch time | vs PyTorch working memory | plan |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    tw = torch_rss - torch_base
    print("| PyTorch %s (every step stored) | %.1f | %s | %s | 1.00x | 1.00x | baseline %s MiB |" % (
        t["torch"], t["ms_per_iter"], mib(torch_rss), mib(tw), mib(torch_base)))
    for label, j in runs:
        if "error" in j:
            print("| %s | failed: %s | | | | | |" % (label, j["error"]))
            continue
        r = j["result"]["compile"]
        ms = j["timing"]["ms_per_iter"]
        w = j["maxrss_bytes"] - mg_base
        loops = r.get("loops", [])
        pol = ", ".join(sorted({"%s (%d)" % (l["policy"], l["slots"]) for l in loops})) or "none"
        print("| %s | %.1f | %s | %s | %.2fx | %.2fx | %s, planned peak %s MiB, baseline %s MiB |" % (
            label, ms, mib(j["maxrss_bytes"]), mib(w), ms / t["ms_per_iter"], w / tw, pol,
            mib(r.get("planned_peak_bytes", 0)), mib(mg_base)))
        sys.stdout.flush()


def compile_row(j):
    r, t = j["result"]["compile"], j["timing"]
    return r["kernels"], t.get("pass_seconds", 0.0) + r.get("compile_seconds", 0.0), r.get("planned_peak_bytes", 0)


def mib(b):
    return "%.2f" % (b / 2**20)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cli", action="append", help="a metagrad binary (default build/metagrad); give more to compare builds")
    ap.add_argument("--iters", type=int, default=5, help="meta-iterations per run (step time is their mean)")
    ap.add_argument("--repeat", type=int, default=1, help="budget part: runs per row and build, the least step time kept")
    ap.add_argument("--threads", type=int, default=0, help="budget part: --threads for each run (0: the bench's default)")
    ap.add_argument("--parts", default="compile,budget,torch", help="comma-separated: compile, budget, torch")
    ap.add_argument("--torch-python", default="/usr/bin/python3", help="a Python with torch, for the torch part")
    ap.add_argument("--torch-iters", type=int, default=3, help="timed meta-iterations of each side in the torch part")
    a = ap.parse_args()
    a.cli = a.cli or ["build/metagrad"]
    parts = set(a.parts.split(","))
    if parts - {"compile", "budget", "torch"}:
        ap.error("unknown part in --parts %s (compile, budget, torch)" % a.parts)
    workloads = {
        "sinusoid": (["sinusoid"], [1, 10, 100, 1000]),
        "conv-maml": (["conv-maml", "--synthetic"], [1, 5, 10, 25]),
    }

    if "compile" in parts:
        compile_part(a, workloads)
    if "budget" in parts:
        budget_part(a)
    if "torch" in parts:
        torch_part(a)


def compile_part(a, workloads):
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
                j = bench(a.cli[0], base + ["--inner-steps", str(n), "--inner-loop", form], 1)
                cells.append(None if "error" in j else compile_row(j))
            fmt = lambda c, i: "-" if c is None else ("%d" % c[i] if i == 0 else "%.2f" % c[i])
            print("| %s | %d | %s | %s | %s | %s |" % (name, n, fmt(cells[0], 0), fmt(cells[1], 0), fmt(cells[0], 1), fmt(cells[1], 1)))
            sys.stdout.flush()



def compile_of(j):
    """The compile report of a bench --json (result.compile; a build before it: result itself)."""
    return j["result"].get("compile", j["result"])


def runs_of(a, args, clis=None):
    """bench args with each build, --repeat times, the builds interleaved each time: per build,
    the run with the least step time (or the error)."""
    best = {}
    for _ in range(max(1, a.repeat)):
        for cli in clis if clis is not None else a.cli:
            j = bench(cli, args, a.iters)
            if "error" in j:
                best.setdefault(cli, j)
                continue
            if cli not in best or "error" in best[cli] or j["timing"]["ms_per_iter"] < best[cli]["timing"]["ms_per_iter"]:
                best[cli] = j
        if all("error" in j for j in best.values()):
            break  # a plan that does not fit fails the same way every time
    return best


def budget_part(a):
    print("\n## Peak memory and step time under a memory budget (inner loop as scan)\n")
    many = len(a.cli) > 1
    head = "| workload | inner steps | budget | policy (slots, recompute factor) | planned peak MiB | ms/step | vs store-all |"
    print(("| build " if many else "") + head)
    print("| --- " * (8 if many else 7) + "|")
    for name, base, n in [("sinusoid", ["sinusoid"], 100), ("conv-maml", ["conv-maml", "--synthetic"], 10)]:
        common = base + ["--inner-steps", str(n), "--inner-loop", "scan"]
        if a.threads > 0:
            common += ["--threads", str(a.threads)]
        # The budgets are store-all's peak of the first build; every build runs the same budgets.
        base_ms, peak = {}, None
        store_all = runs_of(a, common + ["--loop-checkpoint", "all"])
        for cli in a.cli:
            cell = ("| %s " % cli) if many else ""
            full = store_all[cli]
            if "error" in full:
                print("%s| %s | %d | - | store-all failed: %s | | | |" % (cell, name, n, full["error"]))
                continue
            peak = peak or compile_of(full)["planned_peak_bytes"]
            base_ms[cli] = full["timing"]["ms_per_iter"]
            print("%s| %s | %d | store-all | store-all (%d, 1.00) | %s | %.1f | 1.00x |" % (
                cell, name, n, n, mib(compile_of(full)["planned_peak_bytes"]), base_ms[cli]))
            sys.stdout.flush()
        if peak is None:
            continue
        runs = [("1 (%s MiB)" % mib(peak), ["--memory-budget", str(peak)])]
        runs += [("1/%d (%s MiB)" % (d, mib(peak // d)), ["--memory-budget", str(peak // d)]) for d in (4, 16)]
        runs += [("every-k, k = sqrt(n)", ["--loop-checkpoint", "every-k"])]
        for label, extra in runs:
            results = runs_of(a, common + extra, [c for c in a.cli if c in base_ms])
            for cli, j in results.items():
                cell = ("| %s " % cli) if many else ""
                if "error" in j:
                    print("%s| %s | %d | %s | does not fit: %s | | | |" % (cell, name, n, label, j["error"]))
                    continue
                r = compile_of(j)
                loops = r.get("loops", [])
                pol = ", ".join(sorted({"%s (%d, %.2f)" % (l["policy"], l["slots"], l["recompute_factor"]) for l in loops})) or "none"
                ms = j["timing"]["ms_per_iter"]
                print("%s| %s | %d | %s | %s | %s | %.1f | %.2fx |" % (
                    cell, name, n, label, pol, mib(r["planned_peak_bytes"]), ms, ms / base_ms[cli]))
                sys.stdout.flush()


if __name__ == "__main__":
    main()
