"""Latency tables: each candidate's measured latency in place, an architecture's latency as a sum of lookups.

    python -m vaenas.spaces.latency nasnet --image-size 32 --option C=16 --option layers=8 \\
        --batch-size 1 --threads 1 --check 30 --out latency-nasnet.json

Built like the cost tables (vaenas.spaces.cost_table.TableLayout): for every token a probe child (that
token at every position) runs one batch on the device; forward pre-hooks record every token-dependent
part's inputs, and each part is then timed alone on exactly those inputs (its layer's input shape,
dtype, memory format), median of `repeats` calls after `warmup`; parts with the same structure and input
shapes are timed once. The probe's end-to-end latency minus its parts is its fixed part (stem, head, and
the glue: concatenations, node sums); the table's fixed part is the median over probes. The result is a
CostTable with one column, "latency_ms" (costs, cost, expected as for params and FLOPs).

The JSON file records what it was measured with: the space, the child options, image size, batch size,
device (and its model name), dtype, channels-last, threads, and the software; `load_latency_table`
refuses it (ValueError naming the difference) for any other setting. `--check N` times N random
children end to end and stores the table's mean absolute percentage error and Spearman rank
correlation against them. NAS-Bench-101 has no table (its channels depend on the whole cell).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vaenas.spaces import get_space
from vaenas.spaces.base import SearchSpace
from vaenas.spaces.cost_table import (
    CostTable,
    located_parts,
    settings_key,
    table_layout,
)

LATENCY_KEYS = ("latency_ms",)
FORMAT = "vaenas-latency-table/1"


def device_name(device: torch.device) -> str:
    """The device's model: the GPU's name, or the CPU's model name from /proc/cpuinfo."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(call: Any, device: torch.device, repeats: int, warmup: int) -> float:
    """Median wall milliseconds of call() over `repeats` calls, after `warmup` untimed ones."""
    with torch.no_grad():
        for _ in range(warmup):
            call()
        times = []
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            call()
            _sync(device)
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


class _Setting:
    """What a latency table is measured with: its key fields and how to make a child and a batch."""

    def __init__(self, space: SearchSpace, image_size: int | None, options: dict[str, Any], batch_size: int,
                 device: str, dtype: str, channels_last: bool) -> None:
        self.space, self.options = space, options
        self.key = settings_key(space, image_size, options)
        self.device, self.dtype = torch.device(device), getattr(torch, dtype)
        self.record = {"space": space.name, "image_size": self.key[1], "options": dict(self.key[2]),
                       "batch_size": batch_size, "device": str(self.device), "device_name": device_name(self.device),
                       "dtype": dtype, "channels_last": channels_last, "threads": torch.get_num_threads()}

    def child(self, arch: Tensor) -> nn.Module:
        model = self.space.build_child(arch, **self.options).to(self.device, self.dtype).eval()
        return model.to(memory_format=torch.channels_last) if self.record["channels_last"] else model

    def images(self) -> Tensor:
        size, batch = self.key[1], self.record["batch_size"]
        images = torch.randn(batch, 3, size, size, device=self.device, dtype=self.dtype)
        return images.contiguous(memory_format=torch.channels_last) if self.record["channels_last"] else images


def _part_latencies(model: nn.Module, names: list[str], images: Tensor, setting: _Setting,
                    timed: dict[tuple, float], repeats: int, warmup: int) -> dict[str, float]:
    """{name: ms} of the named parts, each timed alone on the inputs it had in the forward."""
    inputs: dict[str, tuple] = {}
    hooks = [model.get_submodule(name).register_forward_pre_hook(
        lambda _m, args, name=name: inputs.setdefault(name, args)) for name in names]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for hook in hooks:
            hook.remove()
    out = {}
    for name in names:
        module, args = model.get_submodule(name), inputs[name]
        signature = (repr(module), tuple(tuple(a.shape) if isinstance(a, Tensor) else a for a in args))
        if signature not in timed:
            timed[signature] = median_ms(lambda m=module, a=args: m(*a), setting.device, repeats, warmup)
        out[name] = timed[signature]
    return out


def measure_latency_table(space: SearchSpace, image_size: int | None = None, *, batch_size: int = 1,
                          device: str = "cpu", dtype: str = "float32", channels_last: bool = False,
                          repeats: int = 20, warmup: int = 3, **options: Any) -> tuple[CostTable, dict]:
    """(the latency CostTable, its JSON document) of build_child(arch, **options) on `device`; the global
    RNG is left as it was (children and images draw from it)."""
    with torch.random.fork_rng(devices=[]):
        return _measure(space, image_size, batch_size, device, dtype, channels_last, repeats, warmup, options)


