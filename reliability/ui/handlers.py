"""What the app's tabs and its API share: the one place user errors become gr.Error, the filter values, the clip view.

Each tab's own handlers live beside its layout (compare_tab, label_tab, dashboard_tab, experiments_tab,
diagnostics_tab), the API's in api.py; all of them are plain methods over the services, testable without a browser.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import gradio as gr
import numpy as np
import plotly.graph_objects as go

from reliability.audio import SAMPLE_RATE, load_audio
from reliability.errors import AudioError, ReliabilityError, translating
from reliability.services import Services
from reliability.services.dashboard import HUMAN, PARSER, DashboardFilters
from reliability.ui import render as ui_render

log = logging.getLogger(__name__)

ALL = "(all)"  # filter value meaning "no filter"
SOURCES = [("human labels where they exist", HUMAN), ("parser only", PARSER)]
PRIVATE = {"api_visibility": "private"}  # UI events; the API is the named endpoints of api.py


def user_errors(fn: Callable) -> Callable:
    """Show the lab's errors as one-line gr.Error messages (also what an API client receives as AppError).

    A user's mistake is one warning line in the terminal (its traceback only at DEBUG level, `--debug`).
    Anything else is logged with its traceback and shown as a short internal error, so one bad request
    never stops the server for the other users.
    """

    def quiet(error: gr.Error) -> gr.Error:
        error.print_exception = False  # Gradio would print a traceback for every mistyped form
        log.warning("%s: %s", fn.__name__, error.message)
        log.debug("where %s raised it", fn.__qualname__, exc_info=True)
        return error

    def translate(exc: Exception) -> gr.Error:
        if isinstance(exc, ReliabilityError):
            return quiet(gr.Error(str(exc)))
        log.exception("unexpected error in %s", fn.__qualname__)
        return gr.Error(f"internal error ({type(exc).__name__}); the server log has the details", print_exception=False)

    return translating(fn, Exception, lambda exc: quiet(exc) if isinstance(exc, gr.Error) else translate(exc))



def annotator_name(typed: str | None, request: gr.Request | None) -> str:
    """Who is labelling: the logged-in user when the app has auth, else the name typed in the browser."""
    username = getattr(request, "username", None) if request is not None else None
    return username or (typed or "").strip()



def clip_view(path: str | None, title: str = "") -> tuple[tuple[int, np.ndarray] | None, go.Figure]:
    """A clip for an audio player (16-bit PCM) and its waveform + spectrogram figure; an empty state without one."""
    if not path:
        return None, ui_render.no_audio_figure("No audio attached to this item.")
    try:
        clip = load_audio(path)
    except AudioError as exc:
        gr.Warning(str(exc))
        return None, ui_render.no_audio_figure(f"Cannot show the audio: {exc}")
    pcm = (np.clip(clip.samples, -1.0, 1.0) * 32767).astype(np.int16)
    return (SAMPLE_RATE, pcm), ui_render.audio_figure(clip.samples, title=title)



def health(services: Services) -> Any:
    """On page load: a visible banner (and a warning toast) when the lab database cannot be used."""
    problems = services.pool.check()
    for problem in problems:
        gr.Warning(problem)
    return gr.update(value="  \n".join(f"**The lab notebook cannot be used:** {p}" for p in problems), visible=bool(problems))


def choice_value(choice: str | None) -> str | None:
    """A filter dropdown's value as a service argument: None for no filter."""
    return None if choice in (None, "", ALL) else choice


def dashboard_filters(source: str, dataset: str, backend: str, annotator: str, normalize: str) -> DashboardFilters:
    """The dashboard's filters from its controls' values (or an API call's arguments)."""
    return DashboardFilters(choice_value(dataset), choice_value(backend), choice_value(annotator), source or HUMAN, normalize or "total")
