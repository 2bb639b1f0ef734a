#!/usr/bin/env bash
# The any-time check of issue 9: the VAENAS loop (packaged defaults) against random search and
# regularized evolution on NB201 CIFAR-10, NB201 CIFAR-100 and NB101-20k, SEEDS seeds each
# (default 20), budget 300, paired by seed. Each results.md has the any-time table with wall time
# per seed, the paired differences and where the loop's queries went. Two processes share the seeds.
#   scripts/anytime_check.sh [SEEDS] [OUT_DIR]
set -euo pipefail
seeds=${1:-20}
out=${2:-runs/anytime-check}
python=${PYTHON:-python}
common=(study.enabled=false "anytime.methods=[random,regularized_evolution,vaenas]" anytime.budget=300
        "anytime.report_at=[25,50,100,200,300]" "study.seeds=$seeds" progress=false)
run() {  # name, then config arguments
    local name=$1; shift
    "$python" -m torch.distributed.run --standalone --nproc-per-node 2 -m vaenas.search "$@" "${common[@]}" \
        --out "$out/$name" > /dev/null
    echo "== $name"; sed -n '/^## Any-time/,$p' "$out/$name/results.md"
}
run nb201-cifar10
run nb201-cifar100 benchmark.dataset=cifar100
run nb101-20k --config tabular_nb101
