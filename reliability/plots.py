"""Plotly figures of the dashboard, drawn from metric records; this module computes no metric."""
from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import plotly.graph_objects as go

from reliability.metrics import Comparison, ComparisonIntervals, RiskCoverage

ISO_RGI = (-0.5, -0.25, 0.25, 0.5)  # guide lines around the RGI = 0 diagonal
# one colour and one marker shape per method, in the order methods first appear, the same in every figure
COLOURS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#9d755d", "#eeca3b")
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "pentagon", "hexagon", "star", "cross")
TEMPLATE = "plotly_white"
WRAP = 60  # characters per line of an empty figure's message, so it fits a half-width plot
# the plane's plot area as drawn in the dashboard's half-width column (px), used to keep labels apart
PLANE_PX = (430.0, 330.0)
SPREAD = 0.03  # identical points of different methods are spread on a circle of this share of the axis
LABEL_SPOTS = ("top center", "bottom center", "middle right", "middle left", "top right", "top left", "bottom right", "bottom left")


@dataclass(frozen=True)
class MethodPoint:
    """One method on one group (modality or "total") against the baseline."""

    method: str
    group: str
    comparison: Comparison
    intervals: ComparisonIntervals | None = None


def empty_figure(message: str, title: str = "") -> go.Figure:
    """A blank figure that says what to do next instead of showing empty axes."""
    fig = go.Figure()
    text = "<br>".join(textwrap.wrap(message, WRAP))
    fig.add_annotation(text=text, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font={"size": 14})
    fig.update_layout(title=title, template=TEMPLATE, xaxis={"visible": False}, yaxis={"visible": False}, height=360)
    return fig


