"""The app's Lesson tab: a short guided sequence of the repository's example clips, each with what to watch, ending on
the Dashboard with the class's own labels (docs/TEACHING.md is the lesson plan built on it).

`LessonHandlers` holds its handlers; `build_lesson_tab(services, compare, tabs)` lays the tab out inside the caller's
`gr.Tab` and wires each step's button to fill the Compare tab's form and open it.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import gradio as gr
from gradio.events import Dependency

from reliability.services import Services
from reliability.services.modality import AUTO
from reliability.ui.compare_tab import CompareTab, modality_menu
from reliability.ui.handlers import PRIVATE


@dataclass(frozen=True)
class Step:
    """One step of the lesson: a prepared example (or the closing look at the Dashboard) and what to watch."""

    title: str
    example: str | None  # the id of an example in reliability/demo/items.json; None: the Dashboard
    watch: str  # one paragraph: what to look at, in the app's own words


STEPS = (
    Step(
        "1 · A spoken question the clip answers", "demo-speech-time",
        "A museum announcement says when the museum opens. Press **Compare**. The line above the cards says the clip "
        "was stored as **speech**, *detected* from the clip. Every method should be right here. Open the **Task "
        "Agent**'s card: it first decides what kind of audio it is, then reads a transcript, then answers. A method "
        "that said \"I don't know\" here would lose a right answer: that loss is what the Dashboard calls "
        "**conservatism** (ΔCon).",
    ),
    Step(
        "2 · A sound", "demo-scene-source",
        "A street recording with a siren, and no words to transcribe: the answer rests on what the model hears. "
        "Compare the **confidence** on each card with the first example's, and read the agent's sound caption. Ask "
        "the class whether they would have named the siren: sounds are where audio models are least sure of themselves.",
    ),
    Step(
        "3 · A question the clip cannot answer", "demo-speech-name",
        "The announcement never says who is speaking, so the answer key is \"I don't know\". The **Baseline** is not "
        "offered \"I don't know\" and must pick a name: its card reads **Wrong: … the clip does not say**. A method "
        "that abstains gets a green **Right to abstain** card. A wrong answer avoided is **humility** (ΔHum).",
    ),
    Step(
        "4 · A near-tie", "demo-melody-year",
        "Nothing in a recording tells the year it was made, so no option can be heard to be better than another. "
        "Watch the **confidence**: where the options score nearly alike, a method that must answer still picks one, "
        "and a method that may abstain should. Open **why?** on a card to see the evidence and the exact prompt it got.",
    ),
    Step(
        "5 · The class's own labels", None,
        "Everyone types a name in **Annotate** and judges the answers (keys **C**, **W**, **I**), or switches to "
        "*Answer yourself* to answer the items without the key: those answers make the **human** row. Then open the "
        "**Dashboard**: its figures now use the class's verdicts. Open **What the numbers mean**, then find IDK "
        "prompting on the plane: above the diagonal it avoided more wrong answers than it lost right ones. With a "
        "class-sized set the figures say the sample is small: read the intervals before the points.",
    ),
)

INTRO = (
    "**A 15-minute lesson: does an audio model know when to say \"I don't know\"?** Each step loads a prepared "
    "example into the **Compare** tab; press **Compare** there, look at what the step says, and come back for the "
    "next. The plan for the teacher is in the repository's docs/TEACHING.md."
)


@dataclass
class LessonTab:
    """What the page wires: the closing step's button, which opens the Dashboard."""

    to_dashboard: Dependency


class LessonHandlers:
    """Handlers of the Lesson tab."""

    def __init__(self, services: Services):
        self.services = services
        self.examples = {e["id"]: e for e in services.compare.examples()}

    def missing(self) -> list[str]:
        """The steps' examples that the app's examples file lacks."""
        return [s.example for s in STEPS if s.example is not None and s.example not in self.examples]

    def load(self, example: str) -> tuple[Any, ...]:
        """The Compare form filled with one example (audio, question, options, key; the modality detected from its
        clip, never the last one's), and the Compare tab opened."""
        e = self.examples[example]
        detected = {**modality_menu(self.services.modality.detect_file(e["audio"])), "value": AUTO}
        return e["audio"], e["question"], "\n".join(e["choices"]), e["answer"] or "", detected, gr.Tabs(selected="compare")


def build_lesson_tab(services: Services, compare: CompareTab, tabs: gr.Tabs) -> LessonTab:
    """Lay out and wire the tab inside the caller's `with gr.Tab(...):`; `tabs` is the page's, to switch tabs."""
    ui = LessonHandlers(services)
    gr.Markdown(INTRO, elem_id="lab-lesson-intro")
    missing = ui.missing()
    if missing:
        gr.Markdown(f"The lesson needs the repository's example clips (reliability/demo/items.json); missing here: {', '.join(missing)}.")
    form = [compare.audio, compare.question, compare.options, compare.answer, compare.modality, tabs]
    to_dashboard = None
    for i, step in enumerate(STEPS):
        with gr.Group(elem_classes="lab-lesson-step"):
            gr.Markdown(f"### {step.title}\n{step.watch}")
            if step.example is None:
                button = gr.Button("Open the Dashboard", elem_id=f"lab-lesson-{i + 1}", size="md")
                to_dashboard = button.click(lambda: gr.Tabs(selected="dashboard"), None, tabs, **PRIVATE)
            elif step.example not in missing:
                button = gr.Button("Load it in Compare", elem_id=f"lab-lesson-{i + 1}", size="md", variant="primary")
                button.click(functools.partial(ui.load, step.example), None, form, **PRIVATE)
    return LessonTab(to_dashboard)
