"""Plotly figures of the dashboard, drawn from metric records; this module computes no metric."""
from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from reliability.metrics import Comparison, ComparisonIntervals, RiskCoverage

ISO_RGI = (-0.5, -0.25, 0.25, 0.5)  # guide lines around the RGI = 0 diagonal
# one colour and one marker shape per method, in the order methods first appear, the same in every figure
COLOURS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#9d755d", "#eeca3b")
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "pentagon", "hexagon", "star", "cross")
TEMPLATE = "plotly_white"
WRAP = 60  # characters per line of an empty figure's message, so it fits a half-width plot
SPREAD = 0.03  # identical points of different methods are spread on a circle of this share of the axis
# Below this many paired items one answer moves ΔCon or ΔHum by more than 3 points: a figure says its sample is too small.
MIN_N = 30
INFINITY_AT = 1.18  # an infinite RGI's marker, in units of the finite scale's end: inside the off-scale band


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
    """ΔCon on x, ΔHum on y, one panel per group (modality, total): above the diagonal a method gained more
    humility than conservatism.

    Each method has its own colour and marker shape in every panel; methods at the same figures are spread
    a little around their true place, and the hover text gives the exact figures.
    """
    drawable = [p for p in points if p.comparison.delta_con is not None and p.comparison.delta_hum is not None]
    if not drawable:
        return empty_figure("No method to compare yet: run the baseline and at least one other method on the same items.", "Conservatism–humility plane")
    top = max(max(p.comparison.delta_con, p.comparison.delta_hum, _high(p, "delta_con"), _high(p, "delta_hum")) for p in drawable)
    top = max(top * 1.1, 0.05)
    low = -0.08 * top  # room left of and below 0, so markers at 0 are not cut by the axes
    groups = list(dict.fromkeys(p.group for p in drawable))
    cols = 1 if len(groups) == 1 else 2
    rows = math.ceil(len(groups) / cols)
    sizes = {g: max(p.comparison.n for p in drawable if p.group == g) for g in groups}
    fig = make_subplots(
        rows=rows, cols=cols, subplot_titles=[f"{g} (n = {sizes[g]})" for g in groups], shared_xaxes=True, shared_yaxes=True,
        horizontal_spacing=0.06, vertical_spacing=0.12 if rows > 1 else 0.0,
    )
    styles = method_styles([p.method for p in drawable])
    in_legend: set[str] = set()
    for g, group in enumerate(groups):
        row, col = g // cols + 1, g % cols + 1
        fig.add_trace(
            go.Scatter(x=[0, top], y=[0, top], mode="lines", name="RGI = 0", line={"color": "grey", "dash": "dash"},
                       hoverinfo="skip", legendgroup="rgi0", showlegend=g == 0),
            row=row, col=col,
        )
        for rgi in ISO_RGI:
            slope = 10**rgi
            x_end = min(top, top / slope)
            fig.add_trace(
                go.Scatter(x=[0, x_end], y=[0, x_end * slope], mode="lines", line={"color": "lightgrey", "width": 1, "dash": "dot"},
                           hoverinfo="skip", showlegend=False),
                row=row, col=col,
            )
        mine = [p for p in drawable if p.group == group]
        places = spread_points([(p.comparison.delta_con, p.comparison.delta_hum) for p in mine], SPREAD * (top - low))
        for method, (colour, symbol) in styles.items():
            picked = [i for i, p in enumerate(mine) if p.method == method]
            if not picked:
                continue
            fig.add_trace(
                go.Scatter(
                    x=[places[i][0] for i in picked],
                    y=[places[i][1] for i in picked],
                    mode="markers",
                    name=method,
                    legendgroup=method,
                    showlegend=method not in in_legend,
                    cliponaxis=False,
                    marker={"size": 11, "symbol": symbol, "color": colour, "line": {"width": 1, "color": "white"}},
                    error_x=_error_bars([mine[i] for i in picked], "delta_con"),
                    error_y=_error_bars([mine[i] for i in picked], "delta_hum"),
                    customdata=[_hover_data(mine[i]) for i in picked],
                    hovertemplate=(
                        "<b>%{fullData.name}</b> · %{customdata[0]}<br>ΔCon %{customdata[7]:.2%} (lost %{customdata[1]} of %{customdata[2]} correct)"
                        "<br>ΔHum %{customdata[8]:.2%} (gained %{customdata[3]} of %{customdata[4]} wrong)<br>RGI %{customdata[6]} · N = %{customdata[5]}<extra></extra>"
                    ),
                ),
                row=row, col=col,
            )
            in_legend.add(method)
    fig.update_xaxes(range=[low, top], tickformat=".0%", zeroline=True, nticks=4)
    fig.update_yaxes(range=[low, top], tickformat=".0%", zeroline=True, nticks=4)
    # one title per direction for all panels: per-panel titles would not fit a panel's height
    axis_title = {"xref": "paper", "yref": "paper", "showarrow": False, "font": {"size": 13}}
    fig.add_annotation(text="ΔCon: baseline-correct answers lost (lower is better)", x=0.5, y=0, yshift=-45, **axis_title)
    fig.add_annotation(text="ΔHum: baseline-wrong answers avoided (higher is better)", x=0, y=0.5, xshift=-55, textangle=-90, **axis_title)
    fig.update_layout(
        title=f"Conservatism–humility plane (D = {'all items' if normalize == 'total' else 'group size'}; dotted: RGI ±0.25, ±0.5)",
        template=TEMPLATE,
        height=300 + 240 * (rows - 1) if rows > 1 else 480,
        margin={"l": 80, "r": 20, "t": 70, "b": 70},
        legend={"title": {"text": "method"}},
        title_font={"size": 14},
    )
    small_sample_note(fig, min(sizes.values()))
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


