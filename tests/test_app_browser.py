"""The app in headless Chromium (Debian's, never a downloaded one): every tab empty and filled, compare, label by
keyboard, the dashboard moving, and a second Compare told that it waits for the model.

With LAB_SCREENSHOTS=<folder> (scripts/screenshots.sh sets it to docs/screenshots) each view is also saved as a PNG
for the README; a plain test run writes nothing into the checkout.
"""
from __future__ import annotations

import hashlib
import json
import os

import pytest

from conftest import require_tool
from test_app_api import REPO, running_app, seed_lab

VIEWPORT = {"width": 1400, "height": 1000}
QUESTION = "Which sound is this?"
TIMEOUT_MS = 60_000
DEMO = os.path.join(REPO, "reliability", "demo")

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = require_tool("chromium")  # Debian's /usr/bin/chromium; skips on a user's machine without it, fails in CI
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        yield browser
        browser.close()


def plane_points(page, method: str) -> list[tuple[float, float, str]]:
    """(ΔCon, ΔHum, group) of one method's markers in the conservatism–humility plane, exact (as the hover shows them)."""
    return page.evaluate(
        """(method) => {
            const plot = document.querySelector('#lab-plane .js-plotly-plot');
            const traces = plot ? plot.data.filter(t => t.name === method && t.customdata) : [];
            return traces.flatMap(t => t.customdata.map(d => [d[7], d[8], d[0]]));
        }""",
        method,
    )


def screenshot(page, name: str) -> None:
    """With LAB_SCREENSHOTS set: a full-page PNG in that folder, reduced to 256 colours to stay small in the repository."""
    folder = os.environ.get("LAB_SCREENSHOTS")
    if not folder:
        return
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}.png")
    page.screenshot(path=path, full_page=True)
    Image.open(path).convert("RGB").quantize(256).save(path, optimize=True)


def settle(page) -> None:
    """Wait until no event is in flight (Gradio dims its outputs and says "processing" meanwhile), then close any toast."""
    idle = "() => !document.querySelector('.pending, .translucent') && !document.body.innerText.includes('processing |')"
    for _ in range(2):  # twice: a finished event may chain another (.then), and the dashboard's timer ticks
        page.wait_for_timeout(300)
        page.wait_for_function(idle)
    for close in page.locator(".toast-close").all():
        close.click()


def choose(page, elem_id: str, value: str) -> None:
    """Pick a value in a Gradio dropdown."""
    box = page.locator(f"#{elem_id} input")
    box.click()
    box.fill(value)
    page.locator("ul[role=listbox] li", has_text=value).first.click()


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()
    settle(page)


def ask(page, clip: str, question: str = QUESTION) -> None:
    """Fill the Compare form with a clip and a question with three options, and press Compare."""
    page.locator("#lab-audio input[type=file]").set_input_files(clip)
    page.wait_for_function("() => document.querySelector('#lab-audio audio, #lab-audio .waveform-container')")
    page.locator("#lab-question textarea").fill(question)
    page.locator("#lab-options textarea").fill("a dog barking\na steady tone\na car horn")
    page.locator("#lab-answer textarea").fill("a steady tone")
    choose(page, "lab-modality", "sound")
    page.locator("#lab-compare").click()


def seed_diagnostics(db: os.PathLike) -> None:
    """The demo clips as a dataset, diagnosed (full, no audio, fragments) by a scripted model that needs the audio
    for some items and abstains (IDK prompting) on some without it."""
    from annotations.db import open_db
    from annotations import store
    from reliability.backends.scripted import ScriptedBackend
    from reliability.datasets import import_dataset
    from reliability.diagnostics.runs import run_diagnostics

    with open(os.path.join(DEMO, "items.json")) as f:
        demo = json.load(f)
    records = [
        {"id": r["id"], "audio_id": r["audio"], "question": r["question"], "choices": r["choices"], "answer": r["answer"], "task": r["modality"]}
        for r in demo
        if r.get("answer")  # items with an answer key: the diagnostics score outcomes
    ]
    path = os.path.join(os.path.dirname(os.fspath(db)), "demo.json")
    with open(path, "w") as f:
        json.dump(records, f)
    lab_db = open_db(os.fspath(db))
    import_dataset(lab_db, path, "demo", audio_dir=DEMO)
    keys = {r["question"]: (r["answer"], next(c for c in r["choices"] if c != r["answer"])) for r in records}

    def respond(request) -> str:
        text = request.messages[-1]["content"]
        question = next((q for q in keys if q in text), None)
        if question is None:
            return "sound"
        right, wrong = keys[question]
        draw = int(hashlib.sha256(question.encode()).hexdigest(), 16) % 100
        if request.audio is None:
            if "I don't know" in text and draw % 2:
                return "I don't know"
            return right if draw < 40 else wrong
        heard = len(request.audio) / 16000
        return right if heard > 1.5 or draw < 60 else wrong

    run_diagnostics(lab_db, ScriptedBackend(responder=respond), store.get_items(lab_db, "demo"), ["baseline", "idk"])


