#!/usr/bin/env python3
"""LeNet-5 with Adam on Fashion-MNIST: epoch time of PyTorch versus metagrad, in one run.

The PyTorch model is the one `metagrad bench fashion-mnist --model lenet5` compiles: conv 5x5 (6,
padding 2) + ReLU + 2x2 max pool, conv 5x5 (16) + ReLU + 2x2 max pool, linear 400-120-84-10 with
ReLU, inputs standardised by the training set's mean and standard deviation, cross-entropy, Adam
(lr 1e-3), batch 64, shuffled each epoch, the last partial batch dropped. Both read the same IDX
files of Debian's dataset-fashion-mnist. Each side trains for --epochs epochs and reports the
time of its training steps per epoch (data shuffling and batch copies included, evaluation
excluded) and the test accuracy after the last epoch.

Usage: /usr/bin/python3 bench/compare/fashion_mnist_torch.py [--metagrad build/metagrad] [--epochs 2] [--threads 2]
(needs Debian's python3-torch: tools/install-deps.sh --bench)
"""
import argparse
import gzip
import json
import os
import subprocess
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

DATA = "/usr/share/datasets/fashion-mnist"


def idx(path):
    with gzip.open(path, "rb") as f:
        b = f.read()
    dims = b[3]
    shape = [int.from_bytes(b[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(b, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def lenet():
    torch.manual_seed(1)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(6, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(400, 120), torch.nn.ReLU(), torch.nn.Linear(120, 84), torch.nn.ReLU(),
        torch.nn.Linear(84, 10))


def torch_run(epochs, batch):
    xtr = torch.from_numpy(idx(f"{DATA}/train-images-idx3-ubyte.gz").astype(np.float32) / 255.0).unsqueeze(1)
    ytr = torch.from_numpy(idx(f"{DATA}/train-labels-idx1-ubyte.gz").astype(np.int64))
    xte = torch.from_numpy(idx(f"{DATA}/t10k-images-idx3-ubyte.gz").astype(np.float32) / 255.0).unsqueeze(1)
    yte = torch.from_numpy(idx(f"{DATA}/t10k-labels-idx1-ubyte.gz").astype(np.int64))
    mean, std = xtr.mean().item(), xtr.std().item()
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    model = lenet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    times = []
    steps = len(xtr) // batch
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(len(xtr), generator=g)
        for s in range(steps):
            idxs = perm[s * batch:(s + 1) * batch]
            loss = F.cross_entropy(model(xtr[idxs]), ytr[idxs])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).float().mean().item()
    return times, acc


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--metagrad", default="build/metagrad")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t_times, t_acc = torch_run(a.epochs, a.batch)
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "m.json")
        subprocess.run([a.metagrad, "bench", "fashion-mnist", "--model", "lenet5", "--optimizer", "adam", "--lr", "1e-3",
                        "--epochs", str(a.epochs), "--batch", str(a.batch), "--threads", str(a.threads), "--quiet",
                        "--json", out], check=True, stdout=subprocess.DEVNULL)
        m = json.load(open(out))
    m_times = [e["seconds"] for e in m["result"]["epochs"]]
    t_ep, m_ep = min(t_times), min(m_times)  # best epoch of each: the least disturbed by other load
    print(f"LeNet-5 + Adam, batch {a.batch}, {a.threads} threads, {a.epochs} epochs each")
    print(f"PyTorch {torch.__version__}: {t_ep:.2f} s per epoch (epochs: {', '.join(f'{t:.2f}' for t in t_times)}), "
          f"test accuracy {t_acc:.4f}")
    print(f"metagrad: {m_ep:.2f} s per epoch (epochs: {', '.join(f'{t:.2f}' for t in m_times)}), "
          f"test accuracy {m['result']['epochs'][-1]['test_accuracy']:.4f}")
    print(f"speed-up: {t_ep / m_ep:.2f}x")


if __name__ == "__main__":
    main()