def _hover_data(p: MethodPoint) -> list:
    c = p.comparison
    return [p.group, c.lost_correct, c.baseline_correct, c.gained_humble, c.baseline_wrong, c.n, c.rgi_label, c.delta_con, c.delta_hum]


def rgi_bars(points: Sequence[MethodPoint]) -> go.Figure:
    """RGI per method, grouped by modality and total, each bar with its n and 95 % interval. An infinite RGI has no
    bar: it is a triangle labelled ±∞ in a shaded band above (or below) the scale, which the axis names ±∞; an undefined one is labelled n/a at 0
    (the hover text says why). Below MIN_N items the figure says the sample is too small."""
    if not points:
        return empty_figure("No RGI yet: run the baseline and at least one other method on the same items.", "Reliability Gain Index")
    fig = go.Figure()
    groups = list(dict.fromkeys(p.group for p in points))
    styles = method_styles([p.method for p in points])
    finite = [abs(p.comparison.rgi) for p in points if _finite(p.comparison.rgi) is not None]
    finite += [abs(v) for p in points if p.intervals is not None for v in (p.intervals.rgi.low, p.intervals.rgi.high) if _finite(v) is not None]
    edge = max([*finite, 0.25]) * 1.15  # the end of the finite scale; ±∞ markers sit in a band beyond it
    infinite = [p for p in points if p.comparison.rgi is not None and math.isinf(p.comparison.rgi)]
    for method, (colour, symbol) in styles.items():
        mine = {p.group: p for p in points if p.method == method}
        shown = [g for g in groups if g in mine and _finite(mine[g].comparison.rgi) is not None]
        if shown:
            fig.add_trace(_finite_bars(method, colour, [mine[g] for g in shown]))
        # infinite and undefined RGIs: a labelled marker, never a bar whose height could be read
        off = [g for g in groups if g in mine and _finite(mine[g].comparison.rgi) is None]
        if off:
            values = [mine[g].comparison.rgi for g in off]
            fig.add_trace(
                go.Scatter(
                    x=off,
                    y=[0 if v is None else math.copysign(edge * INFINITY_AT, v) for v in values],
                    mode="markers+text",
                    name=method,
                    legendgroup=method,
                    showlegend=not shown,
                    offsetgroup=method,
                    marker={"color": colour, "size": 16, "symbol": [_off_symbol(v) for v in values], "line": {"width": 1, "color": "white"}},
                    text=[f"{_short_label(mine[g].comparison)}<br>n={mine[g].comparison.n}" for g in off],
                    textfont={"size": 10},
                    textposition="top center",
                    cliponaxis=False,
                    customdata=[[mine[g].comparison.rgi_label, mine[g].comparison.n] for g in off],
                    hovertemplate="<b>%{fullData.name}</b> · %{x}<br>RGI %{customdata[0]} · n = %{customdata[1]}<extra></extra>",
                )
            )
    fig.add_hline(y=0, line_color="grey")
    # the ±∞ bands are off the scale: shaded, and named on the axis where a height would be read
    step = next(s for s in (0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0) if edge / s <= 3) if edge < 30 else edge / 3
    ticks = [k * step for k in range(-int(edge / step), int(edge / step) + 1)]
    labels = [f"{t:g}" for t in ticks]
    for sign, name in ((1, "+∞"), (-1, "−∞")):
        if any(math.copysign(1, p.comparison.rgi) == sign for p in infinite):
            fig.add_hrect(y0=sign * edge * 1.05, y1=sign * edge * 1.5, fillcolor="#e5e7eb", opacity=0.6, line_width=0, layer="below")
            ticks.append(sign * edge * INFINITY_AT)
            labels.append(name)
    fig.update_layout(
        title="Reliability Gain Index = log10(ΔHum / ΔCon) (higher is better)",
        barmode="group",
        yaxis={
            "title": "RGI (bars: 95 % intervals; shaded: off the scale)", "range": [-edge * 1.5, edge * 1.5], "zeroline": False,
            "tickvals": ticks, "ticktext": labels,
        },
        template=TEMPLATE,
        height=480,
        margin={"l": 70, "r": 20, "t": 60, "b": 60},
        legend={"title": {"text": "method"}},
        scattermode="group",
    )
    small_sample_note(fig, min(p.comparison.n for p in points))
    return fig


