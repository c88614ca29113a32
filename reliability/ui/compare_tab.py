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
from reliability.audio import load_audio
from reliability.services.compare import MODALITY_CHOICES, MethodResult, Waiting
from reliability.errors import AudioError
from reliability.services.modality import AUTO, UNKNOWN, Detection
from reliability.ui import render as ui_render
from reliability.ui.handlers import PRIVATE, clip_view, user_errors
from reliability.ui.render import method_title


@dataclass
class CompareTab:
    """What the other tabs connect to."""

    audio: gr.Audio  # the form's fields, which the Lesson tab fills
    question: gr.Textbox
    options: gr.Textbox
    answer: gr.Textbox
    modality: gr.Dropdown
    methods: gr.CheckboxGroup  # the methods offered; the Experiments tab adds each new adapter
    raw: gr.JSON  # the last request's results, as the API returns them
    asked: Dependency  # the Compare button's event, for what follows a request


class CompareHandlers:
    """Handlers of the Compare tab."""

    def __init__(self, services: Services):
        self.services = services

    def example_rows(self) -> list[list[Any]]:
        """Rows for gr.Examples: audio, question, options (one per line), answer key. No modality: every clip's own
        is detected, so none is carried over from an earlier example."""
        return [[e["audio"], e["question"], "\n".join(e["choices"]), e["answer"] or ""] for e in self.services.compare.examples()]

    def new_clip(self) -> dict[str, Any]:
        """A new clip (or none): the modality menu says it is detecting (its value went back to "detect" in the browser)."""
        return modality_menu(None, pending=True)

    def detect(self, audio_path: str | None, backend: str) -> dict[str, Any]:
        """The modality menu's "detect" entry named after what the listener hears in the clip; its value is untouched."""
        if not audio_path:
            return modality_menu(None)
        try:
            detection = self.services.modality.detect(load_audio(audio_path, self.services.pool.settings.max_seconds), backend or None)
        except AudioError as exc:  # an unreadable clip is reported by Compare; the menu only stays undetected
            detection = Detection(UNKNOWN, problem=str(exc))
        return modality_menu(detection)

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
        clip = load_audio(audio_path, self.services.pool.settings.max_seconds) if audio_path else None
        stored = self.services.modality.resolve(modality, clip, backend) if clip is not None else None
        stream = self.services.compare.compare(
            audio_path, question, choices, answer, methods, backend, stored.value if stored else modality, report_waits=True
        )
        head = ui_render.modality_line(stored) if stored else ""
        if choices and not (answer or "").strip():
            gr.Warning("Options without an answer key: the answers are parsed and shown, but not judged correct or wrong.")
        elif not choices:
            gr.Info("No options: an open question. The answers are shown; only an abstention can be recognised.")
        results: dict[str, MethodResult] = {}
        loading = "" if self.services.pool.is_warm(backend) else " The first answer also loads the model (up to a minute on a CPU)."
        status = f"Asking {len(methods)} method(s) on **{backend}**…{loading}"
        yield status, ui_render.result_cards(methods, results, methods[0], head=head), []
        for result in stream:
            if isinstance(result, Waiting):
                status = (
                    f"Waiting for the model on **{backend}**: {result.ahead} other request(s) use it or wait for it "
                    f"(other users' questions or a training run); {len(results)} of {len(methods)} done."
                )
                yield status, ui_render.result_cards(methods, results, result.method, waiting=result.ahead, head=head), [r.as_dict() for r in results.values()]
                continue
            results[result.method] = result
            if result.error:
                gr.Warning(f"{ui_render.method_title(result.method)}: {result.error}")
            running = next((m for m in methods if m not in results), None)
            status = f"{len(results)} of {len(methods)} done on **{backend}**" + (f"; running {ui_render.method_title(running)}…" if running else ".")
            yield status, ui_render.result_cards(methods, results, running, head=head), [r.as_dict() for r in results.values()]
        cached = sum(r.cached for r in results.values())
        status = (
            f"Done: {len(results)} answer(s), {cached} from the lab notebook's cache, in {time.perf_counter() - start:.1f} s. "
            "Label them in the **Annotate** tab."
        )
        yield status, ui_render.result_cards(methods, results, head=head), [results[m].as_dict() for m in methods if m in results]

def modality_menu(detection: Detection | None, pending: bool = False) -> dict[str, Any]:
    """The modality menu's choices: first "detect from the clip", named after the detection where there is one."""
    if detection is not None and not detection.problem:
        auto = f"{detection.modality} (detected)"
    else:
        auto = "detecting…" if pending else "detect from the clip"
    choices = [(auto, AUTO), *MODALITY_CHOICES]
    return gr.update(choices=choices, value=AUTO) if pending else gr.update(choices=choices)


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
                modality = gr.Dropdown(
                    [("detect from the clip", AUTO), *MODALITY_CHOICES], value=AUTO, label="Modality (detected; change it if wrong)",
                    scale=2, elem_id="lab-modality",
                )
            methods = gr.CheckboxGroup(
                [(method_title(m), m) for m in pool.method_names()],
                value=pool.default_methods(),
                label="Methods (every LoRA adapter the backend can load is offered)",
            )
            backend = gr.Dropdown(pool.backend_names(), value=pool.settings.backend, label="Backend")
            backend_note = gr.Markdown(ui_render.backend_note(pool.settings.backend), elem_id="lab-backend-note")
            run = gr.Button("Compare", variant="primary", elem_id="lab-compare")
    # the results come before the examples, and the page scrolls to them: below the examples they were off-screen
    status = gr.Markdown(elem_id="lab-status")
    cards = gr.HTML(elem_id="lab-results")
    with gr.Accordion("Raw results (JSON)", open=False):
        raw = gr.JSON(show_label=False)
    examples = ui.example_rows()
    if examples:
        gr.Examples(
            examples, [audio, question, options, answer], label="Example clips from the repository (click to load)",
            examples_per_page=5, elem_id="lab-examples",
        )

    # a new clip: at once, in the browser, the modality goes back to "detect" and the last results go, so that a
    # Compare pressed right away never sends the last clip's modality; then the listener names what it hears
    audio.change(None, None, [modality, status, cards, raw], js=f"() => [{AUTO!r}, '', '', null]", **PRIVATE).then(
        ui.new_clip, None, modality, **PRIVATE
    ).then(
        ui.detect, [audio, backend], modality, **PRIVATE
    )
    audio.change(ui.preview, audio, clip_plot, **PRIVATE)
    # the cards answered another question; in the browser alone, since it runs on every keystroke
    question.change(None, None, [status, cards, raw], js="() => ['', '', null]", **PRIVATE)
    backend.change(ui_render.backend_note, backend, backend_note, **PRIVATE)
    run.click(None, js="() => document.getElementById('lab-status')?.scrollIntoView({behavior: 'smooth', block: 'start'})")
    asked = run.click(
        ui.compare, [audio, question, options, answer, modality, methods, backend], [status, cards, raw],
        concurrency_id="compare", concurrency_limit=4, **PRIVATE,
    )
    return CompareTab(audio, question, options, answer, modality, methods, raw, asked)
