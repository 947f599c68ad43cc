"""A study's outputs: ``study.csv`` (one row per run), ``study.md`` (per-variant statistics) and
``study.png`` (mAP per variant with error bars)."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from yolo11_lightning.study.runner import variant_label
from yolo11_lightning.study.stats import Comparison, mean, std, welch_t_test

CSV_COLUMNS = (
    "variant", "seed", "params", "gflops", "map50_95", "map50", "epochs", "seconds", "latency_ms", "latency_imgsz",
    "device",
)  # fmt: skip


@dataclass(frozen=True)
class VariantSummary:
    """One variant's figures over its seeds.

    Attributes:
        label: Variant name (config file stem).
        seeds: Seeds of its finished runs.
        map50_95: Per-seed mAP50-95, in seed order.
        map50: Per-seed mAP50.
        params: Parameter count.
        gflops: GFLOPs at 640.
        latency_ms: Median of the runs' latencies.
        vs_first_map50_95: Welch's test against the first variant (``None`` for the first).
        vs_first_map50: The same for mAP50.
    """

    label: str
    seeds: list[int]
    map50_95: list[float]
    map50: list[float]
    params: int
    gflops: float
    latency_ms: float
    vs_first_map50_95: Comparison | None
    vs_first_map50: Comparison | None


def summarise(rows: Sequence[dict], variants: Sequence[str]) -> list[VariantSummary]:
    """Group the result rows by variant (in the given order) and compare each with the first."""
    summaries: list[VariantSummary] = []
    baseline: tuple[list[float], list[float]] | None = None
    for variant in variants:
        own = sorted((r for r in rows if r["variant"] == variant), key=lambda r: r["seed"])
        if not own:
            continue
        m5095, m50 = [float(r["map50_95"]) for r in own], [float(r["map50"]) for r in own]
        latencies = sorted(float(r.get("latency_ms", math.nan)) for r in own)
        first = baseline is None
        if first:
            baseline = (m5095, m50)
        summaries.append(
            VariantSummary(
                label=variant_label(variant),
                seeds=[int(r["seed"]) for r in own],
                map50_95=m5095,
                map50=m50,
                params=int(own[0]["params"]),
                gflops=float(own[0]["gflops"]),
                latency_ms=latencies[len(latencies) // 2],
                vs_first_map50_95=None if first else welch_t_test(baseline[0], m5095),  # type: ignore[index]
                vs_first_map50=None if first else welch_t_test(baseline[1], m50),  # type: ignore[index]
            )
        )
    return summaries


def write_csv(rows: Sequence[dict], path: Path) -> None:
    """One row per run with :data:`CSV_COLUMNS`."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: row.get(key, "") for key in CSV_COLUMNS})


def _pm(values: Sequence[float], scale: float = 100.0) -> str:
    spread = std(values)
    return (
        f"{mean(values) * scale:.2f} ± {spread * scale:.2f}"
        if not math.isnan(spread)
        else f"{mean(values) * scale:.2f}"
    )


def _delta(comparison: Comparison | None, scale: float = 100.0) -> tuple[str, str]:
    if comparison is None:
        return "(reference)", ""
    if math.isnan(comparison.ci_low):
        return f"{comparison.difference * scale:+.2f} [n/a]", "n/a"
    interval = f"[{comparison.ci_low * scale:+.2f}, {comparison.ci_high * scale:+.2f}]"
    return f"{comparison.difference * scale:+.2f} {interval}", f"{comparison.p_value:.3f}"


def markdown(summaries: Sequence[VariantSummary], title: str = "Study") -> str:
    """The per-variant table and how to read it."""
    first = summaries[0].label if summaries else "-"
    lines = [
        f"# {title}",
        "",
        (
            f"mAP in points (x100), mean ± sample std over seeds. Δ: difference of the means to **{first}** with "
            "its 95% confidence interval and the two-sided p-value of Welch's t-test (independent runs, unequal "
            "variances; see `yolo11_lightning/study/stats.py` for why). A gain whose interval contains 0 is not "
            "established by these runs."
        ),
        "",
        (
            "| variant | seeds | mAP50-95 | Δ mAP50-95 [95% CI] | p | mAP50 | Δ mAP50 [95% CI] | p | params | GFLOPs "
            "| latency ms |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        d5095, p5095 = _delta(s.vs_first_map50_95)
        d50, p50 = _delta(s.vs_first_map50)
        lines.append(
            f"| {s.label} | {len(s.seeds)} | {_pm(s.map50_95)} | {d5095} | {p5095} | {_pm(s.map50)} | {d50} | {p50} | "
            f"{s.params:,} | {s.gflops:.1f} | {s.latency_ms:.1f} |"
        )
    lines += ["", "Per seed (mAP50-95 x100): " + "; ".join(
        f"{s.label}: " + ", ".join(f"{v * 100:.2f}" for v in s.map50_95) for s in summaries
    ), ""]  # fmt: skip
    return "\n".join(lines)


def plot(summaries: Sequence[VariantSummary], path: Path) -> None:
    """mAP50-95 and mAP50 per variant: mean ± std as error bars, each seed as a dot beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [s.label for s in summaries]
    figure, axes = plt.subplots(1, 2, figsize=(max(8.0, 2.0 * len(labels) + 3), 4.5), constrained_layout=True)
    figure.suptitle(f"{len(summaries)} variants: red squares mean ± std over seeds, dark dots single seeds")
    for axis, name, values in (
        (axes[0], "mAP50-95", [s.map50_95 for s in summaries]),
        (axes[1], "mAP50", [s.map50 for s in summaries]),
    ):
        means = [mean(v) * 100 for v in values]
        errors = [0.0 if math.isnan(std(v)) else std(v) * 100 for v in values]
        positions = range(len(labels))
        axis.errorbar(
            positions, means, yerr=errors, fmt="s", color="#c0392b", capsize=8, markersize=8, label="mean ± std"
        )
        for x, seeds in zip(positions, values):
            axis.scatter([x + 0.18] * len(seeds), [v * 100 for v in seeds], color="#2c3e50", s=22, label=None)
        axis.set_xlim(-0.6, len(labels) - 0.4)
        axis.set_xticks(list(positions), labels, rotation=20, ha="right")
        axis.set_ylabel(f"{name} (x100)")
        axis.set_title(name)
        low = min(min(v) for v in values) * 100
        high = max(max(v) for v in values) * 100
        margin = max((high - low) * 0.5, 1.0)
        axis.set_ylim(max(0.0, low - margin), high + margin)
        axis.grid(axis="y", alpha=0.3)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_reports(rows: Sequence[dict], variants: Sequence[str], out: Path) -> list[VariantSummary]:
    """Write ``study.csv``, ``study.md`` and ``study.png`` into ``out``; return the summaries."""
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "study.csv")
    summaries = summarise(rows, variants)
    (out / "study.md").write_text(markdown(summaries) + "\n")
    if summaries:
        plot(summaries, out / "study.png")
    return summaries