def _finite_bars(method: str, colour: str, points: Sequence[MethodPoint]) -> go.Bar:
    """One method's finite RGIs as bars, each labelled with its value and n, with its interval as an error bar."""
    return go.Bar(
        x=[p.group for p in points],
        y=[p.comparison.rgi for p in points],
        name=method,
        legendgroup=method,
        marker={"color": colour},
        text=[f"{p.comparison.rgi:.2f}<br>n={p.comparison.n}" for p in points],
        textposition="outside",
        textfont={"size": 10},
        cliponaxis=False,
        offsetgroup=method,
        customdata=[[p.comparison.rgi_label, p.comparison.n, _interval_text(p)] for p in points],
        error_y=_error_bars(points, "rgi"),
        hovertemplate="<b>%{fullData.name}</b> · %{x}<br>RGI %{customdata[0]} · n = %{customdata[1]}<br>%{customdata[2]}<extra></extra>",
    )


def small_sample_note(fig: go.Figure, n: int) -> None:
    """A banner across the figure when its smallest group has fewer than MIN_N items."""
    if n >= MIN_N:
        return
    fig.add_annotation(
        text=f"<b>Too small a sample to read:</b> n = {n} items (fewer than {MIN_N}).<br>"
        f"One answer moves a figure by {100 / max(n, 1):.0f} points: read the intervals, not the points.",
        x=0, xanchor="left", y=1, xref="paper", yref="paper", yanchor="bottom", yshift=28, showarrow=False, align="left",
        font={"size": 11, "color": "#92400e"}, bgcolor="#fef3c7", bordercolor="#f59e0b", borderwidth=1,
    )
    # above the panels' own titles, below the figure's, which moves to the top
    fig.update_layout(margin={"t": (fig.layout.margin.t or 60) + 60}, title={"y": 0.985, "yanchor": "top"})


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
    """A marker's label: "+∞", "−∞" or "n/a"; the full reason is in the hover text."""
    rgi = comparison.rgi
    if rgi is None:
        return "n/a"
    if math.isinf(rgi):
        return "+∞" if rgi > 0 else "−∞"
    return f"{rgi:.2f}"


def _off_symbol(rgi: float | None) -> str:
    return "circle-open" if rgi is None else ("triangle-up" if rgi > 0 else "triangle-down")


def _interval_text(point: MethodPoint) -> str:
    interval = point.intervals.rgi if point.intervals is not None else None
    if interval is None or interval.low is None or interval.high is None:
        return "no interval"
    return f"95 % interval {interval.low:.2f} to {interval.high:.2f}"


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
