"""One PNG of fan-out figures, for `homestream bench fanout --plot` and `loadtest/compare.py --plot`: delivery
latency percentiles (left) and server CPU-seconds per million deliveries (right), one bar colour per target.

matplotlib is imported only here and only when a plot is asked for (it is in the `loadtest` extra); without
it the caller gets a one-line reason from require_matplotlib() before any work starts.
"""

from __future__ import annotations

PERCENTILES = ("p50", "p90", "p99", "p999", "max")


def require_matplotlib() -> str | None:
    """None when matplotlib can be imported, else what to install."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "matplotlib is not installed: pip install matplotlib (or the loadtest extra: pip install '.[loadtest]')"
    return None


def fanout_plot(path: str, series: dict[str, dict], title: str) -> str:
    """Write the PNG to `path`. `series`: target name -> {"latency_ms": {percentile: ms},
    "cpu_s_per_million": {scenario: CPU-s}}; missing figures are left out. Returns `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    names = list(series)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.8 / max(1, len(names))
    pcts = [p for p in PERCENTILES if any(p in series[n].get("latency_ms", {}) for n in names)]
    for i, name in enumerate(names):
        lat = series[name].get("latency_ms", {})
        xs = [j + i * width for j, p in enumerate(pcts) if p in lat]
        bars = left.bar(xs, [lat[p] for p in pcts if p in lat], width, label=name)
        left.bar_label(bars, labels=[_label(b.get_height()) for b in bars], fontsize=6, rotation=90, padding=2)
    left.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(pcts))])
    left.set_xticklabels(["p99.9" if p == "p999" else p for p in pcts])
    left.set_ylabel("delivery latency (ms)")
    left.set_title("steady: latency percentiles")
    scenarios = sorted({s for n in names for s in series[n].get("cpu_s_per_million", {})})
    for i, name in enumerate(names):
        cpu = series[name].get("cpu_s_per_million", {})
        xs = [j + i * width for j, s in enumerate(scenarios) if s in cpu]
        bars = right.bar(xs, [cpu[s] for s in scenarios if s in cpu], width, label=name)
        right.bar_label(bars, labels=[_label(b.get_height()) for b in bars], fontsize=6, rotation=90, padding=2)
    right.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(scenarios))])
    right.set_xticklabels(scenarios)
    right.set_ylabel("server CPU-s per million deliveries")
    right.set_title("CPU per delivery (lower is better)")
    for ax in (left, right):
        ax.grid(axis="y", alpha=0.3)
        values = [b.get_height() for b in ax.patches if b.get_height() > 0]
        if values and max(values) / min(values) > 30:  # peers far apart: a log axis keeps every bar readable
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(base=10))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.set_ylim(top=max(values) * 8)
        elif values:
            ax.set_ylim(0, max(values) * 1.25)
    handles, labels = right.get_legend_handles_labels() or left.get_legend_handles_labels()
    if not handles:
        handles, labels = left.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=len(names), frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _label(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