def _measure(space: SearchSpace, image_size: int | None, batch_size: int, device: str, dtype: str,
             channels_last: bool, repeats: int, warmup: int, options: dict[str, Any]) -> tuple[CostTable, dict]:
    setting = _Setting(space, image_size, options, batch_size, device, dtype, channels_last)
    layout = table_layout(space, **options)
    choices = torch.zeros(space.length, max(space.vocab_sizes), 1, dtype=torch.float64)
    group_ms = torch.zeros(layout.groups.shape[0], 1, dtype=torch.float64)
    timed: dict[tuple, float] = {}
    fixed = []
    for token, arch in layout.probes.items():
        model, images = setting.child(arch), setting.images()
        named = located_parts(model, layout)
        parts = _part_latencies(model, [name for name, _ in named], images, setting, timed, repeats, warmup)
        group_ms.zero_()
        for name, (kind, index) in named:
            (choices[index, token] if kind == "choice" else group_ms[index]).add_(parts[name])
        fixed.append(median_ms(lambda m=model, x=images: m(x), setting.device, repeats, warmup) - sum(parts.values()))
    table = CostTable(space, setting.key, torch.tensor([statistics.median(fixed)], dtype=torch.float64), choices,
                      layout.groups, group_ms.clone(), getattr(space, "zero_token", None), LATENCY_KEYS)
    document = {"format": FORMAT, "measured_with": setting.record, "software": software(),
                "repeats": repeats, "warmup": warmup, "fixed_ms": float(table.fixed[0]),
                "fixed_ms_per_probe": fixed, "choices_ms": choices[..., 0].tolist(),
                "groups": layout.groups.tolist(), "group_ms": group_ms[:, 0].tolist()}
    return table, document


def software() -> dict[str, str]:
    return {"torch": torch.__version__, "python": platform.python_version(), "cuda": str(torch.version.cuda)}


def load_latency_table(path: str | Path, space: SearchSpace, image_size: int | None = None, *, batch_size: int = 1,
                       device: str = "cpu", dtype: str = "float32", channels_last: bool = False,
                       runtime: bool = True, **options: Any) -> CostTable:
    """The table saved at `path`; ValueError when it was measured with anything else than asked
    (space, options, image size, and with `runtime` batch size, device or its model, dtype, memory
    format, threads). runtime=False: a search that limits the latency of a network deployed
    elsewhere checks only the network (space, options, image size)."""
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read a latency table: {error}") from None
    if document.get("format") != FORMAT:
        raise ValueError(f"{path}: not a vaenas latency table (format {document.get('format')!r})")
    wanted = _Setting(space, image_size, options, batch_size, device, dtype, channels_last).record
    measured = document["measured_with"]
    wanted["options"] = json.loads(json.dumps(wanted["options"]))  # tuples as JSON lists, as saved
    fields = wanted if runtime else {f: wanted[f] for f in ("space", "image_size", "options")}
    for field, value in fields.items():
        if measured.get(field) != value:
            raise ValueError(f"{path}: measured with {field}={measured.get(field)!r}, asked for {field}={value!r}; "
                             "measure a table for this setting (python -m vaenas.spaces.latency)")
    key = settings_key(space, image_size, options)
    choices = torch.tensor(document["choices_ms"], dtype=torch.float64)[..., None]
    return CostTable(space, key, torch.tensor([document["fixed_ms"]], dtype=torch.float64), choices,
                     torch.tensor(document["groups"], dtype=torch.bool).reshape(-1, space.length),
                     torch.tensor(document["group_ms"], dtype=torch.float64)[:, None],
                     getattr(space, "zero_token", None), LATENCY_KEYS)


def _ranks(values: Tensor) -> Tensor:
    return values.argsort().argsort().double()


def check_against_children(table: CostTable, count: int, seed: int = 0, *, batch_size: int = 1, device: str = "cpu",
                           dtype: str = "float32", channels_last: bool = False, repeats: int = 20,
                           warmup: int = 3) -> dict[str, Any]:
    """The table against `count` random children timed end to end: MAPE (%), Spearman's ρ, both lists."""
    space = table.space
    setting = _Setting(space, table.image_size, {k: v for k, v in table.key[2]}, batch_size, device, dtype,
                       channels_last)
    archs = space.sample(count, torch.Generator().manual_seed(seed))
    predicted = table.costs(archs)[:, 0]
    measured = []
    with torch.random.fork_rng(devices=[]):  # children and images draw from the global RNG: leave it as it was
        for arch in archs:
            model, images = setting.child(arch), setting.images()
            measured.append(median_ms(lambda m=model, x=images: m(x), setting.device, repeats, warmup))
    measured = torch.tensor(measured, dtype=torch.float64)
    error = ((predicted - measured).abs() / measured).mean() * 100
    rho = torch.corrcoef(torch.stack([_ranks(predicted), _ranks(measured)]))[0, 1]
    return {"children": count, "mape_percent": float(error), "spearman": float(rho),
            "predicted_ms": predicted.tolist(), "measured_ms": measured.tolist()}


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--option {text!r}: expected KEY=VALUE, e.g. C=16")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vaenas.spaces.latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("space", choices=("nasbench201", "nasnet", "shufflenet"))
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--option", type=_option, action="append", default=[], help="child option KEY=VALUE")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--check", type=int, default=0, help="random children timed end to end (MAPE, ρ)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    space, options = get_space(args.space), dict(args.option)
    runtime = {"batch_size": args.batch_size, "device": args.device, "dtype": args.dtype,
               "channels_last": args.channels_last}
    try:
        table, document = measure_latency_table(space, args.image_size, repeats=args.repeats, warmup=args.warmup,
                                                **runtime, **options)
    except (TypeError, ValueError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    if args.check:
        document["check"] = check_against_children(table, args.check, repeats=args.repeats, warmup=args.warmup,
                                                   **runtime)
        print(f"{args.space}: MAPE {document['check']['mape_percent']:.1f} %, Spearman ρ "
              f"{document['check']['spearman']:.3f} over {args.check} children")
    args.out.write_text(json.dumps(document, indent=1) + "\n")
    print(f"{args.out}: fixed {document['fixed_ms']:.3f} ms; {document['measured_with']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
