#!/usr/bin/env python3
"""Second-order conv-MAML meta-step, PyTorch versus metagrad, side by side in one run.

The PyTorch step is the computation `metagrad bench conv-maml --synthetic` compiles: the 4-block
few-shot network (3x3 conv, 64 filters, no conv bias, batch norm with batch statistics, ReLU,
2x2 max pool; linear head), 5-way 1-shot episodes of random 28x28 images with 15 query images per
class, meta-batch 4, --inner-steps inner SGD steps of 0.4 with create_graph=True (second order:
PyTorch keeps every step's graph until the backward), Adam at 1e-3 on the mean query loss. Tasks
are looped, as MAML is usually written in PyTorch.

Time: whole meta-iterations after warm-up. Working memory: resident set after the steps minus
after `import torch` (PyTorch) / before the graph is built (metagrad).
Then metagrad runs the same step at -O1 (default) and -O0.

Usage: /usr/bin/python3 bench/compare/conv_maml_torch.py [--metagrad build/metagrad] [--iters 10] [--rounds 3]
       [--inner-steps 1] [--inner-loop unrolled|scan]
       /usr/bin/python3 bench/compare/conv_maml_torch.py --torch-only --json out.json [--inner-steps 10]
(needs Debian's python3-torch: tools/install-deps.sh --bench). --torch-only runs the PyTorch side
alone and writes its figures as JSON, for bench/loop_figures.py, which measures each side's peak
resident set as a child process.
"""
import argparse
import json
import os
import statistics
import time

from metagrad_json import compiled, run_metagrad_json


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


rss_before_torch = rss_bytes()
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

rss_after_import = rss_bytes()


def params(ways):
    torch.manual_seed(0)
    ps = []
    cin = 1
    for _ in range(4):
        w = torch.empty(64, cin, 3, 3)
        torch.nn.init.xavier_uniform_(w)
        ps += [w, torch.ones(64), torch.zeros(64)]
        cin = 64
    head = torch.empty(64, ways)
    torch.nn.init.xavier_uniform_(head)
    ps += [head, torch.zeros(1, ways)]
    return [p.requires_grad_() for p in ps]


def net(x, w):
    h = x
    for b in range(4):
        h = F.conv2d(h, w[3 * b], padding=1)
        h = F.batch_norm(h, None, None, w[3 * b + 1], w[3 * b + 2], training=True)
        h = F.max_pool2d(F.relu(h), 2)
    return h.flatten(1) @ w[12] + w[13]


def episodes(gen, tasks, ways, shots, query):
    xs, ys, xq, yq = [], [], [], []
    for _ in range(tasks):
        protos = (torch.rand(ways, 1, 28, 28, generator=gen) < 0.15).float()
        def draw(k):
            y = torch.arange(ways).repeat(k)
            return protos[y] + 0.4 * torch.randn(len(y), 1, 28, 28, generator=gen), y
        a, b = draw(shots)
        c, d = draw(query)
        xs.append(a), ys.append(b), xq.append(c), yq.append(d)
    return xs, ys, xq, yq


def torch_run(iters, warmup, inner_steps=1, ways=5, shots=1, query=15, tasks=4, inner_lr=0.4):
    w = params(ways)
    opt = torch.optim.Adam(w, lr=1e-3)
    gen = torch.Generator().manual_seed(1)

    def step():
        xs, ys, xq, yq = episodes(gen, tasks, ways, shots, query)
        opt.zero_grad()
        total = 0.0
        for t in range(tasks):
            fast = w
            for _ in range(inner_steps):
                inner = F.cross_entropy(net(xs[t], fast), ys[t])
                g = torch.autograd.grad(inner, fast, create_graph=True)
                fast = [p - inner_lr * gi for p, gi in zip(fast, g)]
            total = total + F.cross_entropy(net(xq[t], fast), yq[t])
        loss = total / tasks
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    ms = 1e3 * (time.perf_counter() - t0) / iters
    return ms, rss_bytes() - rss_after_import


