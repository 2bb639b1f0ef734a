"""scripts/ranking_check.sh end to end on tiny supernets: both methods, every metric, the table."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "supernet.nasbench201.channels=4", "supernet.nasbench201.cells_per_stage=1", "data.image_size=8",
    "data.batch_size=16", "data.calibration_images=16", "train.steps=8", "vaenas.refit_every=4",
    "vaenas.n_samples=4", "vaenas.compare_samples=2", "vaenas.epsilon_inc=0.1", "vae.n_iters=5", "vae.batch_size=8",
    "eval.group_size=8", "search.seeds=3", "search.generations=1", "search.population=3", "search.parents=2",
]


@pytest.mark.slow
def test_ranking_check_reports_both_methods(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(REPO / "scripts" / "ranking_check.sh"), "1", str(tmp_path), *TINY],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "is not the network the ground truth trained" in done.stdout  # a tiny supernet: said so
    records = json.loads((tmp_path / "ranking.json").read_text())
    assert [r["run"] for r in records] == ["spos-0", "vaenas-0"]
    assert set(records[0]) >= {"kendall_tau", "spearman", "top_half_kendall_tau", "precision_at_k", "found_uniform"}
    assert "found_vae" in records[1] and "found_vae" not in records[0]  # SPOS: uniform seeding only
    for record in records:
        assert -1 <= record["kendall_tau"] <= 1 and 0 <= record["precision_at_k"] <= 1
        for key in [k for k in record if k.startswith("found_")]:
            assert 0 <= record[key]["percentile"] <= 100 and not math.isnan(record[key]["true_accuracy"])
    report = (tmp_path / "ranking.md").read_text()
    assert "| spos |" in report and "| vaenas |" in report and "seed-to-seed τ" in report
