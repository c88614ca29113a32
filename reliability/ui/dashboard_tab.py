"""The app's Dashboard tab: the conservatism–humility plane, RGI bars, metric table, risk-coverage and agreement, live.

`DashboardHandlers` holds its handlers (plain methods over the services, testable without a browser);
`build_dashboard_tab(services, tab, queue_filters)` lays the tab out inside the caller's `gr.Tab` and wires it.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from reliability.exports import export_table
from reliability.services import Services
from reliability.services.dashboard import HUMAN
from reliability.ui import render as ui_render
from reliability.ui.handlers import ALL, PRIVATE, SOURCES, dashboard_filters, user_errors

NORMALIZE = [("all items (paper)", "total"), ("group size", "group")]
DASHBOARD_SECONDS = 5.0  # the open dashboard re-reads the notebook this often
METRICS_DOC = "docs/METRICS.md"  # the exact definitions, in the repository

# The definitions as docs/METRICS.md gives them, a worked example with counts, and how to read the figures.
EXPLAINED = """
Every answer is **correct**, **wrong** or **idk** (the model said "I don't know"). Over N items with N_c correct,
N_w wrong and N_r idk:

| | formula | says | better |
|---|---|---|---|
| **Acc**uracy | `Acc = N_c / N` | how often it is right | higher |
| **Tru**thfulness | `Tru = (N_c + N_r) / N = 1 − N_w / N` | how often it is *not wrong*: an honest "I don't know" counts | higher |
| **Rej**ection rate | `Rej = N_r / N` | how often it abstains | neither |
| **Rel**iability | `Rel = Rej · Acc + (1 − Rej) · Tru` | Acc and Tru weighed by how much it abstains | higher |

A method is compared with the **baseline** on the same items. **ΔCon** (conservatism, lower is better) is the share
of items the baseline got right that the method no longer gets right; **ΔHum** (humility, higher is better) the share
the baseline got wrong that the method no longer gets wrong. Both are divided by all N items (the paper's choice; the
"ΔCon / ΔHum over" switch divides by the group sizes instead). **RGI** `= log10(ΔHum / ΔCon)`: above 0 the method
avoided more wrong answers than it lost right ones. ΔCon = 0 with ΔHum > 0 gives **+∞** (nothing lost), the reverse
**−∞**, both 0 leaves RGI undefined.

**A worked example.** 20 questions. The baseline gets 12 right and 8 wrong. IDK prompting keeps 10 of the 12 and says
"I don't know" on the other 2; of the 8 it got wrong, it now gets 1 right, abstains on 3 and is still wrong on 4.
So IDK prompting has 11 correct, 5 idk, 4 wrong: Acc = 11/20 = 55 %, Tru = 16/20 = 80 %, Rej = 5/20 = 25 %,
Rel = 0.25 · 55 % + 0.75 · 80 % = 74 %. It lost 2 right answers, ΔCon = 2/20 = 10 %, and avoided 4 wrong ones,
ΔHum = 4/20 = 20 %: RGI = log10(20 / 10) = 0.30. The baseline's Rel is its Acc, 60 %.

