"""Server-rendered SVG: sparklines for the portal, utilisation charts for the NOC pages.

The pages need no JavaScript and no outside asset to show a trend, so charts are inline
``<svg>`` built here as strings. Every text that reaches the markup (titles, labels, numbers)
goes through :func:`html.escape`, and only presentation attributes are used (no ``style``),
so the pages' Content-Security-Policy can forbid inline styles.

Points are ``(x, y)`` pairs where ``x`` is a time in Unix seconds; the x axis always spans
the whole window (``start`` to ``end``), so a series that began an hour ago fills only the
right end of a 24-hour sparkline. A gap longer than ``gap`` seconds breaks the line, rather
than drawing a trend across a time when nothing was measured.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence

from markupsafe import Markup

from vpop.reports.service import nice_ceiling

Point = tuple[float, float]

LINE_COLOUR = "#1d4ed8"
AREA_COLOUR = "#dbeafe"
AXIS_COLOUR = "#6b7280"
OVER_COLOUR = "#b91c1c"
UNDER_COLOUR = "#b45309"


def _num(value: float) -> str:
    """A coordinate: two decimals, no exponent, never NaN (callers filter those out)."""
    return f"{value:.2f}"


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _finite(points: Sequence[Point], start: float, end: float) -> list[Point]:
    """The points inside the window with finite values, in time order."""
    kept = [
        (float(x), float(y))
        for x, y in points
        if math.isfinite(x) and math.isfinite(y) and start <= x <= end
    ]
    return sorted(kept)


def _segments(points: Sequence[Point], gap: float) -> list[list[Point]]:
    """Split ``points`` wherever two neighbours are more than ``gap`` seconds apart."""
    segments: list[list[Point]] = []
    for point in points:
        if segments and point[0] - segments[-1][-1][0] <= gap:
            segments[-1].append(point)
        else:
            segments.append([point])
    return segments


def _path(
    segment: Sequence[Point], px: Callable[[float], float], py: Callable[[float], float]
) -> str:
    """An SVG path through the segment's points (already in drawing coordinates)."""
    return " ".join(
        f"{'M' if i == 0 else 'L'}{_num(px(x))} {_num(py(y))}" for i, (x, y) in enumerate(segment)
    )


def _short(value: float) -> str:
    """A y label: no decimals from 10 up, one below."""
    return f"{value:.0f}" if abs(value) >= 10 or value == int(value) else f"{value:.1f}"


