"""Plotly figures of the training experiments (transfer matrix heatmap, alpha sweep, IDK ratios), drawn from result rows; computes no metric."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from reliability.plots import TEMPLATE, empty_figure
from reliability.types import MODALITIES

TOTAL = "total"
RGI_COLOR_LIMIT = 1.0  # |RGI| at which the heatmap colour saturates; ±inf cells take the end colours


def transfer_heatmap(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """RGI of each adapter (trained on one modality, rows) on each evaluation modality and total (columns).

    A cell shows the RGI label: a number, "+inf"/"-inf" (one-sided change, drawn at the colour's end)
    or "undefined" (no change at all, left blank); the hover adds ΔCon, ΔHum and N.
    """
    if not rows:
        return empty_figure("No transfer result yet: run the transfer experiment.", "Cross-modal transfer (RGI)")
    trained = _ordered({r["train"] for r in rows})
    evaluated = [*_ordered({r["eval"] for r in rows if r["eval"] != TOTAL}), TOTAL]
    cell = {(r["train"], r["eval"]): r for r in rows}
    z, text, custom = [], [], []
    for t in trained:
        z.append([_colour_value(cell.get((t, e), {}).get("rgi")) for e in evaluated])
        text.append([cell[(t, e)]["rgi_label"].split(" ")[0] if (t, e) in cell else "" for e in evaluated])
        custom.append([_hover(cell.get((t, e))) for e in evaluated])
    fig = go.Figure(
        go.Heatmap(
            z=z, x=evaluated, y=trained, text=text, texttemplate="%{text}", customdata=custom,
            colorscale="RdBu", zmid=0, zmin=-RGI_COLOR_LIMIT, zmax=RGI_COLOR_LIMIT,
            colorbar={"title": "RGI"}, hovertemplate="trained on %{y}, evaluated on %{x}<br>%{customdata}<extra></extra>",
        )
    )
    fig.update_layout(
        title="Cross-modal transfer: RGI of a LoRA adapter trained on one modality (higher is better)",
        xaxis={"title": "evaluated on", "side": "bottom"},
        yaxis={"title": "trained on", "autorange": "reversed"},
        template=TEMPLATE,
        height=420,
    )
    return fig


def alpha_sweep_figure(rows: Sequence[Mapping[str, Any]], group: str = TOTAL) -> go.Figure:
    """ΔCon and ΔHum (left axis) and RGI (right axis) against LoRA alpha (log scale), for one group."""
    mine = sorted((r for r in rows if r["group"] == group), key=lambda r: r["alpha"])
    if not mine:
        return empty_figure("No alpha sweep yet: run the alpha sweep.", "LoRA alpha sweep")
    alphas = [r["alpha"] for r in mine]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for key, name, colour in (("delta_con", "ΔCon (lower is better)", "#dc2626"), ("delta_hum", "ΔHum (higher is better)", "#16a34a")):
        fig.add_trace(
            go.Scatter(x=alphas, y=[r[key] for r in mine], mode="lines+markers", name=name, line={"color": colour}, hovertemplate="alpha %{x}: %{y:.1%}<extra></extra>"),
            secondary_y=False,
        )
    fig.add_trace(
        go.Scatter(
            x=alphas, y=[_colour_value(r["rgi"]) for r in mine], mode="lines+markers+text", name="RGI (higher is better)",
            text=[r["rgi_label"].split(" ")[0] for r in mine], textposition="top center",
            line={"color": "#4f46e5", "dash": "dot"}, hovertemplate="alpha %{x}: RGI %{text}<extra></extra>",
        ),
        secondary_y=True,
    )
    fig.update_xaxes(title="LoRA alpha", type="log")
    fig.update_yaxes(title="ΔCon / ΔHum", tickformat=".0%", secondary_y=False)
    fig.update_yaxes(title="RGI", tickformat=".2f", secondary_y=True)
    fig.update_layout(title=f"LoRA alpha sweep ({group}): humility gained vs correct answers lost", template=TEMPLATE, height=420)
    return fig


def idk_ratio_figure(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Share of IDK targets for each K@N, one line per modality and total (reliability.training.idk_dataset.idk_ratios rows)."""
    if not rows:
        return empty_figure("No K@N samples yet: build an IDK dataset.", "IDK ratio per K@N")
    fig = go.Figure()
    for group in dict.fromkeys(r["group"] for r in rows):
        mine = [r for r in rows if r["group"] == group]
        fig.add_trace(
            go.Scatter(
                x=[f"{r['k']}@{r['n']}" for r in mine], y=[r["ratio"] for r in mine], mode="lines+markers", name=f"{group} (n={mine[0]['items']})",
                line={"width": 3 if group == TOTAL else 2}, hovertemplate="%{x}: %{y:.1%} IDK<extra></extra>",
            )
        )
    fig.update_layout(
        title="IDK targets per K@N (the paper: 50.2 % at 1@5, 63.5 % at 5@5)",
        xaxis={"title": "K@N"}, yaxis={"title": "share of targets that are \"I don't know\"", "tickformat": ".0%", "rangemode": "tozero"},
        template=TEMPLATE, height=380,
    )
    return fig


def _ordered(names) -> list[str]:
    rank = {m: i for i, m in enumerate(MODALITIES)}
    return sorted(names, key=lambda g: (rank.get(g, len(rank)), g))


def _colour_value(rgi: float | None) -> float | None:
    """A drawable RGI: ±inf pinned to the colour limits, undefined left empty."""
    if rgi is None:
        return None
    if math.isinf(rgi):
        return math.copysign(RGI_COLOR_LIMIT, rgi)
    return rgi


def _hover(row: Mapping[str, Any] | None) -> str:
    if not row:
        return "no result"
    con = "-" if row["delta_con"] is None else f"{row['delta_con']:.1%}"
    hum = "-" if row["delta_hum"] is None else f"{row['delta_hum']:.1%}"
    return f"RGI {row['rgi_label']}<br>ΔCon {con} · ΔHum {hum} · N = {row['n']}"
