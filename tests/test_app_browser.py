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
    # the modality is the clip's own, detected (a steady tone: a sound); Compare waits for nothing else
    page.wait_for_function("() => document.querySelector('#lab-modality input')?.value === 'sound (detected)'")
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


LESSON_REPLY = "The announcement names nobody.\nAnswer: B"  # reasoning, then an answer line, as MCoT asks


def seed_shared_human_answers(db: os.PathLike, data_dir: os.PathLike, n: int = 6) -> None:
    """Two annotators answer the same `n` seeded items themselves, picking various options; they disagree on one."""
    from annotations import store
    from reliability.services import Services, Settings

    services = Services.build(Settings(os.fspath(db), os.fspath(data_dir), backend="scripted", backend_kwargs={"reply": "A"}))
    items = store.get_items(services.pool.db(), "lab")[:n]
    for i, item in enumerate(items):
        services.labels.human_answer("lab", item.id, "ana", item.choices[i % len(item.choices)])
        services.labels.human_answer("lab", item.id, "bob", item.choices[(i + (i == 0)) % len(item.choices)])


def test_a_lesson_walks_a_class_from_explained_cards_to_an_explained_dashboard(browser, tmp_path):
    db = tmp_path / "lab.db"
    seed_lab(db, tmp_path, n_items=9, methods=("baseline", "idk", "mcot", "agent"))
    seed_shared_human_answers(db, tmp_path)
    with running_app(db, reply=LESSON_REPLY) as url:
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        settle(page)
        modality = page.locator("#lab-modality input")

        # step 1: a spoken clip; its modality is detected, and the cards explain themselves
        open_tab(page, "Lesson")
        screenshot(page, "lesson")
        page.locator("#lab-lesson-1").click()
        page.wait_for_function("() => document.querySelector('#lab-modality input')?.value === 'speech (detected)'")
        assert "museum open" in page.locator("#lab-question textarea").input_value()
        page.locator("#lab-compare").click()
        page.wait_for_function("() => document.querySelectorAll('#lab-results .lab-card[data-method]').length === 4")
        settle(page)
        assert page.evaluate("() => window.scrollY") > 0, "the page scrolls to the results"
        assert page.evaluate("() => document.getElementById('lab-results').getBoundingClientRect().top") < VIEWPORT["height"]
        assert "Stored as speech · detected from the clip" in page.locator("#lab-results .lab-modality").inner_text()
        baseline = page.locator("#lab-results [data-method=baseline]").inner_text()
        assert "Wrong: answered “at nine o'clock”; the key is “at ten o'clock”." in baseline
        assert "in its final answer line, the reply gives that option's letter" in baseline
        mcot = page.locator("#lab-results [data-method=mcot]")
        assert "Reasoning" in mcot.inner_text() and "The announcement names nobody." in mcot.locator(".lab-reasoning").inner_text()
        assert page.locator("#lab-results [data-method=agent] .lab-steps li").count() == 3
        choose(page, "lab-modality", "music")  # a wrong pick for this clip must not outlive it

        # step 3: the same clip, a question it cannot answer: the old cards go, the baseline's guess is explained
        open_tab(page, "Lesson")
        page.locator("#lab-lesson-3").click()
        page.wait_for_function("() => document.querySelector('#lab-question textarea')?.value.includes('name')")
        assert page.locator("#lab-results .lab-card").count() == 0, "cards of the previous question are cleared"
        page.locator("#lab-compare").click()
        page.wait_for_function("() => document.body.innerText.includes('Done:')")
        assert "but the clip does not say" in page.locator("#lab-results [data-method=baseline]").inner_text()
        assert "Stored as speech · detected" in page.locator("#lab-results .lab-modality").inner_text(), "music was not carried over"
        settle(page)
        screenshot(page, "compare-explained")

        # step 2: a new clip brings its own detected modality, never the one picked for the last
        open_tab(page, "Lesson")
        page.locator("#lab-lesson-2").click()
        page.wait_for_function("() => document.querySelector('#lab-modality input')?.value === 'sound (detected)'")
        assert page.locator("#lab-results .lab-card").count() == 0
        page.locator("#lab-compare").click()
        page.wait_for_function("() => document.querySelector('#lab-results .lab-modality')")
        assert "Stored as sound" in page.locator("#lab-results .lab-modality").inner_text()
        assert modality.input_value() == "sound (detected)"

        # the Annotate tab says how labels are combined
        open_tab(page, "Annotate")
        assert "majority" in page.locator("#lab-combine").inner_text()

        # the last step opens the Dashboard: explained, honest about its small sample, a table that fits
        open_tab(page, "Lesson")
        page.locator("#lab-lesson-5").click()
        page.wait_for_function("() => document.querySelector('#lab-table .lab-metrics')")
        settle(page)
        headers = page.locator("#lab-table th").all_inner_texts()
        assert [h.strip() for h in headers] == ["method", "group", "n", "Acc", "Tru", "Rel", "RGI"]
        assert "share not answered wrongly" in page.locator("#lab-table th", has_text="Tru").get_attribute("title")
        assert "95 % interval" in page.locator("#lab-table td[title]").first.get_attribute("title")
        assert "Too small a sample" in page.locator("#lab-rgi").inner_text()
        assert "n=" in page.locator("#lab-rgi").inner_text() and "(n = " in page.locator("#lab-plane").inner_text()
        agreement = page.locator("#lab-agreement").inner_text()
        assert "Agreement among the humans' own answers" in agreement and "6 shared items" in agreement
        page.get_by_role("button", name="What the numbers mean").click()
        explained = page.locator("#lab-explain").inner_text()
        assert "Tru = (N_c + N_r) / N" in explained and "RGI = log10(20 / 10) = 0.30" in explained
        link = page.locator("#lab-explain a", has_text="docs/METRICS.md").get_attribute("href")
        assert page.request.get(url.rstrip("/") + link).ok
        screenshot(page, "dashboard-explained")
        page.get_by_role("button", name="What the numbers mean").click()

        # every column on demand, and still nothing cut at 1280 px
        page.set_viewport_size({"width": 1280, "height": 1000})
        page.locator("#lab-all-columns input").check()
        page.wait_for_function("() => [...document.querySelectorAll('#lab-table th')].some(th => th.innerText.includes('left out'))")
        fits = page.evaluate(
            """() => { const wrap = document.querySelector('#lab-table .lab-table-wrap');
                       const ths = [...wrap.querySelectorAll('th')];
                       return wrap.scrollWidth <= wrap.clientWidth + 1 && ths.every(th => th.getBoundingClientRect().height < 40)
                              && document.documentElement.scrollWidth <= 1280; }"""
        )
        assert fits, "the table with every column fits 1280 px, each header on one line"
        for tab in ("Compare", "Lesson"):
            open_tab(page, tab)
            assert page.evaluate("() => document.documentElement.scrollWidth") <= 1280, f"{tab} is cut at 1280 px"
        page.close()


