#!/usr/bin/env bash
# Stress the 2-process shutdown (issue 11): run `torchrun --nproc-per-node 2 -m vaenas.search` N
# times, each in a fresh folder, and count the runs that failed: a non-zero exit status, or no
# results.md in the run folder.
#
#   scripts/stress_torchrun.sh N [key=value ...]
#
# The study is small (2 seeds, small budgets: about 10 s a run on 2 CPU cores) because what is
# stressed is the end of the job (gather, rank 0 writing, leaving the process group, interpreter
# exit), not the search; extra key=value arguments are appended (they override the small config).
# Logs of failed runs are kept under $STRESS_LOGS (default: a temporary folder), with the exit
# status and stderr of both ranks. Exit status: 0 when every run succeeded, 1 otherwise.
#
# STRESS_CPUS=0 pins the whole job to CPU 0 (taskset): the ranks' threads then preempt each other
# far more often, which is what exposed the exit race of issue 11 at a measurable rate.
set -uo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
N="${1:?usage: scripts/stress_torchrun.sh N [key=value ...]}"
shift
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
PIN=()
if [ -n "${STRESS_CPUS:-}" ]; then
    PIN=(taskset -c "$STRESS_CPUS")
fi
LOGS="${STRESS_LOGS:-$(mktemp -d -t stress_torchrun.XXXXXX)}"
mkdir -p "$LOGS"
SMALL=(study.seeds=2 progress=false study.n_train=100 study.histogram_samples=100
       evolution.budget=60 anytime.budget=60 "anytime.report_at=[10,60]" vae.n_iters=20)

failures=0
for i in $(seq 1 "$N"); do
    work="$(mktemp -d -t stress_run.XXXXXX)"
    start=$SECONDS
    # a free port per run (the default 29500 may be held by another job or a leftover rank)
    port="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    (cd "$work" && PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "${PIN[@]}" "$PYTHON" -m torch.distributed.run \
        --nproc-per-node 2 --master-port "$port" -m vaenas.search "${SMALL[@]}" "$@" --out "$work/run") \
        > "$work/stdout.log" 2> "$work/stderr.log"
    status=$?
    if [ "$status" -ne 0 ] || [ ! -f "$work/run/results.md" ]; then
        failures=$((failures + 1))
        mkdir -p "$LOGS/run-$i"
        cp "$work"/*.log "$LOGS/run-$i/"
        echo "run $i: FAILED (exit $status, $((SECONDS - start)) s): $(grep -m1 -E 'terminate|Error|error|SIG' "$work/stderr.log")"
    else
        echo "run $i: ok ($((SECONDS - start)) s)"
    fi
    rm -rf "$work"
done
echo "stress_torchrun: $failures failed of $N runs${STRESS_CPUS:+ pinned to CPU $STRESS_CPUS} (logs of failures: $LOGS)"
[ "$failures" -eq 0 ]