def test_every_tab_says_what_to_do_next_when_the_notebook_is_empty(browser, tmp_path):
    with running_app(tmp_path / "lab.db") as url:
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        settle(page)
        assert "Upload or record a clip" in page.content()
        screenshot(page, "compare-empty")
        hints = {
            "Annotate": "Type your name and load the queue",
            "Dashboard": "No answers yet",
            "Experiments": "No results yet",
            "Text prior": "No runs to diagnose yet",
        }
        for tab, hint in hints.items():
            open_tab(page, tab)
            assert page.get_by_text(hint).first.is_visible(), f"{tab}: no hint {hint!r}"
            screenshot(page, f"{tab.lower().replace(' ', '-')}-empty")
        open_tab(page, "Experiments")
        assert "none yet: python -m reliability import dataset" in page.locator("body").inner_text()
        header = " ".join(page.locator("thead:visible").all_inner_texts())
        assert "adapter" in header and "RGI" in header  # real headers, not "1 2 3"
        page.close()


def test_compare_label_by_keyboard_and_watch_the_dashboard(browser, tmp_path, tone_wav):
    db = tmp_path / "lab.db"
    seed_diagnostics(db)  # first: the dashboard opens on the dataset of the newest runs, the Compare tab's
    seed_lab(db, tmp_path, n_items=24, methods=("baseline", "idk", "agent"))
    with running_app(db) as url:
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)

        # Compare: upload, ask, and wait for every method's card
        ask(page, str(tone_wav))
        page.wait_for_function("() => document.querySelectorAll('#lab-results .lab-card[data-method]').length === 4")
        assert page.locator("#lab-results .lab-correct").count() == 4
        page.locator("#lab-results .lab-why").first.click()  # open one "why?" to show the prompts
        settle(page)
        screenshot(page, "compare")

        # Dashboard before labelling: MCoT is new and, on its one item, loses nothing yet
        page.get_by_role("tab", name="Dashboard").click()
        page.wait_for_function("() => { const p = document.querySelector('#lab-plane .js-plotly-plot'); return p && p.data.some(t => t.name === 'mcot'); }")
        assert (0.0, 0.0) in {(x, y) for x, y, _ in plane_points(page, "mcot")}

        # Annotate: the MCoT answer only, judged wrong with the W key
        page.get_by_role("tab", name="Annotate").click()
        page.locator("#lab-annotator input, #lab-annotator textarea").first.fill("ana")
        choose(page, "lab-queue-method", "mcot")
        page.locator("#lab-load").click()
        page.wait_for_function(f"() => document.querySelector('#lab-task')?.innerText.includes({QUESTION!r})")
        settle(page)
        screenshot(page, "annotate")
        page.locator("#lab-task").click()  # focus leaves the name field, so keys act as shortcuts
        page.keyboard.press("w")
        page.wait_for_function("() => document.querySelector('#lab-progress')?.innerText.includes('1 labelled')")
        assert "your label: wrong" in page.locator("#lab-task").inner_text()

        # Dashboard after: MCoT lost its one baseline-correct answer (ΔCon = 100 %)
        page.get_by_role("tab", name="Dashboard").click()
        page.wait_for_function(
            "() => { const p = document.querySelector('#lab-plane .js-plotly-plot');"
            " return p && p.data.some(t => t.name === 'mcot' && t.customdata && t.customdata.some(d => d[7] === 1)); }"
        )
        assert (1.0, 0.0) in {(x, y) for x, y, _ in plane_points(page, "mcot")}
        assert "1 verdicts" in page.locator("#lab-summary").inner_text()
        assert page.locator("#lab-plane .modebar-btn[data-title='Download plot as a PNG']").count() == 1
        settle(page)
        screenshot(page, "dashboard")

        # Text prior: the stored diagnostic runs, categories and retention
        open_tab(page, "Text prior")
        choose(page, "lab-prior-dataset", "demo")
        page.wait_for_function("() => !document.body.innerHTML.includes('No categories yet')")
        settle(page)
        assert "R_TP" in page.locator("#lab-diagnostics").inner_text()
        screenshot(page, "text-prior")

        # Experiments: the demo dataset is offered; building the IDK dataset on it draws the K@N ratios
        open_tab(page, "Experiments")
        choose(page, "lab-exp-dataset", "demo")
        page.get_by_role("button", name="1 · Build IDK dataset").click()
        page.wait_for_function("() => document.body.innerText.includes('items** sampled') || document.body.innerText.includes('items sampled')")
        settle(page)
        screenshot(page, "experiments")

        # the annotator's name is kept in the browser across visits
        page.reload()
        page.get_by_role("tab", name="Annotate").click()
        page.wait_for_function("() => document.querySelector('#lab-annotator input, #lab-annotator textarea')?.value === 'ana'")
        page.close()


def test_a_second_compare_during_a_first_shows_that_it_waits_for_the_model(browser, tmp_path, tone_wav):
    with running_app(tmp_path / "lab.db", "--backend-arg", "delay_s=3") as url:
        first, second = (browser.new_page(viewport=VIEWPORT) for _ in range(2))
        for page in (first, second):
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(url)
        ask(first, str(tone_wav), "What is heard first?")
        first.wait_for_function("() => document.body.innerText.includes('Asking') || document.body.innerText.includes('done on')")
        ask(second, str(tone_wav), "What is heard second?")
        second.wait_for_function("() => document.body.innerText.includes('Waiting for the model')")
        assert "queued: 1 ahead" in second.locator("#lab-results").inner_text()
        screenshot(second, "compare-waiting")
        for page in (first, second):
            page.wait_for_function("() => document.body.innerText.includes('Done:')", timeout=120_000)
            assert page.locator("#lab-results .lab-card[data-method]").count() == 4
            page.close()