**Reading the plane.** Each method is one point per modality: ΔCon across, ΔHum up. On the dashed diagonal
(RGI = 0) it lost as many right answers as wrong ones it avoided; **above it (up and to the left) is better**. The
dotted lines are RGI ±0.25 and ±0.5 (ΔHum 1.8 and 3.2 times ΔCon). The bars through a point are its 95 % bootstrap
interval: where they cross the diagonal, the data cannot tell whether the method helped. With few items (n is in each
panel's title) one answer moves a point a long way, so read the intervals before the points.

**The intervals** in the table (hover a figure) and in the figures are 95 % percentile bootstrap intervals over the
items. The full definitions, edge cases and reference values are in the repository's
[{doc}]({link}).
"""


@dataclass
class DashboardTab:
    """What the page and the other tabs connect to: the live timer and the events that reload the dashboard."""

    timer: gr.Timer  # ticks only while the tab is open
    update_filters: dict[str, Any]  # event arguments: every filter dropdown's choices from the notebook
    refresh: dict[str, Any]  # event arguments: every dashboard output from the filters


class DashboardHandlers:
    """Handlers of the Dashboard tab."""

    def __init__(self, services: Services):
        self.services = services

    @user_errors
    def filters(self) -> tuple:
        """Choices of every filter dropdown, from what the notebook holds now: dashboard dataset, backend,
        annotator; queue dataset, method."""
        c = self.services.catalog.filter_choices()
        everything = [ALL]
        return (
            gr.update(choices=c["datasets"]),
            gr.update(choices=everything + c["backends"]),
            gr.update(choices=everything + c["annotators"]),
            gr.update(choices=everything + c["datasets"]),
            gr.update(choices=everything + c["methods"]),
        )

    @user_errors
    def refresh(self, source: str, dataset: str, backend: str, annotator: str, normalize: str, all_columns: bool = False) -> tuple:
        """Every dashboard output plus a signature of the data shown: summary, plane, RGI bars, table,
        risk-coverage, agreement, dataset shown, signature."""
        board = self.services.dashboard.metrics(dashboard_filters(source, dataset, backend, annotator, normalize))
        plane, rgi, curves = ui_render.dashboard_figures(board)
        return (
            ui_render.summary_text(board),
            plane,
            rgi,
            ui_render.table_html(board, all_columns),
            curves,
            ui_render.agreement_text(board),
            gr.update(value=board.dataset),
            _signature({**board.as_dict(), "all_columns": all_columns}),
        )

    def tick(self, source: str, dataset: str, backend: str, annotator: str, normalize: str, all_columns: bool, signature: str) -> tuple:
        """The timer's refresh: the same outputs, left untouched when nothing changed (no flicker, no re-draw)."""
        outputs = self.refresh(source, dataset, backend, annotator, normalize, all_columns)
        if outputs[-1] == signature:
            return tuple(gr.skip() for _ in outputs)
        return outputs

    @user_errors
    def export(self, source: str, dataset: str, backend: str, annotator: str, normalize: str, all_columns: bool = False) -> list[str]:
        """Files to download: the metric table as CSV and the figures as one standalone HTML page."""
        board = self.services.dashboard.metrics(dashboard_filters(source, dataset, backend, annotator, normalize))
        if board.empty:
            raise gr.Error("Nothing to export yet: the dashboard is empty.")
        table = self.services.dashboard.export_path(f"metrics-{board.dataset}.csv")
        export_table(board.rows, table, "csv")
        page = self.services.dashboard.export_path(f"figures-{board.dataset}.html")
        with open(page, "w", encoding="utf-8") as f:
            f.write(ui_render.figures_page(ui_render.dashboard_figures(board), f"Reliability lab: {board.dataset}"))
        return [table, page]


def _signature(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_dashboard_tab(services: Services, tab: gr.Tab, queue_filters: Sequence[gr.Dropdown], metrics_link: str = METRICS_DOC) -> DashboardTab:
    """Lay out and wire the tab inside the caller's `with gr.Tab(...) as tab:`; selecting it starts the live timer.

    `queue_filters` (the Annotate tab's dataset and method filters) get their choices with the dashboard's;
    `metrics_link` is where the page serves docs/METRICS.md.
    """
    ui = DashboardHandlers(services)
    with gr.Row():
        d_source = gr.Radio(SOURCES, value=HUMAN, label="Outcomes from")
        d_dataset = gr.Dropdown([], label="Dataset", allow_custom_value=True)
        d_backend = gr.Dropdown([ALL], value=ALL, label="Backend", allow_custom_value=True)
        d_annotator = gr.Dropdown([ALL], value=ALL, label="Annotator", allow_custom_value=True)
        d_normalize = gr.Radio(NORMALIZE, value="total", label="ΔCon / ΔHum over")
        d_refresh = gr.Button("Refresh", scale=0)
    summary = gr.Markdown(elem_id="lab-summary")
    with gr.Accordion("What the numbers mean", open=False, elem_id="lab-explain"):
        gr.Markdown(EXPLAINED.format(doc=METRICS_DOC, link=metrics_link))
    with gr.Row():
        plane = gr.Plot(show_label=False, elem_id="lab-plane")
        rgi = gr.Plot(show_label=False, elem_id="lab-rgi")
    with gr.Row(equal_height=True):
        gr.Markdown("**Per method and modality**, rates in %", elem_id="lab-table-title")
        d_columns = gr.Checkbox(False, label="all columns (Rej, ΔCon, ΔHum, MMAU Acc, …, with intervals)", scale=0, min_width=360, elem_id="lab-all-columns")
    table = gr.HTML(elem_id="lab-table")
    agreement = gr.Markdown(elem_id="lab-agreement")
    curves = gr.Plot(show_label=False)
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=220):
            export = gr.Button("Prepare downloads")
            gr.Markdown("The table as CSV and the figures as one HTML page. A PNG of any figure: the camera button in its toolbar.")
        files = gr.File(label="Downloads", file_count="multiple", interactive=False, scale=3, height=120)
    timer = gr.Timer(DASHBOARD_SECONDS, active=False)
    signature = gr.State("")

    inputs = [d_source, d_dataset, d_backend, d_annotator, d_normalize, d_columns]
    outputs = [summary, plane, rgi, table, curves, agreement, d_dataset, signature]
    refresh = dict(fn=ui.refresh, inputs=inputs, outputs=outputs, concurrency_id="dashboard", concurrency_limit=2, **PRIVATE)
    update_filters = dict(fn=ui.filters, inputs=None, outputs=[d_dataset, d_backend, d_annotator, *queue_filters], **PRIVATE)
    for control in inputs:
        control.input(**refresh)  # .input: only the user's changes, not refresh's own update of d_dataset
    d_refresh.click(**update_filters).then(**refresh)
    timer.tick(ui.tick, [*inputs, signature], outputs, concurrency_id="dashboard", concurrency_limit=2, **PRIVATE)
    tab.select(lambda: gr.Timer(active=True), None, timer, **PRIVATE).then(**update_filters).then(**refresh)
    export.click(ui.export, inputs, files, **PRIVATE)
    return DashboardTab(timer, update_filters, refresh)
