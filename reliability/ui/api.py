"""The app's API: endpoints a gradio_client calls by stable names (compare, label, human_answer, queue, metrics).

Every result is JSON-serialisable; `register_api(services)` adds them to the Blocks being built.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr
from gradio.data_classes import FileData

from reliability.services import Services
from reliability.services.modality import AUTO
from reliability.services.dashboard import HUMAN
from reliability.services.labelling import VERDICT_MODE, VIA_API
from reliability.ui.handlers import dashboard_filters, user_errors


class Api:
    """Endpoints for gradio_client, by stable names; every result is JSON-serialisable."""

    def __init__(self, services: Services):
        self.services = services

    @user_errors
    def compare(
        self,
        audio: FileData,
        question: str,
        options: list[str] | None = None,
        answer: str = "",
        methods: list[str] | None = None,
        backend: str = "",
        modality: str = AUTO,
    ) -> Iterator[list[dict[str, Any]]]:
        """Ask the clip with each method (default: the training-free ones and the shipped adapters, as the Compare tab ticks them);
        yields the results so far after each.

        audio: the clip, sent with gradio_client.handle_file(path). options: the choices ([] for an open
        question). answer: the key, an option's text or letter ("" for none). modality: speech, music, sound or
        unknown; "auto" (or "") detects it from the clip. Each result has method,
        error, cached, answer_id, text, choice, key, outcome, parsed, confidence, latency_s, steps, audio_type, tool.
        """
        path = _uploaded_path(audio)
        results = []
        methods = methods or self.services.pool.default_methods()
        for result in self.services.compare.compare(path, question, options or [], answer, methods, backend or None, modality):
            results.append(result.as_dict())
            yield results

    @user_errors
    def label(self, answer_id: str, verdict: str, annotator: str = "", request: gr.Request = None) -> dict[str, Any]:
        """Store an annotator's verdict (correct / wrong / idk) on a stored answer; returns the label."""
        return self.services.labels.label(answer_id, _api_annotator(annotator, request), verdict)

    @user_errors
    def human_answer(self, dataset: str, item_id: str, choice: str, annotator: str = "", request: gr.Request = None) -> dict[str, Any]:
        """Store an annotator's own answer to an item (an option's text, or "" / "I don't know")."""
        return self.services.labels.human_answer(dataset, item_id, _api_annotator(annotator, request), choice or None)

    @user_errors
    def queue(
        self,
        annotator: str = "",
        mode: str = VERDICT_MODE,
        dataset: str = "",
        modality: str = "",
        method: str = "",
        unsure_only: bool = False,
        unlabelled_only: bool = False,
        limit: int = 50,
        request: gr.Request = None,
    ) -> dict[str, Any]:
        """The annotator's tasks under the filters: {annotator, mode, total, done (labelled by them), position (where
        to resume), tasks: the first `limit` tasks}. In judge mode a task carries its answer key when it is the one
        to label next or one the annotator labelled already (or every task, signed in: see `_shown_keys`)."""
        queue = self.services.labels.queue(
            _api_annotator(annotator, request), mode, dataset or None, modality or None, method or None, unsure_only, unlabelled_only
        )
        data = queue.as_dict()
        data["tasks"] = data["tasks"][: max(limit, 0)]
        if queue.mode == VERDICT_MODE:  # the client now holds these keys: no blind human answer to those items after
            keyed = _shown_keys(data, signed_in=bool(getattr(request, "username", None)))
            self.services.labels.saw_keys(queue.annotator, keyed, VIA_API)
        return data

    @user_errors
    def metrics(self, source: str = HUMAN, dataset: str = "", backend: str = "", annotator: str = "", normalize: str = "total") -> dict[str, Any]:
        """The dashboard's data: {filters, dataset, rows, points, risk_coverage, agreement, counts}."""
        return self.services.dashboard.metrics(dashboard_filters(source, dataset, backend, annotator, normalize)).as_dict()


def register_api(services: Services) -> None:
    """Register the endpoints by their stable names (README "API"). Call it before any UI event, so that none
    takes a name: an event is named after its function unless the name is taken."""
    api = Api(services)
    gr.api(api.compare, api_name="compare", concurrency_id="compare", concurrency_limit=4)
    gr.api(api.label, api_name="label", concurrency_id="labels", concurrency_limit=8)
    gr.api(api.human_answer, api_name="human_answer", concurrency_id="labels", concurrency_limit=8)
    gr.api(api.queue, api_name="queue", concurrency_limit=8)
    gr.api(api.metrics, api_name="metrics", concurrency_id="dashboard", concurrency_limit=2)


def _uploaded_path(audio: Any) -> str:
    """The server-side path of a clip uploaded by a client. A bare path string is refused: only uploads (which
    Gradio has checked to lie in its upload folder) may be read, never an arbitrary file of the server."""
    if not isinstance(audio, dict) or not audio.get("path"):
        raise gr.Error("send the clip as a file: gradio_client.handle_file(path)")
    return audio["path"]


def _shown_keys(data: dict[str, Any], signed_in: bool) -> list[tuple[str, str]]:
    """The (dataset, item id) whose keys this queue answer shows; the others' `answer_key` become None.

    Signed in, the name is the caller's own: every task shows its key. Without auth a name is only a claim, so
    one call must not mark every key as seen by someone else (shutting them out of the blind baseline): only
    the task to label next shows its key, and those the name has labelled already (their keys count as seen).
    """
    shown = []
    for i, task in enumerate(data["tasks"]):
        if task["answer_key"] is not None and (signed_in or i == data["position"] or task["mine"] is not None):
            shown.append((task["dataset"], task["item_id"]))
        else:
            task["answer_key"] = None
    return shown


def _api_annotator(annotator: str, request: gr.Request | None) -> str:
    """With auth, an API client labels as the user it logged in as; naming someone else is refused."""
    username = getattr(request, "username", None) if request is not None else None
    if username and annotator and annotator.strip() != username:
        raise gr.Error(f"signed in as {username!r}; cannot label as {annotator!r}")
    return username or annotator
