#!/usr/bin/env python3
"""Second-order conv-MAML meta-step, PyTorch versus metagrad, side by side in one run.

The PyTorch step is the computation `metagrad bench conv-maml --synthetic` compiles: the 4-block
few-shot network (3x3 conv, 64 filters, no conv bias, batch norm with batch statistics, ReLU,
2x2 max pool; linear head), 5-way 1-shot episodes of random 28x28 images with 15 query images per
class, meta-batch 4, one inner SGD step of 0.4 with create_graph=True (second order), Adam at 1e-3
on the mean query loss. Tasks are looped, as MAML is usually written in PyTorch.

Time: whole meta-iterations after warm-up. Working memory: resident set after the steps minus
after `import torch` (PyTorch) / before the graph is built (metagrad).
Then metagrad runs the same step at -O1 (default) and -O0.

Usage: /usr/bin/python3 bench/conv_maml_torch.py [--metagrad build/metagrad] [--iters 10]
(needs Debian's python3-torch: tools/install-deps.sh --bench)
"""
import argparse
import json
import os
import subprocess
import tempfile
import time


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


def torch_run(iters, warmup, ways=5, shots=1, query=15, tasks=4, inner_lr=0.4):
    w = params(ways)
    opt = torch.optim.Adam(w, lr=1e-3)
    gen = torch.Generator().manual_seed(1)

    def step():
        xs, ys, xq, yq = episodes(gen, tasks, ways, shots, query)
        opt.zero_grad()
        total = 0.0
        for t in range(tasks):
            inner = F.cross_entropy(net(xs[t], w), ys[t])
            g = torch.autograd.grad(inner, w, create_graph=True)
            fast = [p - inner_lr * gi for p, gi in zip(w, g)]
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


def metagrad_run(binary, iters, opt_level):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "out.json")
        subprocess.run([binary, "bench", "conv-maml", "--synthetic", "--iters", str(iters), "--eval-tasks", "0",
                        "--threads", "2", "--opt-level", str(opt_level), "--quiet", "--json", path],
                       check=True, stdout=subprocess.DEVNULL)
        with open(path) as f:
            return json.load(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--metagrad", default="build/metagrad", help="path to the metagrad binary")
    ap.add_argument("--iters", type=int, default=10, help="timed meta-iterations per side")
    ap.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(2)
    ms_torch, mem_torch = torch_run(a.iters, a.warmup)
    mg = metagrad_run(a.metagrad, a.iters + a.warmup, 1)
    mg0 = metagrad_run(a.metagrad, a.iters + a.warmup, 0)
    mib = lambda b: b / 1048576.0
    print(f"PyTorch {torch.__version__} (2 threads, task loop): {ms_torch:8.1f} ms/iter, working memory {mib(mem_torch):7.1f} MiB")
    for name, r in (("metagrad -O1 (default)", mg), ("metagrad -O0", mg0)):
        print(f"{name:32s}: {r['ms_per_meta_iter']:8.1f} ms/iter, working memory {mib(r['working_bytes']):7.1f} MiB "
              f"(arena {mib(r['peak_bytes']):.1f} MiB of {mib(r['naive_bytes']):.1f} naive, {r['kernels']} kernels)")
    print(f"time:   metagrad/PyTorch = {mg['ms_per_meta_iter'] / ms_torch:.2f} (target <= 0.5); "
          f"-O1/-O0 = {mg['ms_per_meta_iter'] / mg0['ms_per_meta_iter']:.2f}")
    print(f"memory: metagrad/PyTorch = {mg['working_bytes'] / mem_torch:.2f} (target <= 0.5)")


if __name__ == "__main__":
    main()
