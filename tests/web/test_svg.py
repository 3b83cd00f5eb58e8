"""Server-rendered charts (webhooks.svg): escaped, gap-aware, and valid XML."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from webhooks.pages.svg import chart, sparkline

NS = "{http://www.w3.org/2000/svg}"


def test_a_sparkline_is_valid_svg_with_an_escaped_label() -> None:
    label = 'Evil <script>alert("x")</script> & co'
    drawing = sparkline([(10.0, 1.0), (20.0, 3.0), (30.0, 2.0)], start=0, end=40, label=label)
    root = ET.fromstring(str(drawing))
    assert root.tag == NS + "svg"
    assert root.attrib["aria-label"] == label  # escaped in the markup, intact once parsed
    assert root.find(NS + "title") is not None
    assert "<script>" not in str(drawing)
    assert len(root.findall(NS + "path")) == 1


def test_a_gap_breaks_the_line() -> None:
    points = [(0.0, 1.0), (60.0, 2.0), (5000.0, 1.0), (5060.0, 3.0)]
    root = ET.fromstring(str(sparkline(points, start=0, end=6000, label="x", gap=900)))
    assert len(root.findall(NS + "path")) == 2


def test_a_lone_point_is_a_dot_and_no_data_is_a_dashed_baseline() -> None:
    lone = ET.fromstring(str(sparkline([(50.0, 2.0)], start=0, end=100, label="x")))
    assert lone.findall(NS + "circle") and not lone.findall(NS + "path")
    empty = ET.fromstring(str(sparkline([], start=0, end=100, label="x")))
    assert empty.find(NS + "line") is not None


def test_non_finite_and_out_of_window_points_are_dropped() -> None:
    points = [(-10.0, 1.0), (10.0, math.nan), (20.0, math.inf), (200.0, 1.0)]
    drawing = str(sparkline(points, start=0, end=100, label="x"))
    assert "nan" not in drawing.lower() and "inf" not in drawing.lower()
    assert ET.fromstring(drawing).find(NS + "line") is not None  # nothing left to draw


def test_a_chart_has_scale_thresholds_and_escaped_labels() -> None:
    drawing = chart(
        [(0.0, 20.0), (300.0, 130.0)],
        start=0,
        end=600,
        label="lease <1>",
        unit="%",
        start_label="24 h ago",
        end_label="now & then",
        thresholds=[(10.0, "under"), (100.0, "over")],
    )
    root = ET.fromstring(str(drawing))
    texts = [t.text for t in root.iter(NS + "text")]
    assert "now & then" in texts and "24 h ago" in texts
    assert any(t and t.startswith("over 100") for t in texts)
    assert any(t and t.startswith("under 10") for t in texts)
    assert "200%" in texts  # the scale covers the 130 % peak with a round top
    assert root.attrib["aria-label"] == "lease <1>"


def test_an_empty_chart_says_so() -> None:
    drawing = chart([], start=0, end=10, label="x", unit="%", start_label="a", end_label="b")
    assert "no samples" in str(drawing)
