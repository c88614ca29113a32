"""The reliability lab in the browser: the page (title, style, keyboard script, tab order), the wiring between its tabs, and main().

Each tab is laid out and wired by its own build_*_tab(services) in reliability/ui/, the API by reliability/ui/api.py,
over the services of reliability/services/. Started by the `reliability-lab` command or `python app.py`; --help lists the options.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import secrets
import sys
import threading
from collections.abc import Sequence

from reliability.errors import missing_package

# the lab works offline: no usage analytics leave the machine unless the user asks for them
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

try:
    import gradio as gr  # noqa: E402
except ModuleNotFoundError as exc:  # the `reliability-lab` command installed without the app's extra
    raise SystemExit(f"error: {missing_package(exc, 'the app', 'ui')}") from None

from reliability.backends import BACKENDS, DEFAULT_BACKEND
from reliability.options import key_value
from reliability.paths import default_db, demo_clips, demo_items, metrics_doc
from reliability.services import Services, Settings
from reliability.training.adapters import default_adapters_dir
from reliability.ui.api import register_api
from reliability.ui.compare_tab import build_compare_tab
from reliability.ui.dashboard_tab import build_dashboard_tab
from reliability.ui.diagnostics_tab import build_diagnostics_tab
from reliability.ui.experiments_tab import build_experiments_tab
from reliability.ui.handlers import PRIVATE, health
from reliability.ui.label_tab import MAX_CHOICES, build_label_tab
from reliability.ui.lesson_tab import build_lesson_tab
from reliability.ui.method_list import keep_methods_fresh

TITLE = "Audio-LLM reliability lab"
MAX_FILE_SIZE = "50mb"  # larger uploads are refused by Gradio before they reach the lab
NAME_KEY = "reliability-lab-annotator"  # localStorage key of the annotator's name
# The name is not a secret; a fixed key lets the browser's saved name survive a server restart.
NAME_SECRET = "reliability-lab-annotator-name"
KEYS_KEY = "reliability-lab-compare-keys"  # localStorage key of the answer keys this browser saw in Compare

INTRO = (
    f"# {TITLE}\n"
    "Does the model know when to say **\"I don't know\"**? Ask a clip with the baseline and the reliability "
    "methods of *Towards Reliable Large Audio Language Model* (ACL 2025), judge the answers, and watch the "
    "conservatism–humility trade-off move. Teaching a class? The **Lesson** tab walks through four prepared examples."
)

CSS = """
.lab-cards {display: grid; grid-template-columns: repeat(auto-fit, minmax(270px, 1fr)); gap: 12px;}
.lab-card, .lab-model {border: 1px solid var(--border-color-primary); border-left: 6px solid #9ca3af; border-radius: 8px;
  padding: 10px 12px; background: var(--background-fill-primary);}