def sparkline(
    points: Sequence[Point],
    *,
    start: float,
    end: float,
    label: str,
    width: int = 120,
    height: int = 28,
    gap: float = 900.0,
) -> Markup:
    """A small line chart without axes, for one figure over a window.

    Args:
        points: ``(unix_seconds, value)`` pairs.
        start: The window's start (Unix seconds): the left edge.
        end: The window's end: the right edge.
        label: What the chart shows, for screen readers and the tooltip.
        width: The drawing's width in CSS pixels.
        height: The drawing's height in CSS pixels.
        gap: Seconds between two points beyond which the line is broken.

    Returns:
        The ``<svg>`` element, safe to insert into a Jinja template.
    """
    pad = 2.0
    kept = _finite(points, start, end)
    head = (
        f'<svg class="spark" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" preserveAspectRatio="none" role="img" '
        f'aria-label="{_esc(label)}"><title>{_esc(label)}</title>'
    )
    if not kept:
        baseline = _num(height - pad)
        return Markup(
            head + f'<line x1="0" y1="{baseline}" x2="{width}" y2="{baseline}" '
            f'stroke="{AXIS_COLOUR}" stroke-width="1" stroke-dasharray="2 3"/></svg>'
        )
    low = min(y for _, y in kept)
    high = max(y for _, y in kept)
    span = (high - low) or 1.0
    span_x = (end - start) or 1.0

    def px(x: float) -> float:
        return pad + (x - start) / span_x * (width - 2 * pad)

    def py(y: float) -> float:
        # a flat series sits in the middle rather than on an edge
        if high == low:
            return height / 2
        return height - pad - (y - low) / span * (height - 2 * pad)

    parts = [head]
    for segment in _segments(kept, gap):
        if len(segment) == 1:
            x, y = segment[0]
            parts.append(
                f'<circle cx="{_num(px(x))}" cy="{_num(py(y))}" r="1.5" fill="{LINE_COLOUR}"/>'
            )
            continue
        parts.append(
            f'<path d="{_path(segment, px, py)}" fill="none" stroke="{LINE_COLOUR}" '
            'stroke-width="1.5" stroke-linejoin="round" stroke-linecap="round" '
            'vector-effect="non-scaling-stroke"/>'
        )
    last_x, last_y = kept[-1]
    parts.append(
        f'<circle cx="{_num(px(last_x))}" cy="{_num(py(last_y))}" r="2" fill="{LINE_COLOUR}"/>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))


def chart(
    points: Sequence[Point],
    *,
    start: float,
    end: float,
    label: str,
    unit: str,
    start_label: str,
    end_label: str,
    thresholds: Sequence[tuple[float, str]] = (),
    width: int = 640,
    height: int = 180,
    gap: float = 900.0,
) -> Markup:
    """A line chart with a y scale, time labels and horizontal threshold lines.

    Args:
        points: ``(unix_seconds, value)`` pairs.
        start: The window's start (Unix seconds).
        end: The window's end.
        label: What the chart shows (title, screen readers).
        unit: The unit after each y label (``%``).
        start_label: The text under the left edge (``24 h ago``).
        end_label: The text under the right edge (``now``).
        thresholds: ``(value, name)`` pairs drawn as dashed lines (``(100.0, "committed")``).
        width: The drawing's width (it scales down with the page: the viewBox is kept).
        height: The drawing's height.
        gap: Seconds between two points beyond which the line is broken.

    Returns:
        The ``<svg>`` element, safe to insert into a Jinja template.
    """
    left, right, top, bottom = 44.0, 8.0, 8.0, 22.0
    kept = _finite(points, start, end)
    values = [y for _, y in kept] + [value for value, _ in thresholds]
    high = max([*values, 1.0])
    high = nice_ceiling(high * 1.05)
    span_x = (end - start) or 1.0
    plot_w = width - left - right
    plot_h = height - top - bottom

    def px(x: float) -> float:
        return left + (x - start) / span_x * plot_w

    def py(y: float) -> float:
        return top + plot_h - (max(0.0, y) / high) * plot_h

    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'preserveAspectRatio="xMinYMin meet" role="img" aria-label="{_esc(label)}">'
        f"<title>{_esc(label)}</title>",
        f'<rect x="{_num(left)}" y="{_num(top)}" width="{_num(plot_w)}" height="{_num(plot_h)}" '
        f'fill="#ffffff" stroke="{AXIS_COLOUR}" stroke-width="0.5"/>',
    ]
    for tick in (0.0, high / 2, high):
        y = py(tick)
        parts.append(
            f'<text x="{_num(left - 4)}" y="{_num(y + 4)}" text-anchor="end" font-size="11" '
            f'fill="{AXIS_COLOUR}">{_esc(_short(tick))}{_esc(unit)}</text>'
        )
    for segment in _segments(kept, gap):
        if len(segment) == 1:
            x, y = segment[0]
            parts.append(
                f'<circle cx="{_num(px(x))}" cy="{_num(py(y))}" r="2.5" fill="{LINE_COLOUR}"/>'
            )
            continue
        path = _path(segment, px, py)
        base = _num(py(0.0))
        area = f"{path} L{_num(px(segment[-1][0]))} {base} L{_num(px(segment[0][0]))} {base} Z"
        parts.append(f'<path d="{area}" fill="{AREA_COLOUR}"/>')
        parts.append(
            f'<path d="{path}" fill="none" stroke="{LINE_COLOUR}" stroke-width="1.5" '
            'stroke-linejoin="round"/>'
        )
    for value, name in thresholds:
        y = py(value)
        colour = OVER_COLOUR if value >= 100 else UNDER_COLOUR
        parts.append(
            f'<line x1="{_num(left)}" y1="{_num(y)}" x2="{_num(left + plot_w)}" y2="{_num(y)}" '
            f'stroke="{colour}" stroke-width="1" stroke-dasharray="4 3"/>'
            f'<text x="{_num(left + plot_w - 2)}" y="{_num(y - 3)}" text-anchor="end" '
            f'font-size="10" fill="{colour}">{_esc(name)} {_esc(_short(value))}{_esc(unit)}</text>'
        )
    if not kept:
        parts.append(
            f'<text x="{_num(left + plot_w / 2)}" y="{_num(top + plot_h / 2)}" '
            f'text-anchor="middle" font-size="12" fill="{AXIS_COLOUR}">no samples</text>'
        )
    parts.append(
        f'<text x="{_num(left)}" y="{_num(height - 6)}" font-size="11" '
        f'fill="{AXIS_COLOUR}">{_esc(start_label)}</text>'
        f'<text x="{_num(left + plot_w)}" y="{_num(height - 6)}" text-anchor="end" '
        f'font-size="11" fill="{AXIS_COLOUR}">{_esc(end_label)}</text></svg>'
    )
    return Markup("".join(parts))
