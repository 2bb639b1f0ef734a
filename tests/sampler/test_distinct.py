"""draw_new: distinct new rows of a sampler, repeats redrawn hotter (the tabular loop's rounds and
the one-shot search's seeds)."""

from __future__ import annotations

import torch

from vaenas.sampler import draw_new, first_new
from vaenas.spaces import get_space


def test_first_new_keeps_first_occurrences_not_seen_up_to_the_limit():
    archs = torch.tensor([[1], [2], [1], [3], [4], [5]])
    keys = [tuple(row) for row in archs.tolist()]
    assert first_new(archs, keys, {(3,)}, 3).tolist() == [[1], [2], [4]]
    assert first_new(archs, keys, (), 0).shape == (0, 1)


def test_draw_new_redraws_hotter_until_enough_are_new():
    space = get_space("nasbench201")
    pool = space.sample(3, torch.Generator().manual_seed(0))
    calls = []

    def sample(m: int, temperature: float) -> torch.Tensor:
        """A sampler that repeats 3 architectures until it is hot (temperature > 1.5)."""
        calls.append((m, temperature))
        if temperature <= 1.5:
            return pool[torch.arange(m) % 3]
        return space.sample(m, torch.Generator().manual_seed(len(calls)))

    seen = set(space.canonical_key(pool[:1]))
    temperatures: list[float] = []
    found = draw_new(sample, 8, space, rounds=8, factor=2, seen=seen, temperature=1.0, growth=1.2,
                     temperatures=temperatures)
    keys = space.canonical_key(found)
    assert len(found) == 8 and len(set(keys)) == 8 and not seen & set(keys)
    assert torch.equal(found[:2], pool[1:])  # the first draw's new rows come first
    assert temperatures == [1.0, 1.2, 1.44, 1.2**3] and [t for _, t in calls] == temperatures
    assert [m for m, _ in calls] == [16, 12, 12, 12]  # factor x still missing


def test_draw_new_stops_after_its_rounds_and_keeps_found_first():
    space = get_space("nasbench201")
    pool = space.sample(2, torch.Generator().manual_seed(0))
    found = draw_new(lambda m, _: pool[:1].expand(m, -1), 5, space, rounds=3, found=pool[1:])
    assert torch.equal(found, torch.stack([pool[1], pool[0]]))
