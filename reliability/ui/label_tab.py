"""The app's Annotate tab: an annotator's queue, judged (model answers) or answered (human baseline) by button or key.

`LabelHandlers` holds its handlers (plain methods over the services, testable without a browser);
`build_label_tab(services)` lays the tab out inside the caller's `gr.Tab` and wires it.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from reliability.errors import ItemError, ReliabilityError
from reliability.services import Services
from reliability.services.compare import LAB_DATASET, MODALITY_CHOICES
from reliability.services.labelling import HUMAN_MODE, IDK_CHOICE, VERDICT_MODE, VIA_COMPARE, VIA_VERDICT, modality_counts
from reliability.ui import render as ui_render
from reliability.ui.handlers import ALL, PRIVATE, annotator_name, choice_value, clip_view, user_errors

log = logging.getLogger(__name__)

MAX_CHOICES = 9  # choice buttons in human-baseline mode, on keys 1-9 and A-I
BROWSER_KEYS_KEPT = 1000  # answer keys a browser remembers having seen in Compare (its newest)
MODES = [("Judge model answers", VERDICT_MODE), ("Answer yourself (human baseline)", HUMAN_MODE)]
VERDICTS = ("correct", "wrong", "idk")
SHORTCUTS = (
    "**Keys** (whatever has focus, except text fields; **Esc** leaves a text field): judging: **C** correct · **W** wrong · "
    "**I** abstained · answering yourself: **A–I** or **1–9** pick that option · **0** (or **I** without a 9th option) "
    "I don't know · both: **Space / P** play or pause · **R** replay · **→ / J** next · **← / K** previous. "
    "Every press is stored in order; changing a label takes its key twice."
)


@dataclass
class LabelTab:
    """What the page and the other tabs connect to."""

    ui: LabelHandlers
    annotator: gr.Textbox  # the annotator's name (the login's, with auth)
    queue_filters: list[gr.Dropdown]  # the queue's dataset and method filters, whose choices the dashboard refreshes


class LabelHandlers:
    """Handlers of the Annotate tab."""

    def __init__(self, services: Services):
        self.services = services

    def whoami(self, stored: str | None, typed: str | None, request: gr.Request) -> Any:
        """On page load: the name field, locked to the login when the app has auth, else the name this browser kept,
        unless a name was typed before the page finished loading (a slow load must not erase it)."""
        username = getattr(request, "username", None)
        if username:
            return gr.update(value=username, interactive=False, info="signed in")
        return gr.update() if (typed or "").strip() else gr.update(value=stored or "")

    @user_errors
    def load_queue(
        self, typed: str, mode: str, dataset: str, modality: str, method: str, unsure: bool, unlabelled: bool, request: gr.Request,
        browser_keys: list | None = None,
    ) -> tuple:
        """Load the annotator's queue under the filters and open it where they stopped. The keys this browser saw
        in Compare (`browser_keys`, named or not at the time) count as seen by the annotator first."""
        annotator = annotator_name(typed, request)
        if annotator and browser_keys:
            self.services.labels.saw_keys(annotator, [tuple(k) for k in browser_keys], VIA_COMPARE)
        queue = self.services.labels.queue(
            annotator, mode, choice_value(dataset), choice_value(modality), choice_value(method), bool(unsure), bool(unlabelled)
        )
        state = {
            "annotator": queue.annotator, "mode": queue.mode, "tasks": queue.tasks, "pos": queue.position,
            "left_out": queue.left_out, "confirm": None, "ack": 0,
        }
        if queue.tasks and queue.done:
            gr.Info(f"Resuming at item {queue.position + 1}: {queue.done} of {len(queue.tasks)} already labelled by {annotator}.")
        return (state, *self.show(state))

    def switch_mode(
        self, typed: str, mode: str, dataset: str, modality: str, method: str, unsure: bool, unlabelled: bool, request: gr.Request,
        browser_keys: list | None = None,
    ) -> tuple:
        """A new mode at once: its queue when a name is known, else an empty view with that mode's buttons only."""
        if annotator_name(typed, request):
            return self.load_queue(typed, mode, dataset, modality, method, unsure, unlabelled, request, browser_keys)
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

    def note_compare_keys(
        self, typed: str, results: list[dict[str, Any]] | None, request: gr.Request, browser_keys: list | None = None
    ) -> list[list[str]]:
        """After a Compare: whoever typed an answer key has seen it (no blind human answer to that item by them).

        Returns the keys this browser has seen, this one added: a name typed only later still gets them.
        """
        items = [(LAB_DATASET, r["item_id"]) for r in results or [] if r.get("key") and r.get("item_id")]
        kept = [tuple(k) for k in browser_keys or [] if isinstance(k, (list, tuple)) and len(k) == 2]
        name = annotator_name(typed, request)
        if name and items:
            try:
                self.services.labels.saw_keys(name, items, VIA_COMPARE)
            except ReliabilityError as exc:  # e.g. a name over the limit: the browser still keeps the key
                gr.Warning(str(exc))
        return [list(k) for k in dict.fromkeys(kept + items)][-BROWSER_KEYS_KEPT:]

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


