"""--resume continues a retraining bit for bit: stopped mid-epoch (run.stop_at), resumed, it ends with the
weights, EMA weights and metrics of a run that never stopped (drop path and dropout draw from the saved
random streams, the loader restarts at its saved position, the partial sums of the epoch are kept)."""

from __future__ import annotations

import json

import torch
from retrain_helpers import small_run

from vaenas.runtime import RunFolder, load_checkpoint

REGULARISED = ["train.epochs=2", "train.drop_path=0.3", "train.auxiliary_weight=0.4", "train.ema_decay=0.9",
               "run.checkpoint_every=3", "run.log_every=2"]
#: fields that measure time, not results
CLOCKS = {"time", "images_per_second"}


def _records(run) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in CLOCKS} for r in RunFolder(run).read_metrics()]


def test_resume_equals_straight(cifar_root, arch_file, retrain, tmp_path):
    arch = arch_file("nasnet")
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    assert retrain(*small_run("nasnet", cifar_root, arch, straight, *REGULARISED))[0] == 0
    status, _, stderr = retrain(*small_run("nasnet", cifar_root, arch, halves, *REGULARISED, "run.stop_at=7"))
    assert status == 0, stderr
    assert not (halves / "model.pt").exists()
    assert [p.name for p in RunFolder(halves).checkpoints()] == ["step-00000006.pt", "step-00000007.pt"]
    saved = load_checkpoint(RunFolder(halves).latest_checkpoint())["state"]
    assert saved["loader"]["epoch"] == 1 and saved["loader"]["batch"] == 2 and saved["step"] == 7
    status, _, stderr = retrain("--resume", halves, "progress=false")
    assert status == 0, stderr
    for name in ("model.pt", "ema.pt"):
        mine, theirs = load_checkpoint(halves / name), load_checkpoint(straight / name)
        assert mine.keys() == theirs.keys()
        for key in mine:
            assert torch.equal(mine[key], theirs[key]), f"{name}: {key} differs"
    assert _records(halves) == _records(straight)
    epochs = [r for r in _records(straight) if r["event"] == "epoch"]
    assert [round(r["drop_path"], 6) for r in epochs] == [0.0, 0.15]  # 0.3 x epoch / epochs, DARTS's schedule
    assert "ema_test_top1" in epochs[-1] and "ema_test" in (straight / "results.json").read_text()
    # the resumed process read the architecture from the run folder's copy, which names the original source
    assert json.loads((halves / "results.json").read_text())["source"] == str(arch)


def test_resume_refuses_a_result_changing_override(cifar_root, arch_file, retrain, tmp_path):
    run = tmp_path / "run"
    assert retrain(*small_run("nasbench201", cifar_root, arch_file("nasbench201"), run, "run.stop_at=2"))[0] == 0
    status, _, stderr = retrain("--resume", run, "train.lr=0.5")
    assert status == 2 and "train.lr would differ from the run's config.yaml" in stderr
    status, _, stderr = retrain("--resume", run, "recipe=digits")
    assert status == 2 and "recipe would differ" in stderr
