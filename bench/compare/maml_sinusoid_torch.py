#!/usr/bin/env python3
"""MAML sinusoid meta-step, PyTorch versus metagrad, side by side in one run.

The PyTorch step is the same computation metagrad compiles: meta-batch 25, K=10 support and 10
query points, a 1-40-40-1 ReLU MLP, one inner SGD step of 0.01 with create_graph=True (second
order), Adam at 1e-3 on the query loss. Both sides time whole iterations, task sampling included.

Usage: /usr/bin/python3 bench/compare/maml_sinusoid_torch.py [--metagrad build/metagrad] [--iters 1000]
(needs Debian's python3-torch: tools/install-deps.sh --bench)
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch


def sample(rng, tasks, shots, query):
    amp = rng.uniform(0.1, 5.0, size=(tasks, 1, 1))
    phase = rng.uniform(0.0, math.pi, size=(tasks, 1, 1))
    xs = rng.uniform(-5, 5, size=(tasks, shots, 1))
    xq = rng.uniform(-5, 5, size=(tasks, query, 1))
    f = lambda x: amp * np.sin(x - phase)
    t = lambda a: torch.from_numpy(a.astype(np.float32))
    return t(xs), t(f(xs)), t(xq), t(f(xq))


def forward(x, w):
    h = torch.relu(torch.matmul(x, w[0]) + w[1])
    h = torch.relu(torch.matmul(h, w[2]) + w[3])
    return torch.matmul(h, w[4]) + w[5]


def torch_ms_per_iter(iters, warmup, first_order, batched):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    shapes = [(1, 40), (1, 40), (40, 40), (1, 40), (40, 1), (1, 1)]
    params = [(torch.randn(*s) * 0.01 if i % 2 == 0 else torch.zeros(*s)).requires_grad_() for i, s in enumerate(shapes)]
    opt = torch.optim.Adam(params, lr=1e-3)

    def step_batched():
        xs, ys, xq, yq = sample(rng, 25, 10, 10)
        # Per-task copies so each task takes its own inner step, as in metagrad's batched graph.
        fast = [p.unsqueeze(0).expand(25, *p.shape) for p in params]
        inner = ((forward(xs, fast) - ys) ** 2).mean(dim=(1, 2)).sum()
        grads = torch.autograd.grad(inner, fast, create_graph=not first_order)
        fast = [w - 0.01 * g for w, g in zip(fast, grads)]
        loss = ((forward(xq, fast) - yq) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    def step_loop():
        # The usual way MAML is written in PyTorch (Finn's reference port, higher, learn2learn):
        # one task at a time, each adapting its own functional copy of the weights.
        xs, ys, xq, yq = sample(rng, 25, 10, 10)
        opt.zero_grad()
        total = 0.0
        for t in range(25):
            inner = ((forward(xs[t], params) - ys[t]) ** 2).mean()
            grads = torch.autograd.grad(inner, params, create_graph=not first_order)
            fast = [w - 0.01 * g for w, g in zip(params, grads)]
            total = total + ((forward(xq[t], fast) - yq[t]) ** 2).mean()
        loss = total / 25
        loss.backward()
        opt.step()
        return loss

    step = step_batched if batched else step_loop

    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    return 1e3 * (time.perf_counter() - t0) / iters


def metagrad_ms_per_iter(binary, iters, first_order):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "r.json")
        cmd = [binary, "bench", "sinusoid", "--iters", str(iters), "--eval-tasks", "100", "--quiet", "--json", out,
               "--algo", "fomaml" if first_order else "maml"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        with open(out) as f:
            return json.load(f)["timing"]["ms_per_iter"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--metagrad", default="build/metagrad", help="path of the metagrad binary")
    ap.add_argument("--iters", type=int, default=1000, help="timed PyTorch iterations")
    ap.add_argument("--metagrad-iters", type=int, default=20000, help="metagrad iterations")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--first-order", action="store_true")
    a = ap.parse_args()
    if not os.path.exists(a.metagrad):
        sys.exit(f"metagrad binary not found at {a.metagrad}; build it first (see README)")
    torch.set_num_threads(a.threads)
    os.environ["OMP_NUM_THREADS"] = str(a.threads)
    loop = torch_ms_per_iter(a.iters, 20, a.first_order, batched=False)
    batched = torch_ms_per_iter(a.iters, 20, a.first_order, batched=True)
    mg = metagrad_ms_per_iter(a.metagrad, a.metagrad_iters, a.first_order)
    order = "first" if a.first_order else "second"
    print(f"MAML sinusoid meta-step ({order} order, meta-batch 25, K=10, 1 inner step), {a.threads} threads")
    print(f"  PyTorch {torch.__version__}, task loop: {loop:8.3f} ms per meta-iteration")
    print(f"  PyTorch {torch.__version__}, batched:   {batched:8.3f} ms per meta-iteration")
    print(f"  metagrad:                   {mg:8.3f} ms per meta-iteration")
    print(f"  speed-up over the task loop: {loop / mg:.1f}x; over batched PyTorch: {batched / mg:.1f}x")


if __name__ == "__main__":
    main()
