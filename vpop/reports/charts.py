"""Server-rendered SVG charts for the HTML reports: traffic per row and over time.

The HTML reports load nothing from outside and run no script, so a chart is an inline
``<svg>`` string built here. Every text that reaches the markup goes through
:func:`html.escape`; only presentation attributes are used (no ``style``). Each bar carries
a ``<title>`` (the browser's tooltip) with its exact figure, and the axes are labelled in
human units (kB, MB, GB: powers of 1000, as traffic is billed).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

IN_COLOUR = "#1d4ed8"
OUT_COLOUR = "#0f766e"
AXIS_COLOUR = "#6b7280"
GRID_COLOUR = "#e5e7eb"

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB")


def human_bytes(value: float) -> str:
    """Bytes in the largest unit that keeps the number at least 1 (``12.3 MB``)."""
    size = float(value)
    unit = 0
    while abs(size) >= 1000 and unit < len(_UNITS) - 1:
        size /= 1000
        unit += 1
    if unit == 0:
        return f"{size:.0f} B"
    return f"{size:.1f} {_UNITS[unit]}"


def _num(value: float) -> str:
    return f"{value:.2f}"


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``value``."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if step * power >= value:
            return step * power
    return 10.0 * power


def _head(label: str, width: int, height: int) -> str:
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{_esc(label)}">'
        f"<title>{_esc(label)}</title>"
    )


def _legend(x: float, y: float) -> str:
    parts = []
    for offset, (name, colour) in enumerate((("in", IN_COLOUR), ("out", OUT_COLOUR))):
        left = x + offset * 56
        parts.append(
            f'<rect x="{_num(left)}" y="{_num(y - 9)}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{_num(left + 14)}" y="{_num(y)}" font-size="11" '
            f'fill="{AXIS_COLOUR}">{name}</text>'
        )
    return "".join(parts)


def bar_chart(items: Sequence[tuple[str, int, int]], *, label: str, width: int = 720) -> str:
    """Horizontal bars, in and out, for each ``(name, bytes_in, bytes_out)``.

    Args:
        items: The rows to draw, in order (the caller picks the top ones).
        label: What the chart shows (title, screen readers).
        width: The drawing's width in CSS pixels.

    Returns:
        The ``<svg>`` element as text.
    """
    left, right, top, row_h = 170.0, 16.0, 24.0, 26.0
    height = int(top + max(1, len(items)) * row_h + 30)
    plot_w = width - left - right
    high = nice_ceiling(max([1.0, *(max(b_in, b_out) for _, b_in, b_out in items)]))
    parts = [_head(label, width, height), _legend(left, 14)]
    for tick in (0.0, high / 2, high):
        x = left + tick / high * plot_w
        parts.append(
            f'<line x1="{_num(x)}" y1="{_num(top)}" x2="{_num(x)}" '
            f'y2="{_num(height - 24)}" stroke="{GRID_COLOUR}" stroke-width="1"/>'
            f'<text x="{_num(x)}" y="{_num(height - 8)}" text-anchor="middle" font-size="11" '
            f'fill="{AXIS_COLOUR}">{_esc(human_bytes(tick))}</text>'
        )
    if not items:
        parts.append(
            f'<text x="{_num(left + plot_w / 2)}" y="{_num(top + 16)}" text-anchor="middle" '
            f'font-size="12" fill="{AXIS_COLOUR}">no traffic</text>'
        )
    for index, (name, b_in, b_out) in enumerate(items):
        y = top + index * row_h
        shown = name if len(name) <= 26 else name[:25] + "…"
        parts.append(
            f'<text x="{_num(left - 6)}" y="{_num(y + 15)}" text-anchor="end" font-size="11" '
            f'fill="#222222">{_esc(shown)}</text>'
        )
        for offset, (value, colour, direction) in enumerate(
            ((b_in, IN_COLOUR, "in"), (b_out, OUT_COLOUR, "out"))
        ):
            bar = max(0.0, value / high * plot_w)
            parts.append(
                f'<rect x="{_num(left)}" y="{_num(y + 2 + offset * 11)}" width="{_num(bar)}" '
                f'height="10" fill="{colour}"><title>{_esc(name)} {direction}: '
                f"{_esc(human_bytes(value))} ({value} bytes)</title></rect>"
            )
    parts.append("</svg>")
    return "".join(parts)


def series_chart(
    points: Sequence[tuple[str, int, int]], *, label: str, width: int = 720, height: int = 220
) -> str:
    """Vertical bars, in and out, per time bucket: ``(bucket label, bytes_in, bytes_out)``.

    Args:
        points: The buckets in time order (every bucket of the window, zeros included).
        label: What the chart shows (title, screen readers).
        width: The drawing's width in CSS pixels.
        height: The drawing's height in CSS pixels.

    Returns:
        The ``<svg>`` element as text.
    """
    left, right, top, bottom = 70.0, 12.0, 24.0, 26.0
    plot_w = width - left - right
    plot_h = height - top - bottom
    high = nice_ceiling(max([1.0, *(max(b_in, b_out) for _, b_in, b_out in points)]))
    parts = [_head(label, width, height), _legend(left, 14)]
    for tick in (0.0, high / 2, high):
        y = top + plot_h - tick / high * plot_h
        parts.append(
            f'<line x1="{_num(left)}" y1="{_num(y)}" x2="{_num(left + plot_w)}" y2="{_num(y)}" '
            f'stroke="{GRID_COLOUR}" stroke-width="1"/>'
            f'<text x="{_num(left - 4)}" y="{_num(y + 4)}" text-anchor="end" font-size="11" '
            f'fill="{AXIS_COLOUR}">{_esc(human_bytes(tick))}</text>'
        )
    slot = plot_w / max(1, len(points))
    bar_w = max(0.5, slot * 0.4)
    for index, (bucket, b_in, b_out) in enumerate(points):
        x = left + index * slot + slot * 0.1
        for offset, (value, colour, direction) in enumerate(
            ((b_in, IN_COLOUR, "in"), (b_out, OUT_COLOUR, "out"))
        ):
            bar = max(0.0, value / high * plot_h)
            parts.append(
                f'<rect x="{_num(x + offset * bar_w)}" y="{_num(top + plot_h - bar)}" '
                f'width="{_num(bar_w)}" height="{_num(bar)}" fill="{colour}">'
                f"<title>{_esc(bucket)} {direction}: {_esc(human_bytes(value))} "
                f"({value} bytes)</title></rect>"
            )
    parts.append(
        f'<line x1="{_num(left)}" y1="{_num(top + plot_h)}" x2="{_num(left + plot_w)}" '
        f'y2="{_num(top + plot_h)}" stroke="{AXIS_COLOUR}" stroke-width="1"/>'
    )
    if points:
        parts.append(
            f'<text x="{_num(left)}" y="{_num(height - 8)}" font-size="11" '
            f'fill="{AXIS_COLOUR}">{_esc(points[0][0])}</text>'
            f'<text x="{_num(left + plot_w)}" y="{_num(height - 8)}" text-anchor="end" '
            f'font-size="11" fill="{AXIS_COLOUR}">{_esc(points[-1][0])}</text>'
        )
    else:
        parts.append(
            f'<text x="{_num(left + plot_w / 2)}" y="{_num(top + plot_h / 2)}" '
            f'text-anchor="middle" font-size="12" fill="{AXIS_COLOUR}">no traffic</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