def test_an_adapter_saved_while_a_page_is_open_is_offered_in_every_session_without_a_restart(browser, tmp_path):
    """Session 1 is open when an adapter lands in the adapters folder (as the Experiments tab or train-lora save it):
    a new session offers it on the Compare tab, and so does session 1, by its timer and after a reload."""
    db = tmp_path / "lab.db"
    title = "LoRA · toy-5at5-alpha16"
    methods = "() => document.body.innerText"
    with running_app(db) as url:
        first = browser.new_page(viewport=VIEWPORT)
        first.set_default_timeout(TIMEOUT_MS)
        first.goto(url)
        settle(first)
        assert "IDK prompting" in first.evaluate(methods) and title not in first.evaluate(methods)

        folder = tmp_path / "lab.db.adapters" / "toy-5at5-alpha16"
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text("{}")
        (folder / "card.json").write_text(json.dumps({"status": "complete", "base": {"backend": "scripted", "model_id": "scripted"}}))

        second = browser.new_page(viewport=VIEWPORT)
        second.set_default_timeout(TIMEOUT_MS)
        second.goto(url)
        settle(second)
        second.get_by_text(title).wait_for()
        first.get_by_text(title).wait_for(timeout=15_000)  # the open page's timer brings it without a reload
        first.reload()
        settle(first)
        first.get_by_text(title).wait_for()
        assert not first.get_by_label(title).is_checked(), "offered, not ticked: only shipped adapters are ticked"
        second.close()
        first.close()
