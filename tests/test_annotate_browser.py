"""Two annotators in headless Chromium (Debian's): a blind, balanced human baseline, and not one key press lost."""
from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from annotations import store
from annotations.db import open_db
from reliability.audio import SAMPLE_RATE
from reliability.services import Services, Settings
from reliability.services.labelling import HUMAN_MODE, VERDICT_MODE
from reliability.types import Answer, Decoding, Item, Judgement, Outcome
from test_app_browser import TIMEOUT_MS, VIEWPORT, browser, settle  # noqa: F401 (the fixture)
from test_app_api import running_app

pytestmark = pytest.mark.browser

OPTIONS = ("a tone", "street noise", "a voice", "a piano")
MODALITIES = ("sound", "music", "speech")
PER_MODALITY = 20  # items with audio of each modality, imported one modality after another as MMAU's file is
N_MUTE = 6  # items imported without audio
N_JUDGED = 3  # items with a model answer to judge
PRESS_GAP_MS = 40


def seed(db: os.PathLike, folder: os.PathLike) -> tuple[list[Item], list[str]]:
    """Dataset "mmau": 60 items with a 3 s clip, sorted by modality, 6 without audio, and a baseline run that
    answered the first N_JUDGED items wrongly. Returns the items and the judged item ids."""
    clip = os.path.join(os.fspath(folder), "clip.wav")
    sf.write(clip, (0.3 * np.sin(2 * np.pi * 330 * np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32), SAMPLE_RATE)
    items = [
        Item(f"{m}-{i}", f"Based on the given audio, what is heard ({m} {i})?", OPTIONS, OPTIONS[0], m, clip, "mmau")
        for m in MODALITIES for i in range(PER_MODALITY)
    ]
    items += [Item(f"mute-{i}", f"Based on the given audio, which one ({i})?", OPTIONS, OPTIONS[0], "speech", None, "mmau") for i in range(N_MUTE)]
    con = open_db(db)
    store.upsert_dataset(con, "mmau", [store.StoredItem(i) for i in items])
    run = store.get_or_create_run(con, "mmau", {"backend": "scripted", "model_id": "m"}, {"method": "baseline"}, Decoding())
    judged = [i.id for i in items[:N_JUDGED]]
    answers = [Answer(i, "baseline", "B", Judgement(OPTIONS[1], Outcome.WRONG, True, "letter"), [], Decoding()) for i in judged]
    store.save_answers(con, run.id, answers, [None] * len(answers), "j")
    return items, judged


def open_annotate(browser, url: str, name: str, mode: str):
    """A fresh browser (own storage) on the Annotate tab with `name`'s queue of dataset mmau loaded in `mode`."""
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    settle(page)
    page.get_by_role("tab", name="Annotate").click()
    page.locator("#lab-annotator input, #lab-annotator textarea").first.fill(name)
    if mode == HUMAN_MODE:
        page.get_by_label("Answer yourself (human baseline)").check()
    box = page.locator("#lab-queue-dataset input")
    box.click()
    box.fill("mmau")
    page.locator("ul[role=listbox] li", has_text="mmau").first.click()
    page.locator("#lab-load").click()
    page.wait_for_function(f"() => document.querySelector('#lab-progress')?.innerText.includes({name!r})")
    page.wait_for_function("() => document.querySelector('#lab-task .lab-question')")
    return page


def wait_progress(page, text: str) -> None:
    page.wait_for_function(f"() => document.querySelector('#lab-progress')?.innerText.includes({text!r})")


def press(page, keys: str) -> None:
    for key in keys:
        page.keyboard.press(key)
        page.wait_for_timeout(PRESS_GAP_MS)


def human_answers(db, annotator: str) -> dict[str, str | None]:
    return {r["item_id"]: r["choice"] for r in store.label_rows(open_db(db), "mmau") if r["kind"] == "human_answer" and r["annotator"] == annotator}


def test_two_annotators_make_a_blind_balanced_human_baseline(browser, tmp_path):  # noqa: F811
    db = tmp_path / "lab.db"
    items, judged = seed(db, tmp_path)
    modality = {i.id: i.modality for i in items}
    with running_app(db) as url:
        # alice answers herself: only items with their clip, in her own balanced order
        alice = open_annotate(browser, url, "alice", HUMAN_MODE)
        assert f"{N_MUTE} no audio" in alice.locator("#lab-progress").inner_text()
        assert "Item 1 of 60" in alice.locator("#lab-progress").inner_text()

        # Space plays the clip and pauses it again, whatever had focus
        alice.wait_for_function("() => document.querySelector('#lab-a-audio')?.innerText.includes('0:03')")  # the clip has loaded
        alice.locator("#lab-mode input[type=radio]").first.focus()
        alice.keyboard.press(" ")
        alice.wait_for_function("() => document.querySelector('#lab-a-audio .play-pause-button')?.getAttribute('aria-label') === 'Pause'")
        alice.wait_for_function("() => /0:0[12]/.test(document.querySelector('#lab-a-audio').innerText.split('0:03')[0])")
        alice.keyboard.press("r")  # from the start again
        alice.wait_for_function("() => document.querySelector('#lab-a-audio').innerText.trim().split(/\\s+/).includes('0:00')")
        alice.keyboard.press("p")
        alice.wait_for_function("() => document.querySelector('#lab-a-audio .play-pause-button')?.getAttribute('aria-label') === 'Play'")

        # 30 presses 40 ms apart, options by letter and by digit: every one stored, each on the next task
        press(alice, "a1" * 15)
        wait_progress(alice, "30 labelled by alice")
        answers = human_answers(db, "alice")
        assert len(answers) == 30 and set(answers.values()) == {OPTIONS[0]}
        order = Services.build(Settings(str(db), str(tmp_path))).labels.queue("alice", HUMAN_MODE, "mmau").tasks
        assert set(answers) == {t.item.id for t in order[:30]}  # the first 30 of her queue
        counts = {m: sum(modality[i] == m for i in answers) for m in MODALITIES}
        assert counts == {m: 10 for m in MODALITIES}, counts  # import order was 20 sound first
        assert not any(i.startswith("mute") for i in answers)
        alice.screenshot(path=str(tmp_path / "annotate-human.png"), full_page=True)

        # in a text field keys type, and the page says why nothing else happened
        alice.locator("#lab-annotator input, #lab-annotator textarea").first.focus()
        alice.keyboard.press("b")
        alice.wait_for_function("() => document.querySelector('#lab-keys-note')?.innerText.includes('Shortcuts are off while you type')")
        alice.keyboard.press("Escape")
        assert len(human_answers(db, "alice")) == 30

        # bob judges three model answers: the view says what seeing the key costs
        bob = open_annotate(browser, url, "bob", VERDICT_MODE)
        assert bob.evaluate("() => !document.activeElement.closest('#lab-load')")  # Space and Enter cannot reload
        # tabbing through the filters leaves no dropdown open over the progress line
        bob.locator("#lab-annotator input, #lab-annotator textarea").first.focus()
        for _ in range(8):
            bob.keyboard.press("Tab")
            if bob.evaluate("() => document.activeElement.type === 'checkbox'"):
                break
        bob.wait_for_function("() => document.querySelectorAll('ul[role=listbox]').length === 0", timeout=5000)
        assert "no longer counts in the human baseline" in bob.locator("#lab-task").inner_text()
        press(bob, "www")
        wait_progress(bob, f"All {N_JUDGED} labelled by bob")
        verdicts = lambda: {r["item_id"]: r["verdict"] for r in store.label_rows(open_db(db), "mmau") if r["kind"] == "verdict"}  # noqa: E731
        assert verdicts() == dict.fromkeys(judged, "wrong")
        # a stray key after completion changes nothing; it says how a change is made
        press(bob, "c")
        bob.wait_for_function("() => document.body.innerText.includes('again to change it')")
        assert verdicts() == dict.fromkeys(judged, "wrong")

        # switching mode reloads at once: the items whose key bob saw are not his human tasks
        bob.get_by_label("Answer yourself (human baseline)").check()
        wait_progress(bob, f"{N_JUDGED} you saw the key")
        assert bob.locator("#lab-correct").is_hidden() and bob.locator("#lab-choice-1").is_visible()
        press(bob, "b")
        wait_progress(bob, "1 labelled by bob")
        assert set(human_answers(db, "bob")).isdisjoint(judged)

        # the human row counts the 31 blind answers and sits above the other rows
        bob.get_by_role("tab", name="Dashboard").click()
        bob.wait_for_function("() => document.querySelector('#lab-agreement')?.innerText.includes('31 human answers used, 0 excluded')")
        bob.wait_for_function("() => document.querySelector('#lab-table')?.innerText.includes('baseline')")
        table = bob.locator("#lab-table").inner_text()
        assert table.index("human") < table.index("baseline"), table
        bob.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        for page in (alice, bob):
            page.context.close()
