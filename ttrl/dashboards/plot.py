"""``ttrl plot``: TTRL's accuracy curves against model version, as a PNG.

Label accuracy (maj@N against the reference), reward accuracy and pass@1 need problems with
a reference answer; vote share (majority ratio) does not. Label-free RL can "rise then
fall": vote share keeps climbing while accuracy turns down, which this plot makes visible.
matplotlib is the ``ttrl[plot]`` extra and is imported only when a plot is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Connection

from ttrl.dashboards import views

# (column of v_accuracy_by_version, legend label, needs a reference answer)
CURVES = (
    ("label_accuracy", "label accuracy (maj@N)", True),
    ("reward_accuracy", "reward accuracy", True),
    ("pass_at_1", "pass@1", True),
    ("majority_ratio", "vote share (majority ratio)", False),
)


class NothingToPlot(ValueError):
    """No vote has been stored yet."""


@dataclass(frozen=True)
class VersionFigures:
    version: int
    votes: int
    with_reference: int
    label_accuracy: float | None
    reward_accuracy: float | None
    pass_at_1: float | None
    majority_ratio: float | None


def version_history(conn: Connection) -> list[VersionFigures]:
    """Per-version figures from ``v_accuracy_by_version``, oldest version first."""
    a = views.accuracy_by_version.c
    stmt = select(
        a.model_version, a.votes, a.with_reference, *(a[c] for c, _, _ in CURVES)
    ).order_by(a.model_version)
    return [VersionFigures(*row) for row in conn.execute(stmt)]


def missing_plot_module() -> str | None:
    """The module of the ``ttrl[plot]`` extra that cannot be imported here, or None."""
    try:
        import matplotlib  # noqa: F401
    except ModuleNotFoundError as exc:
        return exc.name or "matplotlib"
    return None


def plot_history(history: list[VersionFigures], out: Path) -> Path:
    """Draw ``history`` to the PNG ``out``; curves without any value are left out."""
    if not history:
        raise NothingToPlot("no votes stored yet: nothing to plot (run `ttrl serve` first)")
    import matplotlib

    matplotlib.use("Agg")  # files only; never a display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    xs = [h.version for h in history]
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(8, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    for column, label, _ in CURVES:
        ys = [getattr(h, column) for h in history]
        if any(y is not None for y in ys):
            top.plot(xs, [float("nan") if y is None else y for y in ys], marker="o", label=label)
    top.set_ylim(0, 1.02)
    top.yaxis.set_major_formatter(PercentFormatter(1.0))
    top.grid(alpha=0.3)
    top.legend(loc="lower left", fontsize="small")
    refs = sum(h.with_reference for h in history)
    top.set_title(
        "TTRL pseudo-label quality by model version"
        + ("" if refs else " (no reference answers: vote share only)")
    )
    bottom.bar(xs, [h.votes for h in history], color="0.7", label="votes")
    bottom.bar(xs, [h.with_reference for h in history], color="0.4", label="with reference")
    bottom.set_ylabel("votes")
    bottom.set_xlabel("model version")
    bottom.legend(loc="upper left", fontsize="small")
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
