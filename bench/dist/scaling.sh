#!/usr/bin/env bash
# Throughput of 1 rank against 2 ranks (--threads 1 each) on the same global batch, run side by
# side (alternating, one round each) for conv-MAML, Omniglot prototypical networks and LeNet-5 on
# Fashion-MNIST; prints ms per step and the allreduce cost per step from the JSON summaries.
# Usage: bench/dist/scaling.sh [build/metagrad] [output folder]
set -euo pipefail
bin=${1:-build/metagrad}
out=${2:-$(mktemp -d)}
mkdir -p "$out"
mpirun=(mpirun --oversubscribe -np 2)
[[ $(id -u) == 0 ]] && mpirun=(mpirun --allow-run-as-root --oversubscribe -np 2)
declare -A args=(
  [conv]="bench conv-maml --synthetic --iters 12 --eval-tasks 4"
  [protonet]="bench omniglot --algo protonet --iters 20 --eval-episodes 4"
  [lenet5]="bench fashion-mnist --model lenet5 --epochs 1 --max-train 6400 --batch 64"
)
for w in conv protonet lenet5; do
  a="${args[$w]} --threads 1 --quiet"
  nice "$bin" $a --json "$out/$w.1.json" >/dev/null
  nice "${mpirun[@]}" "$bin" $a --json "$out/$w.2.json" >/dev/null
  python3 - "$w" "$out/$w.1.json" "$out/$w.2.json" <<'PY'
import json, sys
w, one, two = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
t1, t2 = one["timing"]["ms_per_iter"], two["timing"]["ms_per_iter"]
c1, c2 = one["timing"]["cpu_ms_per_iter"], two["timing"]["cpu_ms_per_iter"]
d = two["distributed"]
print(f"{w}: wall 1 rank {t1:.1f} ms/step, 2 ranks {t2:.1f} ms/step, speed-up {t1 / t2:.2f}x; "
      f"CPU per step 1 rank {c1:.1f} ms, 2 ranks {c2:.1f} ms on rank 0 ({c1 / c2:.2f}x less work per rank); "
      f"allreduce per step {d['allreduce_calls_per_step']:g} calls, {d['allreduce_bytes_per_step']:.0f} bytes, "
      f"{d['allreduce_ms_per_step']:.2f} ms ({100 * d['allreduce_ms_per_step'] / t2:.1f}% of the 2-rank step)")
PY
done
