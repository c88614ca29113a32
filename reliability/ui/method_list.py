"""Keeps the Compare tab's method list in step with the adapters on disk, in every browser session, without a restart.

The list is read afresh when a page loads, when the Compare tab is selected, and every few seconds while the page
is open, so an adapter trained in another session (or saved into the adapters folder by the command line) is
offered everywhere at once. A tick that finds nothing new sends nothing.
"""
from __future__ import annotations

from typing import Any

import gradio as gr

from reliability.services import Services
from reliability.ui.handlers import PRIVATE
from reliability.ui.render import method_title

REFRESH_SECONDS = 5.0  # listing a folder is cheap; a new adapter shows up within this time in every open page


def method_choices(services: Services) -> list[tuple[str, str]]:
    """(display name, method) of every method the app's default backend can run now, adapters included."""
    return [(method_title(m), m) for m in services.pool.method_names()]


def refresh(services: Services, ticked: list[str] | None, shown: list[str] | None) -> tuple[Any, list[str]]:
    """(the CheckboxGroup's update, the methods now shown): new choices where they changed, the ticks kept that still exist."""
    choices = method_choices(services)
    methods = [m for _, m in choices]
    if methods == shown:
        return gr.skip(), shown
    return gr.update(choices=choices, value=[m for m in ticked or [] if m in methods]), methods


def keep_methods_fresh(services: Services, methods_box: gr.CheckboxGroup, demo: gr.Blocks, compare_tab: gr.Tab) -> None:
    """Wire the refresh inside the Blocks being built: on page load, on selecting the Compare tab, and on a timer."""
    shown = gr.State(None)
    timer = gr.Timer(REFRESH_SECONDS)
    update = dict(fn=lambda ticked, seen: refresh(services, ticked, seen), inputs=[methods_box, shown], outputs=[methods_box, shown])
    demo.load(**update, **PRIVATE)
    compare_tab.select(**update, **PRIVATE)
    timer.tick(**update, show_progress="hidden", **PRIVATE)
