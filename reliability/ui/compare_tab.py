"""The app's Compare tab: ask one clip with several methods side by side, each answer shown as it is ready.

`CompareHandlers` holds its handlers (plain methods over the services, testable without a browser);
`build_compare_tab(services)` lays the tab out inside the caller's `gr.Tab` and wires it.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr
import plotly.graph_objects as go
from gradio.events import Dependency

from reliability.services import Services
from reliability.services.compare import MODALITY_CHOICES, UNKNOWN_MODALITY, MethodResult, Waiting
from reliability.ui import render as ui_render
from reliability.ui.handlers import PRIVATE, clip_view, user_errors
from reliability.ui.render import method_title


@dataclass
class CompareTab:
    """What the other tabs connect to."""

    methods: gr.CheckboxGroup  # the methods offered; the Experiments tab adds each new adapter
    raw: gr.JSON  # the last request's results, as the API returns them
    asked: Dependency  # the Compare button's event, for what follows a request


class CompareHandlers:
    """Handlers of the Compare tab."""

    def __init__(self, services: Services):
        self.services = services

    def example_rows(self) -> list[list[Any]]:
        """Rows for gr.Examples: audio, question, options (one per line), answer key, modality."""
        return [
            [e["audio"], e["question"], "\n".join(e["choices"]), e["answer"] or "", e["modality"]]
            for e in self.services.compare.examples()
        ]

    def preview(self, audio_path: str | None) -> go.Figure:
        """The uploaded or recorded clip's waveform and spectrogram."""
        if not audio_path:
            return ui_render.no_audio_figure("Upload or record a clip, or click an example below.")
        return clip_view(audio_path)[1]

    @user_errors
    def compare(
        self, audio_path: str | None, question: str, options: str, answer: str, modality: str, methods: list[str], backend: str
    ) -> Iterator[tuple[str, str, list[dict[str, Any]]]]:
        """Run the selected methods; yields (status, result cards, raw results) after each method finishes."""
        choices = options_list(options)
        methods = [m for m in (methods or []) if m]
        backend = backend or self.services.pool.settings.backend
        start = time.perf_counter()
        stream = self.services.compare.compare(audio_path, question, choices, answer, methods, backend, modality or UNKNOWN_MODALITY, report_waits=True)
        if choices and not (answer or "").strip():
            gr.Warning("Options without an answer key: the answers are parsed and shown, but not judged correct or wrong.")
        elif not choices:
            gr.Info("No options: an open question. The answers are shown; only an abstention can be recognised.")
        results: dict[str, MethodResult] = {}
        loading = "" if self.services.pool.is_warm(backend) else " The first answer also loads the model (up to a minute on a CPU)."
        status = f"Asking {len(methods)} method(s) on **{backend}**…{loading}"
        yield status, ui_render.result_cards(methods, results, methods[0]), []
        for result in stream:
            if isinstance(result, Waiting):
                status = (
                    f"Waiting for the model on **{backend}**: {result.ahead} other request(s) use it or wait for it "
                    f"(other users' questions or a training run); {len(results)} of {len(methods)} done."
                )
                yield status, ui_render.result_cards(methods, results, result.method, waiting=result.ahead), [r.as_dict() for r in results.values()]
                continue
            results[result.method] = result
            if result.error:
                gr.Warning(f"{ui_render.method_title(result.method)}: {result.error}")
            running = next((m for m in methods if m not in results), None)
            status = f"{len(results)} of {len(methods)} done on **{backend}**" + (f"; running {ui_render.method_title(running)}…" if running else ".")
            yield status, ui_render.result_cards(methods, results, running), [r.as_dict() for r in results.values()]
        cached = sum(r.cached for r in results.values())
        status = (
            f"Done: {len(results)} answer(s), {cached} from the lab notebook's cache, in {time.perf_counter() - start:.1f} s. "
            "Label them in the **Annotate** tab."
        )
        yield status, ui_render.result_cards(methods, results), [results[m].as_dict() for m in methods if m in results]

def options_list(text: str | None) -> list[str]:
    """Options typed one per line; blank lines are ignored."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def build_compare_tab(services: Services) -> CompareTab:
    """Lay out and wire the tab inside the caller's `with gr.Tab(...):`."""
    ui, pool = CompareHandlers(services), services.pool
    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Clip (upload or record)", elem_id="lab-audio")
            clip_plot = gr.Plot(value=ui.preview(None), show_label=False)
        with gr.Column(scale=4):
            question = gr.Textbox(label="Question", lines=2, placeholder="e.g. What time does the museum open?", elem_id="lab-question")
            options = gr.Textbox(label="Options, one per line (empty: an open question)", lines=4, elem_id="lab-options")
            with gr.Row():
                answer = gr.Textbox(label="Answer key (an option's text or letter; optional)", scale=3, elem_id="lab-answer")
                modality = gr.Dropdown(list(MODALITY_CHOICES), value=UNKNOWN_MODALITY, label="Modality", scale=2, elem_id="lab-modality")
            methods = gr.CheckboxGroup(
                [(method_title(m), m) for m in pool.method_names()],
                value=pool.default_methods(),
                label="Methods (every LoRA adapter the backend can load is offered)",
            )
            backend = gr.Dropdown(pool.backend_names(), value=pool.settings.backend, label="Backend")
            backend_note = gr.Markdown(ui_render.backend_note(pool.settings.backend), elem_id="lab-backend-note")
            run = gr.Button("Compare", variant="primary", elem_id="lab-compare")
    examples = ui.example_rows()
    if examples:
        gr.Examples(
            examples, [audio, question, options, answer, modality], label="Example clips from the repository (click to load)",
            examples_per_page=5, elem_id="lab-examples",
        )
    status = gr.Markdown()
    cards = gr.HTML(elem_id="lab-results")
    with gr.Accordion("Raw results (JSON)", open=False):
        raw = gr.JSON(show_label=False)

    audio.change(ui.preview, audio, clip_plot, **PRIVATE)
    backend.change(ui_render.backend_note, backend, backend_note, **PRIVATE)
    asked = run.click(
        ui.compare, [audio, question, options, answer, modality, methods, backend], [status, cards, raw],
        concurrency_id="compare", concurrency_limit=4, **PRIVATE,
    )
    return CompareTab(methods, raw, asked)
