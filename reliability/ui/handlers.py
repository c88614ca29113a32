"""Gradio handlers of the lab app and its API endpoints: plain methods over the services, testable without a browser.

`Handlers` serves the three tabs (each method takes the inputs of one event and returns its outputs);
`Api` holds the endpoints a gradio_client calls by name (compare, label, human_answer, queue, metrics),
each returning JSON-serialisable data. Both turn the lab's one-line errors into gr.Error here and only here.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr
import numpy as np
import plotly.graph_objects as go
from gradio.data_classes import FileData

from reliability.ui import render as ui_render
from reliability.audio import SAMPLE_RATE, load_audio
from reliability.errors import AudioError, ItemError, ReliabilityError
from reliability.exports import export_table
from reliability.methods import method_names
from reliability.services import Services
from reliability.services.compare import LAB_DATASET, UNKNOWN_MODALITY, MethodResult, Waiting
from reliability.services.dashboard import HUMAN, PARSER, DashboardFilters
from reliability.services.labelling import HUMAN_MODE, IDK_CHOICE, VERDICT_MODE, VIA_API, VIA_COMPARE, VIA_VERDICT, modality_counts

log = logging.getLogger(__name__)

ALL = "(all)"  # filter value meaning "no filter"
MAX_CHOICES = 9  # choice buttons in human-baseline mode, on keys 1-9 and A-I
MODES = [("Judge model answers", VERDICT_MODE), ("Answer yourself (human baseline)", HUMAN_MODE)]
SOURCES = [("human labels where they exist", HUMAN), ("parser only", PARSER)]
NORMALIZE = [("all items (paper)", "total"), ("group size", "group")]
VERDICTS = ("correct", "wrong", "idk")


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

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error as error:
                raise quiet(error)
            except Exception as exc:
                raise translate(exc) from exc

        return generator

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error as error:
            raise quiet(error)
        except Exception as exc:
            raise translate(exc) from exc

    return call


def annotator_name(typed: str | None, request: gr.Request | None) -> str:
    """Who is labelling: the logged-in user when the app has auth, else the name typed in the browser."""
    username = getattr(request, "username", None) if request is not None else None
    return username or (typed or "").strip()


def options_list(text: str | None) -> list[str]:
    """Options typed one per line; blank lines are ignored."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


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


