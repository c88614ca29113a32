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
    def refresh(self, source: str, dataset: str, backend: str, annotator: str, normalize: str) -> tuple:
        """Every dashboard output plus a signature of the data shown: summary, plane, RGI bars, table,
        risk-coverage, agreement, dataset shown, signature."""
        board = self.services.dashboard.metrics(dashboard_filters(source, dataset, backend, annotator, normalize))
        headers, data = ui_render.table_rows(board)
        plane, rgi, curves = ui_render.dashboard_figures(board)
        return (
            ui_render.summary_text(board),
            plane,
            rgi,
            gr.update(value={"headers": headers, "data": data}, headers=headers),
            curves,
            ui_render.agreement_text(board),
            gr.update(value=board.dataset),
            _signature(board.as_dict()),
        )

    def tick(self, source: str, dataset: str, backend: str, annotator: str, normalize: str, signature: str) -> tuple:
        """The timer's refresh: the same outputs, left untouched when nothing changed (no flicker, no re-draw)."""
        outputs = self.refresh(source, dataset, backend, annotator, normalize)
        if outputs[-1] == signature:
            return tuple(gr.skip() for _ in outputs)
        return outputs

    @user_errors
    def export(self, source: str, dataset: str, backend: str, annotator: str, normalize: str) -> list[str]:
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


def build_dashboard_tab(services: Services, tab: gr.Tab, queue_filters: Sequence[gr.Dropdown]) -> DashboardTab:
    """Lay out and wire the tab inside the caller's `with gr.Tab(...) as tab:`; selecting it starts the live timer.

    `queue_filters` (the Annotate tab's dataset and method filters) get their choices with the dashboard's.
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
    with gr.Row():
        plane = gr.Plot(show_label=False, elem_id="lab-plane")
        rgi = gr.Plot(show_label=False, elem_id="lab-rgi")
    table = gr.Dataframe(elem_id="lab-table", label="Acc / Tru / Rel / Rej per method and modality, % with 95 % bootstrap intervals", interactive=False, wrap=True)
    agreement = gr.Markdown(elem_id="lab-agreement")
    curves = gr.Plot(show_label=False)
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=220):
            export = gr.Button("Prepare downloads")
            gr.Markdown("The table as CSV and the figures as one HTML page. A PNG of any figure: the camera button in its toolbar.")
        files = gr.File(label="Downloads", file_count="multiple", interactive=False, scale=3, height=120)
    timer = gr.Timer(DASHBOARD_SECONDS, active=False)
    signature = gr.State("")

    inputs = [d_source, d_dataset, d_backend, d_annotator, d_normalize]
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
