"""Draw the benchmark figures in docs/img/ from the JSON results of the bench scripts.

    python bench/plot_results.py                      # the latest results of each bench
    python bench/plot_results.py --core bench/results/core-20261126-175156.json

Needs matplotlib (``pip install -e ".[bench]"``). The PNGs are committed with the docs;
run this again after a new benchmark run to refresh them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
OUT = ROOT / "docs" / "img"

LABELS = {
    "raw": "(a) raw ASGI",
    "channels": "(b) Channels\nconsumer + group",
    "durable": "(c) DurableConsumer\n(hibernated)",
    "raw_routed": "(a') raw ASGI\nbehind URLRouter",
    "durable_direct": "(c') Durable\nno router",
}
COLORS = {
    "raw": "#7f8c8d",
    "channels": "#c0392b",
    "durable": "#16a085",
    "raw_routed": "#bdc3c7",
    "durable_direct": "#76d7c4",
}


def latest(pattern: str) -> Path | None:
    found = sorted(p for p in RESULTS.glob(pattern) if "latest" not in p.name)
    return found[-1] if found else None


def plot_core(path: Path) -> list[Path]:
    data = json.loads(path.read_text())
    variants = data["variants"]
    names = [
        n for n in ("raw", "channels", "durable", "raw_routed", "durable_direct") if n in variants
    ]
    sockets = data["args"].get("sockets", 2000)
    written = []

    fig, ax = plt.subplots(figsize=(7.5, 3.8), dpi=120)
    kib = [variants[n]["memory"]["per_socket_kib"] for n in names]
    bars = ax.bar([LABELS[n] for n in names], kib, color=[COLORS[n] for n in names])
    floor = variants["raw"]["memory"]["per_socket_kib"]
    ax.axhline(
        floor * 1.1,
        color="#16a085",
        linestyle="--",
        linewidth=1,
        label="target for (c): 1.1 x (a)",
    )
    ax.legend(loc="upper right", fontsize=8)
    for bar, value in zip(bars, kib, strict=True):
        ax.text(
            bar.get_x() + bar.get_width() / 2,
            value,
            f"{value:.1f}\n{value / floor:.2f}x",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_ylabel("KiB per idle socket (RSS)")
    ax.set_ylim(0, max(kib) * 1.3)
    ax.set_title(
        f"Memory per idle WebSocket, {sockets:,} sockets on one daphne process", fontsize=10
    )
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    out = OUT / "bench-memory.png"
    fig.savefig(out)
    plt.close(fig)
    written.append(out)

    fig, ax = plt.subplots(figsize=(7.5, 3.8), dpi=120)
    shown = [n for n in names if variants[n].get("broadcast")]
    med = [variants[n]["broadcast"]["median_ms"] for n in shown]
    p90 = [variants[n]["broadcast"]["p90_ms"] for n in shown]
    bars = ax.bar(
        [LABELS[n] for n in shown],
        med,
        color=[COLORS[n] for n in shown],
        yerr=[[0] * len(shown), [h - m for m, h in zip(med, p90, strict=True)]],
        capsize=3,
        error_kw={"elinewidth": 0.8},
    )
    for bar, value in zip(bars, med, strict=True):
        ax.text(
            bar.get_x() + bar.get_width() / 2,
            value,
            f"{value:.0f} ms",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_ylabel("ms, trigger to last client\n(bar: median, whisker: p90)")
    ax.set_title(f"Broadcast of one message to {sockets:,} sockets", fontsize=10)
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    out = OUT / "bench-broadcast.png"
    fig.savefig(out)
    plt.close(fig)
    written.append(out)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--core", type=Path, default=None, help="core_bench.py results JSON")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    core = (args.core or latest("core-*.json") or Path()).resolve()
    if not core.is_file():
        raise SystemExit("no core results: run python bench/core_bench.py first")
    for path in plot_core(core):
        print(f"wrote {path.relative_to(ROOT)} from {core.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
