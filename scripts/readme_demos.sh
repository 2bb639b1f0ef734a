#!/usr/bin/env bash
# Regenerates the demo outputs the README prints: the one-shot demo (and its SPOS baseline), the
# gradient demo (VAENAS-G and ProxylessNAS), and search -> retrain on the digits. Each run's report
# and wall time are printed; the run folders land in runs/readme-demos/ (removed first).
#   scripts/readme_demos.sh [python]      # default: .venv/bin/python
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-.venv/bin/python}
out=runs/readme-demos
rm -rf "$out"
mkdir -p "$out"

demo() {  # demo NAME COMMAND...: run it, time it, print its report
    local name=$1
    shift
    local started=$SECONDS
    "$@" --out "$out/$name" progress=false > "$out/$name.log" 2>&1
    echo "=== $name: $((SECONDS - started)) s wall ($*)"
    cat "$out/$name/report.md"
    echo
}

demo oneshot "$python" -m vaenas.search method=oneshot space=nasbench201 data=digits
demo spos "$python" -m vaenas.search method=oneshot vaenas.epsilon_inc=0 search.seeding=uniform
demo gradient "$python" -m vaenas.search method=gradient space=nasnet data=digits
demo retrain "$python" -m vaenas.train arch="$out/oneshot" recipe=digits