def build_label_tab(services: Services, browser_keys: gr.BrowserState) -> LabelTab:
    """Lay out and wire the tab inside the caller's `with gr.Tab(...):` (the tab's elem_id is "lab-annotate").

    `browser_keys`: the answer keys this browser saw in Compare (LabelHandlers.note_compare_keys keeps them).
    """
    ui = LabelHandlers(services)
    with gr.Row():
        annotator = gr.Textbox(label="Your name", placeholder="e.g. ana", scale=2, elem_id="lab-annotator")
        mode = gr.Radio(MODES, value=VERDICT_MODE, label="Mode", scale=3, elem_id="lab-mode")
    with gr.Row():
        q_dataset = gr.Dropdown([ALL], value=ALL, label="Dataset", allow_custom_value=True, elem_id="lab-queue-dataset")
        q_modality = gr.Dropdown([ALL, *MODALITY_CHOICES], value=ALL, label="Modality")
        q_method = gr.Dropdown([ALL], value=ALL, label="Method", allow_custom_value=True, elem_id="lab-queue-method")
        with gr.Column(min_width=180):
            q_unsure = gr.Checkbox(label="parser unsure only")
            q_unlabelled = gr.Checkbox(label="not yet labelled by me")
        load = gr.Button("Load queue", variant="primary", elem_id="lab-load")
    progress = gr.Markdown("Type your name and load the queue.", elem_id="lab-progress")
    gr.HTML('<div id="lab-keys-note" aria-live="polite"></div>', padding=False)
    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            a_audio = gr.Audio(label="Clip  [Space / P play · R replay]", type="numpy", interactive=False, elem_id="lab-a-audio")
            a_plot = gr.Plot(show_label=False)
        with gr.Column(scale=5):
            task = gr.HTML(elem_id="lab-task")
            with gr.Row() as verdict_row:
                verdict_buttons = [
                    gr.Button("✓ Correct  [C]", elem_id="lab-correct"),
                    gr.Button("✗ Wrong  [W]", elem_id="lab-wrong"),
                    gr.Button("? Abstained  [I]", elem_id="lab-idk"),
                ]
            with gr.Column(visible=False, elem_id="lab-choices") as choice_col:
                choice_buttons = [gr.Button(visible=False, elem_id=f"lab-choice-{i + 1}") for i in range(MAX_CHOICES)]
                human_idk = gr.Button("I don't know  [0]", elem_id="lab-human-idk")
            with gr.Row():
                prev = gr.Button("← Previous  [K]", elem_id="lab-prev")
                nxt = gr.Button("Next  [J] →", elem_id="lab-next")
            gr.Markdown(SHORTCUTS)
            gr.Markdown(ui_render.HUMAN_RULE, elem_id="lab-combine")
    queue_state = gr.State()

    view = [progress, a_audio, a_plot, task, verdict_row, choice_col, *choice_buttons]
    queue_inputs = [annotator, mode, q_dataset, q_modality, q_method, q_unsure, q_unlabelled, browser_keys]
    load.click(ui.load_queue, queue_inputs, [queue_state, *view], **PRIVATE)
    mode.input(ui.switch_mode, queue_inputs, [queue_state, *view], **PRIVATE)  # never the other mode's buttons
    # "multiple": the page's key buffer sends one press at a time and must never have one dropped as a repeat
    presses = dict(trigger_mode="multiple", **PRIVATE)
    prev.click(functools.partial(ui.move, delta=-1), queue_state, [queue_state, *view], **presses)
    nxt.click(functools.partial(ui.move, delta=1), queue_state, [queue_state, *view], **presses)
    saves = [(b, functools.partial(ui.verdict, verdict=v)) for b, v in zip(verdict_buttons, VERDICTS)]
    saves += [(b, functools.partial(ui.choose, index=i)) for i, b in enumerate(choice_buttons)]
    saves.append((human_idk, functools.partial(ui.choose, index=-1)))
    for button, handler in saves:
        # labels go through one queue per browser event, concurrently across users; the open dashboard's timer
        # shows them, so a burst of presses does not also recompute the dashboard once per press
        button.click(handler, queue_state, [queue_state, *view], concurrency_id="labels", concurrency_limit=8, **presses)
    return LabelTab(ui, annotator, [q_dataset, q_method])
