"""Plotly figures of the text-prior diagnostics, drawn from a DiagnosticsReport; this module computes no figure."""
from __future__ import annotations

import plotly.graph_objects as go

from reliability.diagnostics.measures import CATEGORIES, CATEGORY_NAMES, DiagnosticsReport
from reliability.metrics import TOTAL
from reliability.plots import TEMPLATE, empty_figure

# Audio-needed categories in blues, the text-answered ones in greens/oranges, unsolved grey: the eye
# reads "how much needs the audio" as the blue part of each bar.
CATEGORY_COLORS = {"TS": "#59a14f", "FS": "#4e79a7", "XS": "#1f3b73", "AH": "#f28e2b", "UN": "#bab0ac"}
GROUP_DASH = {TOTAL: "solid", "sound": "dot", "music": "dash", "speech": "dashdot"}


def category_bars(report: DiagnosticsReport, method: str | None = None) -> go.Figure:
    """Stacked bars of the per-item categories (shares of items) per modality and total, for one method."""
    method = method or report.reference
    table = report.category_table.get(method)
    title = f"Where the answers come from · {method}"
    if not table:
        return empty_figure(
            "No categories yet: run this method under full, none and at least one fragment condition (n<N>_chunk<K>).", title
        )
    groups = list(table)
    fig = go.Figure()
    for cat in CATEGORIES:
        fig.add_trace(
            go.Bar(
                x=groups,
                y=[table[g].shares[cat] or 0 for g in groups],
                name=f"{cat} {CATEGORY_NAMES[cat]}",
                marker_color=CATEGORY_COLORS[cat],
                text=[table[g].counts[cat] for g in groups],
                textposition="inside",
                customdata=[[table[g].n, _percent(table[g].xs_share)] for g in groups],
                hovertemplate=f"<b>{cat}</b> · %{{x}}<br>%{{text}} of %{{customdata[0]}} items (%{{y:.1%}})"
                "<br>XS share of audio-needed: %{customdata[1]}<extra></extra>",
            )
        )
    fig.update_layout(
        title=title,
        barmode="stack",
        yaxis={"title": "share of items", "tickformat": ".0%", "range": [0, 1]},
        template=TEMPLATE,
        height=420,
    )
    return fig


def retention_figure(report: DiagnosticsReport, method: str | None = None) -> go.Figure:
    """Retention (mean fragment accuracy / full accuracy) against the number of pieces N, one line per modality and total."""
    method = method or report.reference
    by_pieces = report.retention.get(method)
    title = f"Accuracy kept by fragments · {method}"
    if not by_pieces:
        return empty_figure("No retention yet: run this method under full and every chunk n<N>_chunk1..N of some N.", title)
    ns = sorted(by_pieces)
    groups = list(dict.fromkeys(g for n in ns for g in by_pieces[n]))
    fig = go.Figure()
    for g in groups:
        points = [by_pieces[n].get(g) for n in ns]
        fig.add_trace(
            go.Scatter(
                x=ns,
                y=[p.retention if p else None for p in points],
                mode="lines+markers",
                name=g,
                line={"dash": GROUP_DASH.get(g, "solid"), "width": 3 if g == TOTAL else 2},
                customdata=[[_percent(p.mean_acc), _percent(p.acc_full), p.n] if p else ["n/a", "n/a", 0] for p in points],
                hovertemplate="<b>%{fullData.name}</b> · N = %{x}<br>retention %{y:.1%}"
                "<br>mean fragment Acc %{customdata[0]} / full Acc %{customdata[1]} · %{customdata[2]} items<extra></extra>",
            )
        )
    fig.add_hline(y=1, line_color="grey", line_dash="dash")
    fig.update_layout(
        title=title,
        xaxis={"title": "pieces N (each asked alone)", "tickmode": "array", "tickvals": ns},
        yaxis={"title": "retention = mean fragment Acc / full Acc", "tickformat": ".0%", "rangemode": "tozero"},
        template=TEMPLATE,
        height=400,
    )
    return fig


def humility_bars(report: DiagnosticsReport) -> go.Figure:
    """Abstention rate with audio and with no audio, grouped per method: a reliable model abstains when the audio is missing."""
    title = "No-audio humility: abstention rate with and without audio"
    rows = [h for h in report.humility.values() if h.full.n or h.none.n]
    if not rows:
        return empty_figure("No answers yet: run methods under the full and none (no-audio) conditions.", title)
    methods = [h.method for h in rows]
    fig = go.Figure()
    for name, scores in (("with audio", [h.full for h in rows]), ("no audio", [h.none for h in rows])):
        fig.add_trace(
            go.Bar(
                x=methods,
                y=[s.rej or 0 for s in scores],
                name=name,
                text=["no run" if s.n == 0 else f"{s.rej:.0%}" for s in scores],
                textposition="outside",
                customdata=[[s.idk, s.n, _percent(s.acc)] for s in scores],
                hovertemplate="<b>%{x}</b> · %{fullData.name}<br>%{customdata[0]} idk of %{customdata[1]} items (%{y:.1%})"
                "<br>Acc %{customdata[2]}<extra></extra>",
            )
        )
    fig.update_layout(
        title=title,
        barmode="group",
        yaxis={"title": "abstention rate (idk / items)", "tickformat": ".0%", "range": [0, 1.1]},
        template=TEMPLATE,
        height=400,
    )
    return fig


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"