.lab-correct {border-left-color: #16a34a;} .lab-wrong {border-left-color: #dc2626;} .lab-idk {border-left-color: #d97706;}
.lab-error {border-left-color: #7f1d1d;} .lab-pending {opacity: 0.55;}
.lab-honest {border-left-color: #16a34a;} .lab-honest .lab-badge {background: #dcfce7; color: #166534;}
.lab-verdict {margin: 2px 0 8px; font-size: 0.95em;}
.lab-step-title {font-size: 0.85em; color: var(--body-text-color-subdued); margin-top: 4px;}
.lab-reasoning {white-space: pre-wrap; font-size: 0.92em; max-height: 14em; overflow: auto; margin: 2px 0 6px;}
.lab-steps {padding-left: 1.3em; margin: 4px 0;} .lab-steps li {margin-bottom: 6px;}
.lab-lesson-step {padding: 8px 12px; margin-bottom: 8px;}
.lab-modality {margin: 4px 0 10px; padding: 6px 10px; border-radius: 6px; background: var(--background-fill-secondary);}
.lab-card-head {display: flex; justify-content: space-between; align-items: center; gap: 8px; margin-bottom: 6px;}
.lab-method {font-weight: 650; font-size: 1.05em;}
.lab-badge {font-size: 0.85em; padding: 2px 9px; border-radius: 999px; background: var(--background-fill-secondary); white-space: nowrap;}
.lab-correct .lab-badge {background: #dcfce7; color: #166534;} .lab-wrong .lab-badge {background: #fee2e2; color: #991b1b;}
.lab-idk .lab-badge {background: #fef3c7; color: #92400e;} .lab-error .lab-badge {background: #7f1d1d; color: #fff;}
.lab-text {white-space: pre-wrap; font-family: var(--font-mono); font-size: 0.9em; max-height: 16em; overflow: auto;}
.lab-step {margin-top: 8px; font-size: 0.9em;}
.lab-facts {display: grid; grid-template-columns: auto 1fr; gap: 2px 10px; font-size: 0.85em; margin: 8px 0 0;}
.lab-facts dt {color: var(--body-text-color-subdued);} .lab-facts dd {margin: 0;}
.lab-rule, .lab-where {color: var(--body-text-color-subdued); font-size: 0.85em;}
.lab-unsure {color: #b45309; font-weight: 600;}
.lab-message {color: #991b1b;}
.lab-why {margin-top: 8px; font-size: 0.85em;} .lab-why summary {cursor: pointer; color: var(--link-text-color);}
.lab-why pre {white-space: pre-wrap; background: var(--background-fill-secondary); padding: 6px; border-radius: 4px;}
.lab-question {font-size: 1.15em; font-weight: 600; margin: 6px 0;}
.lab-options {list-style: none; padding-left: 0;} .lab-options li {margin: 2px 0;} .lab-options b {display: inline-block; width: 1.4em;}
.lab-table-wrap {overflow-x: auto; max-width: 100%;}
.lab-metrics {border-collapse: collapse; width: 100%; font-size: 0.92em;}
.lab-metrics th {text-align: left; white-space: nowrap; cursor: help; border-bottom: 2px solid var(--border-color-primary); padding: 4px 8px;}
.lab-metrics th::after {content: " ⓘ"; color: var(--body-text-color-subdued); font-size: 0.8em;}
.lab-metrics td {padding: 4px 8px; border-bottom: 1px solid var(--border-color-primary); vertical-align: top;}
.lab-metrics td[title] {cursor: help;} .lab-human-row {background: var(--background-fill-secondary);}
.lab-interval, .lab-table-note {color: var(--body-text-color-subdued); font-size: 0.85em;}
.lab-key {color: #166534; font-weight: 600;}
.lab-mine {margin-top: 8px; padding: 4px 8px; background: var(--background-fill-secondary); border-radius: 6px; display: inline-block;}
.lab-facts-line {font-size: 0.85em; margin-top: 6px; color: var(--body-text-color-subdued);}
.lab-note {color: #92400e; font-size: 0.9em;}
.lab-cut {color: #92400e; background: #fef3c7; border-radius: 6px; padding: 3px 8px; margin-bottom: 6px; font-size: 0.88em;}
.lab-empty {padding: 16px; color: var(--body-text-color-subdued);}
#lab-choices button {text-align: left; justify-content: flex-start;}
#lab-examples td {white-space: pre-line;}
.lab-task .lab-where, .lab-task .lab-facts-line {color: var(--body-text-color); font-size: 0.9em;}
#lab-keys-note {min-height: 1.4em; font-size: 0.9em; color: var(--body-text-color);}
"""

# Keyboard shortcuts of the Annotate tab. Presses (and clicks on its label buttons) go into a buffer that sends one
# at a time, each after the view has answered the previous one (its data-ack moved): Gradio drops a click on a
# button whose event is still running, and a press must act on the task shown after the one before it.
SHORTCUTS_JS = """
() => {
  const MAX_CHOICES = %(max_choices)d;
  const BUTTONS = ['lab-correct', 'lab-wrong', 'lab-idk', 'lab-human-idk', 'lab-prev', 'lab-next'];
  for (let n = 1; n <= MAX_CHOICES; n++) BUTTONS.push('lab-choice-' + n);
  const NAMED = {c: ['lab-correct'], w: ['lab-wrong'], i: ['lab-idk', 'lab-human-idk'], '0': ['lab-human-idk'],
                 arrowright: ['lab-next'], j: ['lab-next'], arrowleft: ['lab-prev'], k: ['lab-prev']};
  const buffer = [];
  let busy = false;
  const note = (text) => { const el = document.getElementById('lab-keys-note'); if (el) el.textContent = text; };
  const ack = () => { const el = document.querySelector('#lab-task [data-ack]'); return el && el.getAttribute('data-ack'); };
  const shown = (id) => {
    const el = document.getElementById(id);
    if (!el || el.offsetParent === null) return null;
    const button = el.tagName === 'BUTTON' ? el : el.querySelector('button');
    return button && !button.disabled ? button : null;
  };
  // a letter names an option where the task has one (A = option 1), else its other meaning
  const targets = (key) => {
    const k = key.toLowerCase();
    const ids = [];
    if (/^[1-9]$/.test(k)) ids.push('lab-choice-' + k);
    if (/^[a-z]$/.test(k) && k.charCodeAt(0) - 96 <= MAX_CHOICES) ids.push('lab-choice-' + (k.charCodeAt(0) - 96));
    return ids.concat(NAMED[k] || []);
  };
  const pump = () => {
    if (busy || !buffer.length) return;
    const press = buffer.shift();
    const button = press.ids.map(shown).find(Boolean);
    if (!button) { note('Key ' + press.label + ' does nothing on this task.'); pump(); return; }
    busy = true;
    note(buffer.length ? (buffer.length + 1) + ' presses being stored…' : '');
    const before = ack(), started = Date.now();
    button.click();
    const wait = () => {
      if (ack() !== before || Date.now() - started > 30000) { busy = false; if (!buffer.length) note(''); pump(); }
      else setTimeout(wait, 10);
    };
    setTimeout(wait, 10);
  };
  const player = () => document.getElementById('lab-a-audio');
  const playPause = () => {
    const button = player() && player().querySelector('.play-pause-button');
    if (button) button.click(); else note('No clip to play on this task.');
  };
  // the waveform player keeps its media element to itself: back to the start is its rewind button, enough times
  const replay = () => {
    const rewind = player() && player().querySelector('.rewind');
    if (!rewind) { note('No clip to play on this task.'); return; }
    for (let i = 0; i < 100; i++) rewind.click();
    const toggle = player().querySelector('.play-pause-button');
    if (toggle && toggle.getAttribute('aria-label') === 'Play') toggle.click();
  };
  document.addEventListener('click', (event) => {
    const button = event.target.closest && event.target.closest('button');
    if (!button) return;
    if (button.closest('#lab-annotate')) setTimeout(() => button.blur(), 0);  // Space and Enter must not click it again
    const id = BUTTONS.find((b) => button.id === b || button.closest('#' + b));
    if (!id || !event.isTrusted) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    buffer.push({ids: [id], label: button.textContent.trim()});
    pump();
  }, true);
  // a dropdown left with Tab stays open over the progress line; Escape is how it closes itself
  document.addEventListener('focusout', (event) => {
    const box = event.target;
    if (box.getAttribute && box.getAttribute('role') === 'combobox' && box.closest('#lab-annotate')) {
      box.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape', bubbles: true}));
    }
  }, true);
  document.addEventListener('keydown', (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const task = document.getElementById('lab-task');
    if (!task || task.offsetParent === null) return;  // the Annotate tab is not in view
    const target = event.target;
    const typing = target && (target.isContentEditable || target.tagName === 'TEXTAREA' || target.tagName === 'SELECT' ||
      (target.tagName === 'INPUT' && !['radio', 'checkbox', 'button', 'range'].includes(target.type)));
    const key = event.key.toLowerCase();
    const hotkey = key === ' ' || key === 'p' || key === 'r' || targets(event.key).length > 0;
    if (typing) {
      if (event.key === 'Escape') { target.blur(); note(''); }
      else if (hotkey && event.key.length === 1) {
        const field = target.closest('.block');
        const label = field && field.querySelector('label, .label-wrap, [data-testid="block-label"]');
        note('Shortcuts are off while you type in a text field' + (label ? ' (' + label.textContent.trim() + ')' : '') +
             ': press Esc or click the task to use them.');
      }
      return;
    }
    if (!hotkey) return;
    event.preventDefault();
    event.stopPropagation();
    if (target && target !== document.body && target.blur) target.blur();
    if (key === ' ' || key === 'p') playPause();
    else if (key === 'r') replay();
    else { buffer.push({ids: targets(event.key), label: event.key.length === 1 ? event.key.toUpperCase() : event.key}); pump(); }
  }, true);
}
""" % {"max_choices": MAX_CHOICES}


def build_demo(services: Services) -> gr.Blocks:
    """The app's Blocks, wired to `services`; constructible (and testable) without launch(). With logins (--auth)
    the annotator is the signed-in user."""
    with gr.Blocks(title=TITLE) as demo:
        register_api(services)
        gr.Markdown(INTRO)
        banner = gr.Markdown(visible=False)
        # outside the tabs: a browser state inside a tab not yet shown is not read from the browser at page load
        saved_name = gr.BrowserState("", storage_key=NAME_KEY, secret=NAME_SECRET)
        # keys seen in Compare before any name was typed still keep that browser's later human answers non-blind;
        # sealed with the app's own secret, so no one can hand the server a list of keys to mark in another's name
        browser_keys = gr.BrowserState([], storage_key=KEYS_KEY, secret=browser_secret(services.pool.settings.data_dir))
        with gr.Tabs() as tabs:
            with gr.Tab("Compare", id="compare") as compare_tab:
                compare = build_compare_tab(services)
            with gr.Tab("Annotate", id="annotate", elem_id="lab-annotate") as annotate_tab:
                label = build_label_tab(services, browser_keys)
            with gr.Tab("Dashboard", id="dashboard") as dashboard_tab:
                dashboard = build_dashboard_tab(services, dashboard_tab, label.queue_filters, *_served(metrics_doc()))
            with gr.Tab("Experiments", id="experiments") as experiments_tab:
                build_experiments_tab(services, experiments_tab, compare.methods)
            with gr.Tab("Text prior", id="text-prior") as prior_tab:
                build_diagnostics_tab(services, prior_tab)
            with gr.Tab("Lesson", id="lesson", elem_id="lab-lesson") as lesson_tab:
                lesson = build_lesson_tab(services, compare, tabs)

        # ---- between the tabs: a request fills the filters and the dashboard; whoever typed a key has seen it
        compare.asked.then(**dashboard.update_filters).then(**dashboard.refresh)
        compare.raw.change(label.ui.note_compare_keys, [label.annotator, compare.raw, browser_keys], browser_keys, **PRIVATE)
        # a tab switched by a button is not "selected" by the user: the lesson's last step starts the dashboard itself
        lesson.to_dashboard.then(lambda: gr.Timer(active=True), None, dashboard.timer, **PRIVATE).then(
            **dashboard.update_filters).then(**dashboard.refresh)
        for other in (compare_tab, annotate_tab, experiments_tab, lesson_tab):
            other.select(lambda: gr.Timer(active=False), None, dashboard.timer, **PRIVATE)
        label.annotator.change(lambda name: name, label.annotator, saved_name, **PRIVATE)

        keep_methods_fresh(services, compare.methods, demo, compare_tab)
        demo.load(functools.partial(health, services), None, banner, **PRIVATE)
        demo.load(label.ui.whoami, [saved_name, label.annotator], label.annotator, **PRIVATE)
        demo.load(**dashboard.update_filters).then(**dashboard.refresh)
    return demo


def browser_secret(data_dir: str) -> str:
    """The secret that seals what the app keeps in browsers, made once and kept in the app's folder (never served),
    so a browser's list survives a restart."""
    path = os.path.join(data_dir, "browser-secret")
    if not os.path.isfile(path):
        os.makedirs(data_dir, exist_ok=True)
        with contextlib.suppress(FileExistsError), open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(secrets.token_hex(32))
    with open(path) as f:
        return f.read().strip()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=f"{TITLE}: compare methods, annotate answers, watch the dashboards.")
    parser.add_argument("--backend", default=DEFAULT_BACKEND, choices=list(BACKENDS), help=f"default backend (default: {DEFAULT_BACKEND})")
    parser.add_argument("--model", help="the backend's model id (cascade: qwen2.5-coder-1.5b, the default, qwen2.5-coder-0.5b, faster, or smollm2-135m; qwen2-audio: a checkpoint)")
    parser.add_argument(
        "--backend-arg", action="append", default=[], metavar="KEY=VALUE",
        help="constructor argument of the backend, repeatable (e.g. device=cpu; scripted: reply=A)",
    )
    parser.add_argument("--db", help=f"the lab database (default: {default_db()})")
    parser.add_argument("--data-dir", help="the app's folder for kept uploads and exports (default: beside the database)")
    parser.add_argument(
        "--adapters-dir", default=str(default_adapters_dir()),
        help="folder of saved LoRA adapters, offered as lora:<name> methods (default: %(default)s, or $RELIABILITY_ADAPTERS)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--auth", action="append", default=[], metavar="USER:PASS", help="require a login; repeatable, one per annotator")
    parser.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="longest clip accepted (default: %(default)s)")
    parser.add_argument(
        "--allow-backend", action="append", default=[], choices=list(BACKENDS), metavar="NAME",
        help="let Compare requests (the API's too) use this backend beyond the menu's, repeatable (e.g. openai)",
    )
    parser.add_argument("--no-preload", action="store_true", help="load the model on the first request instead of at start")
    parser.add_argument("--debug", action="store_true", help="log every request and the traceback of every user error")
    args = parser.parse_args(argv)
    bad = [a for a in args.auth if ":" not in a or a.startswith(":")]
    if bad:
        parser.error(f"--auth expects USER:PASS, got {bad}")
    return args


def _served(path) -> list[str]:
    """The link the page serves a file under, none for a file that is not there."""
    return [f"/gradio_api/file={path}"] if path else []


def make_services(args: argparse.Namespace) -> Services:
    """The services the command line describes."""
    db = args.db or default_db()
    kwargs = dict(key_value(text) for text in args.backend_arg)
    if args.model:
        kwargs["model_id"] = args.model
    return Services.build(Settings(
        db_path=db,
        data_dir=args.data_dir or os.path.dirname(os.path.abspath(db)),
        backend=args.backend,
        backend_kwargs=kwargs,
        adapters_dir=args.adapters_dir,
        examples_path=str(demo_items()) if demo_items().is_file() else None,
        max_seconds=args.max_seconds,
        extra_backends=tuple(args.allow_backend),
    ))


def _preload(services: Services) -> None:
    try:
        services.pool.warm()
    except Exception:  # the first request shows the same error to the user; the server keeps running
        logging.getLogger(__name__).exception("could not preload backend %s", services.pool.settings.backend)


def setup_logging(debug: bool = False) -> None:
    """One line per event on stderr: a user's mistake is a warning line, a real bug a traceback. With `debug`,
    also the lab's DEBUG lines (user errors' tracebacks) and the HTTP client's line per request."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("reliability").setLevel(logging.DEBUG if debug else logging.INFO)
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.INFO if debug else logging.WARNING)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.debug)
    services = make_services(args)
    for problem in services.pool.check():
        print(f"warning: {problem} (the app shows this too)", file=sys.stderr)
    os.makedirs(services.pool.exports_dir, exist_ok=True)
    if not args.no_preload:
        threading.Thread(target=_preload, args=(services,), daemon=True).start()
    demo = build_demo(services)
    demo.queue(default_concurrency_limit=2).launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        auth=[tuple(a.split(":", 1)) for a in args.auth] or None,
        # served files: the example clips and the exports folder; never the database or other uploads
        allowed_paths=[str(demo_clips()), *map(str, filter(None, [metrics_doc()])), services.pool.exports_dir],
        max_file_size=MAX_FILE_SIZE,
        theme=gr.themes.Soft(primary_hue="indigo", neutral_hue="slate"),
        css=CSS,
        js=SHORTCUTS_JS,
        footer_links=["api"],
        run_history=False,  # the browser would otherwise keep every event's inputs and outputs in localStorage
        # the lab's own errors are one-line gr.Error already; this shows Gradio's own refusals (a file path outside
        # the uploads) as their line instead of {"error": null}
        show_error=True,
    )


if __name__ == "__main__":
    main()