def method_styles(methods: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Method -> (colour, marker symbol), in the order given; the same method looks the same in every figure."""
    return {m: (COLOURS[i % len(COLOURS)], SYMBOLS[i % len(SYMBOLS)]) for i, m in enumerate(dict.fromkeys(methods))}


def conservatism_humility_plane(points: Sequence[MethodPoint], normalize: str = "total") -> go.Figure:
    """ΔCon on x, ΔHum on y: above the diagonal a method gained more humility than conservatism.

    Each method has its own colour and marker shape; points that coincide are spread a little around
    their true place (the hover text gives the exact figures) and group labels are placed where they
    overlap neither another label nor a marker.
    """
    drawable = [p for p in points if p.comparison.delta_con is not None and p.comparison.delta_hum is not None]
    if not drawable:
        return empty_figure("No method to compare yet: run the baseline and at least one other method on the same items.", "Conservatism–humility plane")
    top = max(max(p.comparison.delta_con, p.comparison.delta_hum, _high(p, "delta_con"), _high(p, "delta_hum")) for p in drawable)
    top = max(top * 1.15, 0.05)
    low = -0.08 * top  # room left of and below 0, so markers and labels at 0 are not cut by the axes
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, top], y=[0, top], mode="lines", name="RGI = 0", line={"color": "grey", "dash": "dash"}, hoverinfo="skip"))
    for rgi in ISO_RGI:
        slope = 10**rgi
        x_end = min(top, top / slope)
        fig.add_trace(
            go.Scatter(x=[0, x_end], y=[0, x_end * slope], mode="lines", name=f"RGI = {rgi:+.2f}", line={"color": "lightgrey", "width": 1, "dash": "dot"}, hoverinfo="skip", showlegend=False)
        )
        fig.add_annotation(x=x_end, y=x_end * slope, text=f"{rgi:+.2f}", showarrow=False, font={"size": 10, "color": "grey"})
    places = spread_points([(p.comparison.delta_con, p.comparison.delta_hum) for p in drawable], SPREAD * (top - low))
    spots = label_spots(places, [p.group for p in drawable], (low, top), (low, top))
    styles = method_styles([p.method for p in drawable])
    for method, (colour, symbol) in styles.items():
        mine = [i for i, p in enumerate(drawable) if p.method == method]
        fig.add_trace(
            go.Scatter(
                x=[places[i][0] for i in mine],
                y=[places[i][1] for i in mine],
                mode="markers+text",
                name=method,
                text=[drawable[i].group for i in mine],
                textposition=[spots[i] for i in mine],
                textfont={"size": 11, "color": colour},
                cliponaxis=False,
                marker={"size": 12, "symbol": symbol, "color": colour, "line": {"width": 1, "color": "white"}},
                error_x=_error_bars([drawable[i] for i in mine], "delta_con"),
                error_y=_error_bars([drawable[i] for i in mine], "delta_hum"),
                customdata=[_hover_data(drawable[i]) for i in mine],
                hovertemplate=(
                    "<b>%{fullData.name}</b> · %{customdata[0]}<br>ΔCon %{customdata[7]:.2%} (lost %{customdata[1]} of %{customdata[2]} correct)"
                    "<br>ΔHum %{customdata[8]:.2%} (gained %{customdata[3]} of %{customdata[4]} wrong)<br>RGI %{customdata[6]} · N = %{customdata[5]}<extra></extra>"
                ),
            )
        )
    fig.update_layout(
        title=f"Conservatism–humility plane (D = {'all items' if normalize == 'total' else 'group size'})",
        xaxis={"title": "ΔCon: correct answers lost (lower is better)", "tickformat": ".0%", "range": [low, top], "zeroline": True},
        yaxis={"title": "ΔHum: wrong answers avoided (higher is better)", "tickformat": ".0%", "range": [low, top], "zeroline": True},
        template=TEMPLATE,
        height=480,
        margin={"l": 70, "r": 20, "t": 60, "b": 60},
        legend={"title": {"text": "method"}},
    )
    return fig


def spread_points(xy: Sequence[tuple[float, float]], radius: float) -> list[tuple[float, float]]:
    """Points that coincide (to a tenth of `radius`) moved onto a small circle around their place; others kept."""
    where: dict[tuple[int, int], list[int]] = {}
    for i, (x, y) in enumerate(xy):
        where.setdefault((round(x / radius * 10), round(y / radius * 10)), []).append(i)
    out = list(xy)
    for members in where.values():
        if len(members) > 1:
            for k, i in enumerate(members):
                angle = math.pi / 4 + 2 * math.pi * k / len(members)
                out[i] = (xy[i][0] + radius * math.cos(angle), xy[i][1] + radius * math.sin(angle))
    return out


def label_spots(
    xy: Sequence[tuple[float, float]], texts: Sequence[str], x_range: tuple[float, float], y_range: tuple[float, float]
) -> list[str]:
    """A Plotly textposition per point whose label box overlaps no earlier label, no marker and no plot edge, where one exists."""
    width, height = PLANE_PX
    px = [((x - x_range[0]) / (x_range[1] - x_range[0]) * width, (y - y_range[0]) / (y_range[1] - y_range[0]) * height) for x, y in xy]
    markers = [(x - 7, y - 7, x + 7, y + 7) for x, y in px]
    taken: list[tuple[float, float, float, float]] = []
    spots = []
    for (x, y), text in zip(px, texts):
        w, h = 6.5 * len(text), 13.0  # an 11 px font's box
        best, best_cost = LABEL_SPOTS[0], math.inf
        for spot in LABEL_SPOTS:
            box = _label_box(spot, x, y, w, h)
            cost = sum(_overlaps(box, other) for other in taken) * 3 + sum(_overlaps(box, m) for m in markers)
            cost += 2 * (box[0] < 0 or box[2] > width or box[1] < 0 or box[3] > height)
            if cost < best_cost:
                best, best_cost = spot, cost
            if cost == 0:
                break
        spots.append(best)
        taken.append(_label_box(best, x, y, w, h))
    return spots


def _label_box(spot: str, x: float, y: float, w: float, h: float) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) in px, y upwards, of a label at this Plotly textposition beside a 12 px marker."""
    vertical, horizontal = spot.split()
    gap = 8.0
    cy = {"top": y + gap + h / 2, "middle": y, "bottom": y - gap - h / 2}[vertical]
    if horizontal == "center":
        cx = x
    else:
        cx = x + (1 if horizontal == "right" else -1) * (gap + w / 2)
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _hover_data(p: MethodPoint) -> list:
    c = p.comparison
    return [p.group, c.lost_correct, c.baseline_correct, c.gained_humble, c.baseline_wrong, c.n, c.rgi_label, c.delta_con, c.delta_hum]


def rgi_bars(points: Sequence[MethodPoint]) -> go.Figure:
    """RGI per method, grouped by modality and total. An infinite RGI is a hatched bar to the plot's edge
    labelled ±∞; an undefined one has no bar and is labelled n/a (the hover text says why)."""
    if not points:
        return empty_figure("No RGI yet: run the baseline and at least one other method on the same items.", "Reliability Gain Index")
    fig = go.Figure()
    groups = list(dict.fromkeys(p.group for p in points))
    styles = method_styles([p.method for p in points])
    finite = [abs(p.comparison.rgi) for p in points if _finite(p.comparison.rgi) is not None]
    edge = max([*finite, 0.25]) * 1.25  # where an infinite bar ends
    # side by side, horizontal labels fit a bar only when there are few bars per figure
    angle = 0 if len(styles) * len(groups) <= 8 else -90
    for method, (colour, _) in styles.items():
        mine = {p.group: p for p in points if p.method == method}
        rgis = [mine[g].comparison.rgi if g in mine else None for g in groups]
        fig.add_trace(
            go.Bar(
                x=groups,
                y=[0 if v is None else (math.copysign(edge, v) if math.isinf(v) else v) for v in rgis],
                name=method,
                marker={"color": colour, "pattern": {"shape": ["/" if v is not None and math.isinf(v) else "" for v in rgis]}},
                text=[_short_label(mine[g].comparison) if g in mine else "" for g in groups],
                textposition="outside",
                textangle=angle,
                cliponaxis=False,
                customdata=[mine[g].comparison.rgi_label if g in mine else "" for g in groups],
                error_y=_error_bars([mine[g] for g in groups if g in mine], "rgi") if all(g in mine for g in groups) else None,
                hovertemplate="<b>%{fullData.name}</b> · %{x}<br>RGI %{customdata}<extra></extra>",
            )
        )
    fig.add_hline(y=0, line_color="grey")
    fig.update_layout(
        title="Reliability Gain Index = log10(ΔHum / ΔCon) (higher is better)",
        barmode="group",
        yaxis={"title": "RGI (hatched: ±∞)", "range": [-edge * 1.35, edge * 1.35]},
        template=TEMPLATE,
        height=480,
        margin={"l": 70, "r": 20, "t": 60, "b": 60},
        legend={"title": {"text": "method"}},
    )
    return fig


def risk_coverage_figure(curves: Mapping[str, RiskCoverage]) -> go.Figure:
    """Risk of the k most confident answers against coverage, one line per method (lower is better)."""
    drawable = {name: c for name, c in curves.items() if c.coverage}
    if not drawable:
        return empty_figure("No confidences yet: they come from backends that score the answer options (e.g. the default cascade).", "Risk–coverage")
    fig = go.Figure()
    for name, curve in drawable.items():
        aurc = "n/a" if curve.aurc is None else f"{curve.aurc:.3f}"
        fig.add_trace(go.Scatter(x=curve.coverage, y=curve.risk, mode="lines", name=f"{name} (AURC {aurc})"))
    fig.update_layout(
        title="Risk–coverage (AURC: lower is better)",
        xaxis={"title": "coverage", "tickformat": ".0%", "range": [0, 1]},
        yaxis={"title": "risk (error rate)", "tickformat": ".0%", "rangemode": "tozero"},
        template=TEMPLATE,
        height=400,
    )
    return fig


def _short_label(comparison: Comparison) -> str:
    """A bar label that fits above a bar; the full reason is in the hover text."""
    rgi = comparison.rgi
    if rgi is None:
        return "n/a"
    if math.isinf(rgi):
        return "+∞" if rgi > 0 else "−∞"
    return f"{rgi:.2f}"


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _high(point: MethodPoint, field: str) -> float:
    interval = getattr(point.intervals, field, None) if point.intervals else None
    return interval.high if interval is not None and interval.high is not None else 0.0


def _error_bars(points: Sequence[MethodPoint], field: str) -> dict | None:
    """Asymmetric error bars from bootstrap intervals; none when any point lacks them."""
    intervals = [getattr(p.intervals, field, None) if p.intervals else None for p in points]
    if not intervals or any(i is None or i.low is None or i.high is None or i.estimate is None or not math.isfinite(i.estimate) for i in intervals):
        return None
    return {
        "type": "data",
        "symmetric": False,
        "array": [i.high - i.estimate for i in intervals],
        "arrayminus": [i.estimate - i.low for i in intervals],
    }
