"""The one-row Markdown tables the evaluators print."""

from __future__ import annotations

from collections.abc import Sequence


def metrics_table(head: Sequence[str], cells: Sequence[str]) -> str:
    """A Markdown table with one header row and one row of already formatted ``cells``."""
    if len(head) != len(cells):
        raise ValueError(f"{len(head)} column names for {len(cells)} cells")
    return "\n".join(
        ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head), "| " + " | ".join(cells) + " |"]
    )


def percent_cells(values: Sequence[float]) -> list[str]:
    """Fractions as percentages with one decimal; COCOeval's -1 (no such objects) as ``-``."""
    return [f"{100 * v:.1f}" if v >= 0 else "-" for v in values]
