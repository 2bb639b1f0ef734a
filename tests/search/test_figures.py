"""The figures of the search reports (issue 17, item 28): what a reader needs is on them."""

from __future__ import annotations

import math

import torch

from vaenas.search.gradient.report import plot_diversity
from vaenas.search.oneshot.report import plot_evolution, plot_refits
from vaenas.search.tabular.report import plot_curves


def _curves(start: float, seeds: int, length: int = 150) -> list[list[float]]:
    generator = torch.Generator().manual_seed(int(start))
    return [(start + torch.rand(length, generator=generator).cumsum(0) * 0.01).cummax(0).values.tolist()
            for _ in range(seeds)]


def test_seeded_evolution_groups_seedings_by_style_and_noise_by_colour_and_marks_the_seeds():
    grouped = {(method, noise): _curves(80 + 10 * noise, 3) for noise in (0.0, 0.5)
               for method in ("evolution_vae_seeds", "evolution_uniform_seeds")}
    axes = plot_curves(grouped, "t", seeds_end=50).axes[0]
    lines = {line.get_label(): line for line in axes.get_lines()}
    assert set(lines) == {"VAE seeds, noise 0 %", "uniform seeds, noise 0 %", "VAE seeds, noise 0.5 %",
                          "uniform seeds, noise 0.5 %", "seeds end (50 queries)"}
    for noise in ("0", "0.5"):
        vae, uniform = lines[f"VAE seeds, noise {noise} %"], lines[f"uniform seeds, noise {noise} %"]
        assert vae.get_color() == uniform.get_color()
        assert vae.get_linestyle() == "-" and uniform.get_linestyle() == "--"
    assert lines["VAE seeds, noise 0 %"].get_color() != lines["VAE seeds, noise 0.5 %"].get_color()
    assert list(lines["seeds end (50 queries)"].get_xdata()) == [50, 50]


def test_anytime_curves_start_on_the_chart():
    grouped = {("random", 0.0): _curves(50, 2), ("vaenas", 0.0): _curves(60, 2)}
    axes = plot_curves(grouped, "t").axes[0]
    bottom, left = axes.get_ylim()[0], axes.get_xlim()[0]
    for line in axes.get_lines():
        x, y = line.get_xdata(), line.get_ydata()
        assert all(value >= bottom for q, value in zip(x, y) if q >= left), line.get_label()
    assert {line.get_label() for line in axes.get_lines()} == {"random search", "VAENAS loop"}


def test_evolution_has_whole_generations_and_the_held_out_uncertainty():
    summary = {"holdout_images": 200, "evolutions": {"vae": {"curve": [80.0, 82.5, 83.0]},
                                                      "uniform": {"curve": [79.0, 80.0, 81.5]}}}
    figure = plot_evolution(summary)
    axes = figure.axes[0]
    figure.canvas.draw()
    assert all(float(tick).is_integer() for tick in axes.get_xticks())
    bands = axes.collections
    assert len(bands) == 2  # one band per seeding
    top = max(path.vertices[:, 1].max() for band in bands for path in band.get_paths())
    assert math.isclose(top, 83.0 + 100 * math.sqrt(0.83 * 0.17 / 200), rel_tol=1e-6)
    assert "200 held-out images" in axes.get_title()


def test_refits_say_why_vae_samples_score_higher():
    figure = plot_refits([{"step": 50, "vae_mean": 60.0, "uniform_mean": 50.0, "vae_max": 70.0, "uniform_max": 65.0}])
    assert any("supernet trains mostly on them" in text.get_text() for text in figure.texts)


def test_diversity_labels_the_maximum_and_the_short_window(tmp_path):
    curve = [{"step": s, "entropy": 2.0 - s / 100, "path_entropy": 1.5, "distinct": s} for s in (10, 50, 100)]
    figure = plot_diversity(tmp_path / "d.png", {"vae": curve}, max_entropy=2.079)
    middle = figure.axes[1]
    assert "maximum: uniform over each position" in [line.get_label() for line in middle.get_lines()]
    assert "all of them before step 50" in middle.get_title()
    assert (tmp_path / "d.png").is_file()