class Handlers:
    """Event handlers of the three tabs."""

    def __init__(self, services: Services):
        self.services = services

    def health(self) -> Any:
        """On page load: a visible banner (and a warning toast) when the lab database cannot be used."""
        problems = self.services.pool.check()
        for problem in problems:
            gr.Warning(problem)
        return gr.update(value="  \n".join(f"**The lab notebook cannot be used:** {p}" for p in problems), visible=bool(problems))

    # ------------------------------------------------------------ compare

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

    # ------------------------------------------------------------ annotate

    def whoami(self, stored: str | None, request: gr.Request) -> Any:
        """On page load: the name field, locked to the login when the app has auth, else the name this browser kept."""
        username = getattr(request, "username", None)
        if username:
            return gr.update(value=username, interactive=False, info="signed in")
        return gr.update(value=stored or "")

    @user_errors
    def load_queue(
        self, typed: str, mode: str, dataset: str, modality: str, method: str, unsure: bool, unlabelled: bool, request: gr.Request
    ) -> tuple:
        """Load the annotator's queue under the filters and open it where they stopped."""
        annotator = annotator_name(typed, request)
        queue = self.services.labels.queue(
            annotator, mode, _value(dataset), _value(modality), _value(method), bool(unsure), bool(unlabelled)
        )
        state = {
            "annotator": queue.annotator, "mode": queue.mode, "tasks": queue.tasks, "pos": queue.position,
            "left_out": queue.left_out, "confirm": None, "ack": 0,
        }
        if queue.tasks and queue.done:
            gr.Info(f"Resuming at item {queue.position + 1}: {queue.done} of {len(queue.tasks)} already labelled by {annotator}.")
        return (state, *self.show(state))

    def switch_mode(
        self, typed: str, mode: str, dataset: str, modality: str, method: str, unsure: bool, unlabelled: bool, request: gr.Request
    ) -> tuple:
        """A new mode at once: its queue when a name is known, else an empty view with that mode's buttons only."""
        if annotator_name(typed, request):
            return self.load_queue(typed, mode, dataset, modality, method, unsure, unlabelled, request)
        state = {"annotator": None, "mode": mode, "tasks": [], "pos": 0, "left_out": {}, "confirm": None, "ack": 0}
        return (state, *self.show(state))

    def move(self, state: dict | None, delta: int) -> tuple:
        """Previous (-1) or next (+1) task."""
        if _usable(state, None):
            state = {**state, "pos": min(max(state["pos"] + delta, 0), len(state["tasks"]) - 1), "confirm": None}
        return self._ack(state)

    def verdict(self, state: dict | None, verdict: str) -> tuple:
        """Store the annotator's verdict on the current answer and go to the next unlabelled one."""
        return self._label(state, VERDICT_MODE, lambda task: (verdict, lambda: self.services.labels.label(task.answer_id, state["annotator"], verdict)))

    def choose(self, state: dict | None, index: int) -> tuple:
        """Store the annotator's own answer (option `index`, or -1 for "I don't know") and go on."""

        def pick(task):
            if index >= len(task.item.choices):
                raise ItemError(f"this item has no option {index + 1}")
            choice = None if index < 0 else task.item.choices[index]
            return choice or IDK_CHOICE, lambda: self.services.labels.human_answer(task.item.dataset, task.item.id, state["annotator"], choice)

        return self._label(state, HUMAN_MODE, pick)

    def _label(self, state: dict | None, mode: str, pick: Callable[[Any], tuple[str, Callable[[], Any]]]) -> tuple:
        """Every press ends here: stored and on to the next task, or a message saying why nothing changed.

        :param pick: the current task -> (the label it would get, the call that stores it)
        Never raises, so the browser's key buffer always hears back (the view's ack counter moves).
        """
        if not _usable(state, mode):
            return self._ack(state)
        task, pos = state["tasks"][state["pos"]], state["pos"]
        try:
            value, save = pick(task)
        except ReliabilityError as exc:
            gr.Warning(str(exc))
            return self._ack(state)
        if task.mine == value:
            gr.Info(f"Already labelled “{value}”: unchanged.")
            return self._ack({**state, "confirm": None})
        if task.key_seen:
            gr.Warning("You saw this item's answer key after answering it, so your answer stays as it was.")
            return self._ack(state)
        if task.mine is not None and state.get("confirm") != (task.key, value):
            gr.Warning(f"Your label here is “{task.mine}”. Press the same key (or button) again to change it to “{value}”.")
            return self._ack({**state, "confirm": (task.key, value)})
        try:
            save()
        except ReliabilityError as exc:
            gr.Warning(str(exc))
            return self._ack({**state, "confirm": None})
        except Exception as exc:  # the key buffer must hear back; the log keeps the traceback
            log.exception("storing a label failed")
            gr.Warning(f"internal error ({type(exc).__name__}); nothing was stored")
            return self._ack({**state, "confirm": None})
        tasks = list(state["tasks"])
        tasks[pos] = dataclasses.replace(task, mine=value)
        # on to the next task this annotator has not labelled, after this one and then from the start
        order = list(range(pos + 1, len(tasks))) + list(range(pos))
        nxt = next((i for i in order if tasks[i].mine is None), None)
        if nxt is None:
            gr.Info(f"All {len(tasks)} labelled. Thank you! Changing a label now takes its key twice.")
            nxt = pos  # stay: a stray key must not land on another task
        return self._ack({**state, "tasks": tasks, "pos": nxt, "confirm": None})

    def _ack(self, state: dict | None) -> tuple:
        """The view after a press, with the ack counter moved so the browser sends the next buffered key."""
        state = {"mode": VERDICT_MODE, "tasks": [], "pos": 0, "confirm": None, **(state or {})}
        state["ack"] = state.get("ack", 0) + 1
        return (state, *self.show(state))

    def note_compare_keys(self, typed: str, results: list[dict[str, Any]] | None, request: gr.Request) -> None:
        """After a Compare: whoever typed an answer key has seen it (no blind human answer to that item by them)."""
        name = annotator_name(typed, request)
        items = [(LAB_DATASET, r["item_id"]) for r in results or [] if r.get("key") and r.get("item_id")]
        if name and items:
            self.services.labels.saw_keys(name, items, VIA_COMPARE)

    def show(self, state: dict | None) -> tuple:
        """Outputs of the annotate view: progress, audio, clip figure, task, verdict row, choice row, choice buttons."""
        tasks = (state or {}).get("tasks") or []
        mode = (state or {}).get("mode", VERDICT_MODE)
        ack = (state or {}).get("ack", 0)
        if not tasks:
            who = (state or {}).get("annotator")
            progress = ui_render.progress_text(0, 0, 0, who, left_out=state.get("left_out")) if who else "Type your name and load the queue."
            figure = ui_render.no_audio_figure("The clip of the task shows here.")
            hidden = [gr.update(visible=False)] * MAX_CHOICES
            return (
                progress, None, figure, ui_render.task_html(None, ack=ack), gr.update(visible=mode == VERDICT_MODE),
                gr.update(visible=mode == HUMAN_MODE), *hidden,
            )
        task = tasks[state["pos"]]
        done = sum(t.mine is not None for t in tasks)
        if mode == VERDICT_MODE and task.item.answer is not None:
            try:
                self.services.labels.saw_keys(state["annotator"], [(task.item.dataset, task.item.id)], VIA_VERDICT)
            except ReliabilityError as exc:  # e.g. a read-only notebook: nothing can be stored, the view still shows
                gr.Warning(str(exc))
        audio, figure = clip_view(task.item.audio_path)
        choices = task.item.choices if mode == HUMAN_MODE else ()
        if len(choices) > MAX_CHOICES:
            gr.Warning(f"This item has {len(choices)} options; only the first {MAX_CHOICES} have buttons.")
        buttons = [
            gr.update(visible=i < len(choices), value=ui_render.choice_label(i, choices[i]) if i < len(choices) else "",
                      variant="primary" if i < len(choices) and choices[i] == task.mine else "secondary",
                      interactive=not task.key_seen)
            for i in range(MAX_CHOICES)
        ]
        progress = ui_render.progress_text(
            state["pos"], len(tasks), done, state["annotator"], modality_counts(tasks), state.get("left_out"),
        )
        return (
            progress,
            audio,
            figure,
            ui_render.task_html(task, ack=ack),
            gr.update(visible=mode == VERDICT_MODE),
            gr.update(visible=mode == HUMAN_MODE),
            *buttons,
        )

    # ------------------------------------------------------------ dashboard

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
        board = self.services.dashboard.metrics(_filters(source, dataset, backend, annotator, normalize))
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
        board = self.services.dashboard.metrics(_filters(source, dataset, backend, annotator, normalize))
        if board.empty:
            raise gr.Error("Nothing to export yet: the dashboard is empty.")
        table = self.services.dashboard.export_path(f"metrics-{board.dataset}.csv")
        export_table(board.rows, table, "csv")
        page = self.services.dashboard.export_path(f"figures-{board.dataset}.html")
        with open(page, "w", encoding="utf-8") as f:
            f.write(ui_render.figures_page(ui_render.dashboard_figures(board), f"Reliability lab: {board.dataset}"))
        return [table, page]


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
        modality: str = UNKNOWN_MODALITY,
    ) -> Iterator[list[dict[str, Any]]]:
        """Ask the clip with each method (default: every registered training-free one); yields the results so far after each.

        audio: the clip, sent with gradio_client.handle_file(path). options: the choices ([] for an open
        question). answer: the key, an option's text or letter ("" for none). Each result has method,
        error, cached, answer_id, text, choice, key, outcome, parsed, confidence, latency_s, steps, audio_type, tool.
        """
        path = _uploaded_path(audio)
        results = []
        for result in self.services.compare.compare(path, question, options or [], answer, methods or method_names(), backend or None, modality):
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
        to resume), tasks: the first `limit` tasks}."""
        queue = self.services.labels.queue(
            _api_annotator(annotator, request), mode, dataset or None, modality or None, method or None, unsure_only, unlabelled_only
        )
        data = queue.as_dict()
        data["tasks"] = data["tasks"][: max(limit, 0)]
        if queue.mode == VERDICT_MODE:  # the client now holds these keys: no blind human answer to those items after
            keyed = [(t["dataset"], t["item_id"]) for t in data["tasks"] if t["answer_key"] is not None]
            self.services.labels.saw_keys(queue.annotator, keyed, VIA_API)
        return data

    @user_errors
    def metrics(self, source: str = HUMAN, dataset: str = "", backend: str = "", annotator: str = "", normalize: str = "total") -> dict[str, Any]:
        """The dashboard's data: {filters, dataset, rows, points, risk_coverage, agreement, counts}."""
        return self.services.dashboard.metrics(_filters(source, dataset, backend, annotator, normalize)).as_dict()