def metagrad_run(binary, iters, opt_level, inner_steps, inner_loop):
    return run_metagrad_json(binary, ["bench", "conv-maml", "--synthetic", "--iters", str(iters), "--eval-tasks", "0",
                                      "--threads", "2", "--opt-level", str(opt_level), "--inner-steps", str(inner_steps),
                                      "--inner-loop", inner_loop])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--metagrad", default="build/metagrad", help="path to the metagrad binary")
    ap.add_argument("--iters", type=int, default=10, help="timed meta-iterations per side and round")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds of PyTorch, metagrad -O1, metagrad -O0 in turn; a shared machine's load changes hit all three")
    ap.add_argument("--inner-steps", type=int, default=1, help="inner SGD steps per task (both sides)")
    ap.add_argument("--inner-loop", default="unrolled", choices=["unrolled", "scan"], help="metagrad's form of the inner loop")
    ap.add_argument("--torch-only", action="store_true", help="run only the PyTorch side, once (--iters after --warmup)")
    ap.add_argument("--json", default="", help="with --torch-only: write {ms_per_iter, working_bytes, torch} here")
    a = ap.parse_args()
    torch.set_num_threads(2)
    if a.torch_only:
        ms, mem = torch_run(a.iters, a.warmup, a.inner_steps)
        out = {"ms_per_iter": ms, "working_bytes": mem, "torch": torch.__version__, "inner_steps": a.inner_steps}
        if a.json:
            with open(a.json, "w") as f:
                json.dump(out, f)
        print(json.dumps(out))
        return
    torch_ms, torch_mem, mg, mg0 = [], [], [], []
    for _ in range(a.rounds):
        ms, mem = torch_run(a.iters, a.warmup, a.inner_steps)
        torch_ms.append(ms)
        torch_mem.append(mem)
        mg.append(metagrad_run(a.metagrad, a.iters + a.warmup, 1, a.inner_steps, a.inner_loop))
        mg0.append(metagrad_run(a.metagrad, a.iters + a.warmup, 0, a.inner_steps, a.inner_loop))
    med = statistics.median
    mib = lambda b: b / 1048576.0
    # Conservative memory figures: PyTorch's smallest working memory, metagrad's largest.
    print(f"PyTorch {torch.__version__} (2 threads, task loop, {a.inner_steps} inner steps): {med(torch_ms):8.1f} ms/iter (median of {a.rounds} rounds: "
          f"{' '.join(f'{x:.1f}' for x in torch_ms)}), working memory {mib(min(torch_mem)):7.1f} MiB")
    for name, rs in (("metagrad -O1 (default)", mg), ("metagrad -O0", mg0)):
        ms = [r["timing"]["ms_per_iter"] for r in rs]
        s = max(rs, key=lambda r: r["result"]["working_bytes"])
        r, c = s["result"], compiled(s)
        print(f"{name:32s}: {med(ms):8.1f} ms/iter ({' '.join(f'{x:.1f}' for x in ms)}), working memory "
              f"{mib(r['working_bytes']):7.1f} MiB (arena {mib(c['peak_bytes']):.1f} MiB of {mib(c['naive_bytes']):.1f} naive, "
              f"{c['kernels']} kernels)")
    ratios = [m["timing"]["ms_per_iter"] / t for m, t in zip(mg, torch_ms)]
    ratios0 = [m["timing"]["ms_per_iter"] / m0["timing"]["ms_per_iter"] for m, m0 in zip(mg, mg0)]
    print(f"time:   metagrad/PyTorch = {med(ratios):.2f} (median of per-round ratios {' '.join(f'{x:.2f}' for x in ratios)}; "
          f"target <= 0.5); -O1/-O0 = {med(ratios0):.2f}")
    mem = max(r["result"]["working_bytes"] for r in mg) / min(torch_mem)
    print(f"memory: metagrad/PyTorch = {mem:.2f} (target <= 0.5)")


if __name__ == "__main__":
    main()
