"""Small inline-SVG charts, so a report is one self-contained file that works offline."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

__all__ = ["bar_pairs"]


def bar_pairs(
    labels: Sequence[str],
    reference: Sequence[float],
    current: Sequence[float],
    *,
    width: int = 360,
    height: int = 120,
) -> str:
    """Side-by-side bars of two distributions over the same cells (shares in [0, 1])."""
    cells = max(len(labels), 1)
    top = max([*reference, *current, 1e-9])
    slot = width / cells
    bar = max(slot / 2 - 1, 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 14}" '
        f'role="img" aria-label="reference vs current">'
    ]
    for i, (label, r, c) in enumerate(zip(labels, reference, current, strict=True)):
        x = i * slot
        for j, (value, css) in enumerate(((r, "ref"), (c, "cur"))):
            h = height * value / top
            parts.append(
                f'<rect class="{css}" x="{x + j * bar:.1f}" y="{height - h:.1f}" '
                f'width="{bar:.1f}" height="{h:.1f}"><title>{escape(label)}: '
                f"{'reference' if j == 0 else 'current'} {value:.1%}</title></rect>"
            )
        if cells <= 12:
            parts.append(
                f'<text x="{x + slot / 2:.1f}" y="{height + 11}" text-anchor="middle">'
                f"{escape(label[:8])}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)
