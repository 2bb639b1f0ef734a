#!/usr/bin/env bash
# The ranking check of issue 18: SPOS and VAENAS-OS supernets trained with the same budget and
# seed (the packaged oneshot_nb201_digits recipe; SPOS = vaenas.epsilon_inc=0 search.seeding=uniform,
# VAENAS-OS = the recipe, VAE- and uniformly seeded evolution), SEEDS seeds each; then every cell
# of the packaged digits ground truth (vaenas/groundtruth/nb201_digits.csv.gz) scored on each
# final supernet: Kendall τ, Spearman, τ within the true top half, precision@10, and the true
# percentile of the architecture each evolution returns (trained standalone with the table's recipe
# when the table lacks it), mean ± standard error over seeds (scripts/ranking_check.py).
#   scripts/ranking_check.sh [SEEDS] [OUT_DIR] [key=value ...]   (overrides go to both methods)
# e.g. a small run: scripts/ranking_check.sh 2 runs/ranking-small train.steps=600 vaenas.refit_every=100
set -euo pipefail
seeds=${1:-3}
out=${2:-runs/ranking-check}
shift $(( $# < 2 ? $# : 2 ))
python=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$out"
run() {  # name, then overrides
    local name=$1; shift
    if [ -f "$out/$name/architecture.json" ]; then return; fi  # finished before: keep it
    "$python" -m vaenas.search --config oneshot_nb201_digits progress=false "$@" --out "$out/$name" > "$out/$name.log"
    echo "== $name: $(tail -1 "$out/$name.log")"
}
runs=()
for seed in $(seq 0 $((seeds - 1))); do
    run "spos-$seed" run.seed="$seed" vaenas.epsilon_inc=0 search.seeding=uniform "$@"
    run "vaenas-$seed" run.seed="$seed" "$@"
    runs+=("$out/spos-$seed" "$out/vaenas-$seed")
done
"$python" scripts/ranking_check.py "${runs[@]}" --out "$out"
