"""The retraining's command line: one short epoch of each space's child on a generated CIFAR-format set,
with the run folder, the report and its numbers."""

from __future__ import annotations

import json

import pytest
import torch
from retrain_helpers import small_run

from vaenas.runtime import RunFolder, load_checkpoint
from vaenas.spaces import get_space


@pytest.mark.parametrize("space", ["nasbench201", "nasnet", "shufflenet", "nasbench101"])
def test_one_epoch_of_each_space(space, cifar_root, arch_file, retrain, tmp_path):
    out = tmp_path / "run"
    status, stdout, stderr = retrain(*small_run(space, cifar_root, arch_file(space), out))
    assert status == 0, stderr
    results = json.loads((out / "results.json").read_text())
    test = results["results"]["test"]
    assert test["images"] == 30 and 0 <= test["top1"] <= test["top5"] <= 100
    assert results["space"] == space and results["cost"]["params"] > 0 and results["cost"]["flops"] > 0
    report = (out / "report.md").read_text()
    assert f"| test | 30 | {test['top1']:.2f} |" in report and report.strip() in stdout
    records = RunFolder(out).read_metrics()
    epochs = [r for r in records if r["event"] == "epoch"]
    assert len(epochs) == 1 and epochs[0]["step"] == 200 // 40 - (1 if space == "nasbench101" else 0)
    assert [r["step"] for r in records if r["event"] == "train"] == list(range(2, epochs[0]["step"] + 1, 2))
    assert (out / "curves.png").stat().st_size > 1000
    weights = load_checkpoint(out / "model.pt")  # weights_only
    assert set(weights) and all(not key.startswith("auxiliary") for key in weights) == (space != "nasnet")
    saved = json.loads((out / "architecture.json").read_text())
    assert saved["space"] == space and saved["source"].endswith(f"{space}.json")
    config = (out / "config.yaml").read_text()
    assert "method: retrain" in config and "calibration_images" not in config
    # the space's cost model, for the network as trained (its options, 32 px) and deployed (no auxiliary head)
    deployed = {**results["network"], **({"auxiliary": False, "drop_path": False} if space == "nasnet" else {})}
    assert results["cost"] == get_space(space).cost(torch.tensor(results["tokens"]), 32, **deployed)
    trained = sum(tensor.numel() for key, tensor in weights.items() if "running_" not in key and "num_batches" not in key)
    assert (results["cost"]["params"] < trained) == (space == "nasnet")
    if space == "nasbench101":  # 160 training images, 40 held out for validation, as the benchmark's 40k/10k
        assert results["results"]["valid"]["images"] == 40
        truth = results["ground_truth"]
        assert truth["compare_with"] == "valid" and abs(truth["accuracy"] - 93.04888) < 1e-4
        assert "ground truth (NAS-Bench-101" in report
    if space == "nasbench201":
        assert results["ground_truth"]["accuracy"] > 90  # the benchmark's CIFAR-10 test accuracy of the cell
