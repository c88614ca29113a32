"""The app's Text prior tab: how much of each method's score and abstention depends on the audio, from stored runs.

Runs are made with `python -m reliability diagnose` (or evaluate --condition); this tab asks no model.
"""
from __future__ import annotations

from typing import Any

import gradio as gr

from reliability.diagnostics import plots as diagnostic_plots
from reliability.diagnostics.measures import build_report, format_report
from reliability.services import Services
from reliability.services.dashboard import HUMAN
from reliability.ui.handlers import PRIVATE, SOURCES, user_errors

HELP = (
    "R_TP = Acc with no audio / Acc with audio (lower: the score needs the audio more). Categories per item: "
    "**TS** right with and without audio · **FS** needs audio, a fragment suffices · **XS** needs the whole clip · "
    "**AH** the audio hurts · **UN** wrong both ways. Make the runs with "
    "`python -m reliability diagnose --dataset NAME` (full, none and 14 fragment runs per method, cached)."
)
NO_RUNS = (
    "**No runs to diagnose yet.** Import a dataset and run the diagnostics, e.g. "
    "`python -m reliability import dataset reliability/data/mmau-test-mini.json` then "
    "`python -m reliability diagnose --dataset mmau-test-mini --conditions full,none --limit 50`; then press **Refresh**."
)


class DiagnosticsHandlers:
    """Handlers of the Text prior tab."""

    def __init__(self, services: Services):
        self.services = services

    def choices(self, dataset: str | None, backend: str | None) -> tuple[Any, Any]:
        """Dataset and backend dropdowns from the stored runs; current picks stay while they exist."""
        datasets, backends = self.services.catalog.run_choices(dataset)
        return (
            gr.update(choices=datasets, value=dataset if dataset in datasets else next(iter(datasets), None)),
            gr.update(choices=backends, value=backend if backend in backends else None),
        )

    @user_errors
    def refresh(self, dataset: str | None, backend: str | None, method: str | None, source: str) -> tuple:
        """Method dropdown, the report as text, category bars, retention, no-audio humility."""
        report = self.services.diagnostics.report(dataset, backend or None, human=source == HUMAN) if dataset else build_report({}, {})
        method = method if method in report.methods else (report.reference or None)
        return (
            gr.update(choices=list(report.methods), value=method),
            f"```\n{format_report(report)}\n```" if report.methods else NO_RUNS,
            diagnostic_plots.category_bars(report, method),
            diagnostic_plots.retention_figure(report, method),
            diagnostic_plots.humility_bars(report),
        )


def build_diagnostics_tab(services: Services, tab: gr.Tab | None = None) -> None:
    """Lay out and wire the tab inside the caller's `gr.Tab` (passed as `tab`, selecting it loads the stored runs)."""
    ui = DiagnosticsHandlers(services)
    empty = ui.refresh(None, None, None, HUMAN)
    gr.Markdown(HELP)
    with gr.Row():
        dataset = gr.Dropdown([], label="Dataset", allow_custom_value=True, elem_id="lab-prior-dataset")
        backend = gr.Dropdown([], label="Backend (default: the latest run's)", allow_custom_value=True)
        method = gr.Dropdown([], label="Method of the category and retention plots", allow_custom_value=True)
        source = gr.Radio(SOURCES, value=HUMAN, label="Outcomes from")
        refresh = gr.Button("Refresh", scale=0)
    summary = gr.Markdown(empty[1], elem_id="lab-diagnostics")
    with gr.Row():
        categories = gr.Plot(empty[2], show_label=False)
        retention = gr.Plot(empty[3], show_label=False)
    humility = gr.Plot(empty[4], show_label=False)
    inputs = [dataset, backend, method, source]
    outputs = [method, summary, categories, retention, humility]
    for control in (dataset, backend, method, source):
        control.input(ui.refresh, inputs, outputs, **PRIVATE)
    refresh.click(ui.choices, [dataset, backend], [dataset, backend], **PRIVATE).then(ui.refresh, inputs, outputs, **PRIVATE)
    if tab is not None:
        tab.select(ui.choices, [dataset, backend], [dataset, backend], **PRIVATE).then(ui.refresh, inputs, outputs, **PRIVATE)