def _value(choice: str | None) -> str | None:
    return None if choice in (None, "", ALL) else choice


def _filters(source: str, dataset: str, backend: str, annotator: str, normalize: str) -> DashboardFilters:
    return DashboardFilters(_value(dataset), _value(backend), _value(annotator), source or HUMAN, normalize or "total")


def _signature(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _usable(state: dict | None, mode: str | None) -> bool:
    """Whether a press can act on the current task; if not, a warning says why."""
    if not state or not state.get("annotator"):
        why = "Load the queue first: type your name and press Load queue."
    elif not state.get("tasks"):
        why = "This queue has no tasks: change the filters or the mode and load it again."
    elif mode is not None and state["mode"] != mode:
        why = "That key belongs to the other annotation mode; switch the mode to use it."
    else:
        return True
    gr.Warning(why)
    return False


def _uploaded_path(audio: Any) -> str:
    """The server-side path of a clip uploaded by a client. A bare path string is refused: only uploads (which
    Gradio has checked to lie in its upload folder) may be read, never an arbitrary file of the server."""
    if not isinstance(audio, dict) or not audio.get("path"):
        raise gr.Error("send the clip as a file: gradio_client.handle_file(path)")
    return audio["path"]


def _api_annotator(annotator: str, request: gr.Request | None) -> str:
    """With auth, an API client labels as the user it logged in as; naming someone else is refused."""
    username = getattr(request, "username", None) if request is not None else None
    if username and annotator and annotator.strip() != username:
        raise gr.Error(f"signed in as {username!r}; cannot label as {annotator!r}")
    return username or annotator
