#!/usr/bin/env bash
# The schedule search on 1 rank and then on 2 ranks (--threads 1 each, the same seed and
# settings): the best configuration, its test accuracy beside the best constant rate and the best
# hypergradient configuration, whether the two runs agree, and their wall and CPU time.
# Usage: bench/dist/search.sh [build/metagrad] [output folder] [extra schedule-search flags...]
set -euo pipefail
bin=${1:-build/metagrad}
out=${2:-$(mktemp -d)}
shift $(( $# < 2 ? $# : 2 ))
mkdir -p "$out"
mpirun=(mpirun --oversubscribe -np 2)
[[ $(id -u) == 0 ]] && mpirun=(mpirun --allow-run-as-root --oversubscribe -np 2)
a="bench schedule-search --max-train 12000 --val 2000 --configs 9 --eta 3 --min-epochs 1 --max-epochs 3 --threads 1 --quiet $*"
export OMP_WAIT_POLICY=passive
nice "$bin" $a --json "$out/search.1.json" >/dev/null
nice "${mpirun[@]}" "$bin" $a --json "$out/search.2.json" >/dev/null
python3 - "$out/search.1.json" "$out/search.2.json" <<'PY'
import json, sys
one, two = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
r = one["result"]
print(f"{r['train_images']} training / {r['val_images']} validation / {r['test_images']} test images; "
      f"rungs: " + ", ".join(f"{len(g['configs'])} x {g['epochs']} epochs" for g in r["rungs"]))
print("| role | configuration | rung reached | validation loss | validation accuracy | test accuracy |")
print("| --- | --- | --- | --- | --- | --- |")
for role in ("best", "best_constant", "best_hypergradient"):
    if role in r:
        x = r[role]
        print(f"| {role} | {x['config']} | {x['rung'] + 1} | {x['val_loss']:.4f} | {100 * x['val_accuracy']:.2f}% | "
              f"{100 * x['test_accuracy']:.2f}% |")
# result.compile holds each run's compile time, and the 2-rank step is compiled for its share.
same = {k: v for k, v in one["result"].items() if k != "compile"} == {k: v for k, v in two["result"].items() if k != "compile"}
print(f"results of 1 and 2 ranks identical: {same}")
t1, t2 = one["timing"], two["timing"]
print(f"wall: 1 rank {t1['seconds']:.1f} s, 2 ranks {t2['seconds']:.1f} s ({t1['seconds'] / t2['seconds']:.2f}x); "
      f"CPU of rank 0: {t1['cpu_seconds']:.1f} s, {t2['cpu_seconds']:.1f} s ({t1['cpu_seconds'] / t2['cpu_seconds']:.2f}x less work)")
print("rung seconds, 1 rank:", " ".join(f"{s:.1f}" for s in t1["rung_seconds"]),
      "| 2 ranks:", " ".join(f"{s:.1f}" for s in t2["rung_seconds"]))
PY
