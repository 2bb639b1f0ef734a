"""data.skip_corrupt in a search run: the skipped files are counted in the log, metrics.jsonl,
architecture.json and the report (the help says "counted"; before, the count appeared nowhere)."""

from __future__ import annotations

import json

from photos import corrupt_jpeg, write_photo_tree

from vaenas.search.oneshot.cli import main


def test_skipped_images_are_logged_counted_and_reported(tmp_path, caplog, one_thread):
    root = write_photo_tree(tmp_path / "tree", per_class={"train": 6, "val": 2}, sizes=(40, 60), odd_formats=False)
    bad = root / "train" / "cls_b" / "img_003.JPEG"
    corrupt_jpeg(bad)
    run = tmp_path / "run"
    caplog.set_level("WARNING")
    assert main([
        "method=oneshot", "progress=false", "data=imagenet", f"data.root={root}", "data.image_size=16",
        "data.skip_corrupt=true", "data.batch_size=4", "data.holdout=4", "data.calibration_images=4",
        "data.eval_batch_size=4", "data.load_test=false", "supernet.nasbench201.channels=2", "supernet.nasbench201.cells_per_stage=1", "train.steps=6",
        "run.log_every=3", "vaenas.refit_every=3", "vaenas.n_samples=2", "vaenas.compare_samples=0",
        "vae.n_iters=2", "vae.batch_size=2", "eval.group_size=2", "search.seeds=2", "search.generations=0",
        "search.population=1", "search.parents=2", "search.seeding=uniform", f"out={run}",
    ]) == 0
    assert "skipped 1 undecodable image file(s) (data.skip_corrupt)" in caplog.text and str(bad) in caplog.text
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped_images"] for r in records if r["kind"] == "train"][-1] == 1
    summary = json.loads((run / "architecture.json").read_text())
    assert summary["skipped_images"] == {"count": 1, "files": [str(bad)]}
    assert "skipped images (data.skip_corrupt): 1 undecodable file(s)" in (run / "report.md").read_text()
