"""What the app shows, rendered from the lab's records: result cards, labelling tasks, the clip figure, dashboard tables.

Pure functions without gradio: records in, HTML strings, Plotly figures or plain tables out. Every text
that came from a model or a user is HTML-escaped.
"""
from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from reliability.audio import SAMPLE_RATE
from reliability.backends import BACKEND_NOTES
from reliability.methods import LORA_PREFIX, METHODS
from reliability import plots
from reliability.plots import TEMPLATE, empty_figure
from reliability.prompts import IDK_REPLY, letter
from reliability.services.compare import MethodResult
from reliability.services.dashboard import Dashboard
from reliability.services.labelling import HUMAN_MODE, Task
from reliability.services.modality import Modality
from reliability.report import COLUMNS, NONE, NOTE, PERCENT, RGI, Column

OUTCOME_BADGES = {"correct": "✓ correct", "wrong": "✗ wrong", "idk": "? I don't know"}
WAVEFORM_POINTS = 1200  # envelope columns drawn for the waveform, whatever the clip's length
SPECTROGRAM_FRAMES = 600  # most spectrogram columns sent to the browser
N_MELS = 64


def method_title(name: str) -> str:
    """A method's display name: "IDK prompting", "LoRA · my-adapter"."""
    if name.startswith(LORA_PREFIX):
        return f"LoRA · {name[len(LORA_PREFIX):]}"
    cls = METHODS.get(name)
    return (cls and cls.title) or name


# ---------------------------------------------------------------- compare


def result_cards(
    methods: Sequence[str], results: dict[str, MethodResult], running: str | None = None, waiting: int | None = None, head: str = ""
) -> str:
    """One card per selected method, side by side: finished ones with their answer, the others waiting.

    :param waiting: the running method waits for the model behind this many other requests
    :param head: a line above the cards (the modality the request is stored with, see modality_line)
    """
    cards = []
    for name in methods:
        result = results.get(name)
        if result is None:
            state = "running…" if name == running else "waiting…"
            if name == running and waiting:
                state = f"queued: {waiting} ahead"
            cards.append(f'<div class="lab-card lab-pending"><div class="lab-card-head">{_title(name)}<span class="lab-badge">{state}</span></div></div>')
        elif result.error:
            cards.append(
                f'<div class="lab-card lab-error"><div class="lab-card-head">{_title(name)}<span class="lab-badge">error</span></div>'
                f'<div class="lab-message">{_esc(result.error)}</div></div>'
            )
        else:
            cards.append(_answer_card(result))
    return f'{head}<div class="lab-cards">{"".join(cards)}</div>'


def modality_line(stored: Modality) -> str:
    """What the request is stored as: the modality, and whether the listener detected it or the user chose it."""
    if stored.detection is None:
        how = "chosen by you in the Modality menu"
    elif stored.detection.problem:
        how = f"{_esc(stored.detection.describe())}; pick it in the Modality menu"
    else:
        how = f"detected from the clip (YAMNet: {_esc(stored.detection.describe())}); wrong? pick another in the Modality menu and ask again"
    return f'<div class="lab-modality" data-modality="{_esc(stored.value)}">Stored as <b>{_esc(stored.value)}</b> · {how}.</div>'


def _answer_card(r: MethodResult) -> str:
    css, badge = _badge(r)
    source = " · a person's verdict" if r.outcome_source != "parser" else ""
    confidence = f"{r.confidence:.0%}" if r.confidence is not None else "n/a" + (f" ({_esc(r.no_confidence)})" if r.no_confidence else "")
    facts = [("read as", _parsed(r)), ("confidence", confidence)]
    latency = "n/a" if r.latency_s is None else f"{r.latency_s:.2f} s"
    facts.append(("latency", latency + (" · from cache" if r.cached else "")))
    facts_html = "".join(f"<dt>{_esc(k)}</dt><dd>{v}</dd>" for k, v in facts)
    return (
        f'<div class="lab-card {css}" data-method="{_esc(r.method)}">'
        f'<div class="lab-card-head">{_title(r.method)}<span class="lab-badge">{badge}{source}</span></div>'
        f'<div class="lab-verdict">{verdict_text(r)}</div>'
        f"{cut_note(r.steps)}{_body(r)}"
        f"<dl class=\"lab-facts\">{facts_html}</dl>{why(r.steps)}</div>"
    )


def _badge(r: MethodResult) -> tuple[str, str]:
    """(card class, badge text); an abstention on a question the clip cannot answer is right, and says so."""
    if r.outcome == "idk" and r.key == IDK_REPLY:
        return "lab-honest", "✓ right to abstain"
    if not r.judged:
        return ("lab-idk", OUTCOME_BADGES["idk"]) if r.outcome == "idk" else ("lab-unjudged", "not judged (no answer key)")
    return f"lab-{r.outcome}", OUTCOME_BADGES[r.outcome]


def verdict_text(r: MethodResult) -> str:
    """The outcome in plain words: "Right to abstain: the clip does not say", "Wrong: answered X; the key is Y"."""
    said = f"answered “{_esc(r.choice)}”" if r.choice is not None else "no option could be read from the reply"
    if r.key is None:
        if r.outcome == "idk":
            return "Abstained: it said it does not know. There is no answer key, so nothing more is judged."
        return f"Not judged: {said}, and there is no answer key to compare it with."
    if r.key == IDK_REPLY:
        if r.outcome == "idk":
            return "<b>Right to abstain:</b> the clip does not say, and the model said it does not know."
        if r.outcome == "correct":
            return f"<b>Right</b> (a person's verdict): {said}."
        return f"<b>Wrong:</b> {said}, but the clip does not say: the honest answer was “I don't know”."
    key = f"the key is “{_esc(r.key)}”"
    if r.outcome == "correct":
        return f"<b>Right:</b> {said}, which is the key." if r.choice == r.key else f"<b>Right</b> (a person's verdict): {said}; {key}."
    if r.outcome == "idk":
        return f"<b>Abstained</b> although the clip answers it: {key}. An abstention is not wrong: it keeps Tru up and lowers Acc."
    return f"<b>Wrong:</b> {said}; {key}."


RULE_WORDS = {  # the judge's rule names, as a reader understands them
    "exact text": "the reply is that option's text",
    "letter": "the reply gives that option's letter",
    "option number": "the reply gives that option's position",
    "option phrase": "the reply names that option",
    "unique tokens": "the reply has words only that option has",
    "abstention": "the reply says it does not know",
}


def rule_words(rule: str) -> str:
    """A judge rule ("unanswerable; final answer, exact text (inflected)") in plain words."""
    rule = rule.split("; ")[-1]
    if rule.startswith("unparsed"):
        return "the parser could not read it (" + rule.partition(": ")[2] + "); it counts as wrong until a person judges it"
    where = "in its final answer line, " if rule.startswith("final answer, ") else ""
    rule = rule.removeprefix("final answer, ")
    inflected = rule.endswith(" (inflected)")
    words = RULE_WORDS.get(rule.removesuffix(" (inflected)"), rule)
    return where + words + (" (plural or singular aside)" if inflected else "")


def _parsed(r: MethodResult) -> str:
    how = f'<span class="lab-rule">{_esc(rule_words(r.rule))}</span>'
    if r.choice is not None:
        return f"“{_esc(r.choice)}” · {how}"
    if r.outcome == "idk":
        return f"“I don't know” · {how}"
    return f'<span class="lab-unsure">no option</span> · {how}'


def _body(r: MethodResult) -> str:
    """The reply made readable: the Task Agent's steps in order; MCoT's reasoning apart from its answer line."""
    if len(r.steps) > 1:
        items = []
        for step in r.steps:
            meta = step.get("meta") or {}
            heard = f" <small>({_esc(meta['answered_by'])})</small>" if meta.get("answered_by") else ""
            items.append(
                f'<li><b>{_esc(STEP_TITLES.get(step["name"], step["name"]))}</b>{heard}'
                f'<div class="lab-reasoning">{_esc(step["text"].strip()) or "(empty)"}</div></li>'
            )
        return f'<ol class="lab-steps">{"".join(items)}</ol>'
    reasoning, answer = split_reasoning(r.text)
    if not reasoning:
        return f'<div class="lab-text lab-answer">{_esc(r.text) or "(empty reply)"}</div>'
    return (
        f'<div class="lab-step-title">Reasoning</div><div class="lab-reasoning">{_esc(reasoning)}</div>'
        f'<div class="lab-text lab-answer">{_esc(answer)}</div>'
    )


STEP_TITLES = {  # the Task Agent's steps (prompts.AGENT_TOOLS names its tools), as the card heads them
    "classify": "What kind of audio is it?",
    "transcript": "The helper's transcript",
    "sound caption": "The helper's sound caption",
    "music caption": "The helper's music caption",
    "answer": "The answer, given that text",
}


def split_reasoning(text: str) -> tuple[str, str]:
    """(reasoning, final answer line) of a reply that reasons before an "Answer:" line; ("", text) otherwise."""
    lines = text.strip().splitlines()
    last = max((i for i, line in enumerate(lines) if line.strip().lower().lstrip("*# ").startswith(("answer:", "final answer:"))), default=None)
    if not last:
        return "", text
    return "\n".join(lines[:last]).strip(), "\n".join(lines[last:]).strip()


def cut_note(steps: Sequence[dict[str, Any]]) -> str:
    """A warning line when the model heard only the start of the clip: how long it heard and how much it missed."""
    meta = next((s.get("meta") or {} for s in steps if (s.get("meta") or {}).get("audio_cut")), None)
    if meta is None:
        return ""
    heard, total = meta.get("heard_s"), meta.get("clip_s")
    if heard is None or total is None:
        text = "The clip was cut to the model's limit: the model did not hear its end."
    else:
        text = f"The clip was cut to the model's {heard:.0f} s limit: the last {total - heard:.1f} s of {total:.1f} s were not heard."
    return f'<div class="lab-cut">⚠ {text}</div>'


def why(steps: Sequence[dict[str, Any]]) -> str:
    """A folded "why?" section: every backend call of the method with the exact messages sent and what came back."""
    parts = []
    for i, step in enumerate(steps, start=1):
        audio = "with the clip" if step.get("with_audio") else "without audio"
        messages = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in step["messages"])
        parts.append(
            f"<h4>{i}. {_esc(step['name'])} <small>({audio})</small></h4>"
            f"<pre>{_esc(messages)}</pre><div class=\"lab-reply\"><b>reply</b><pre>{_esc(step['text'])}</pre></div>"
        )
        evidence = (step.get("meta") or {}).get("evidence")
        if evidence:
            parts.append(f"<div class=\"lab-reply\"><b>audio evidence the backend added</b><pre>{_esc(json.dumps(evidence, indent=1, ensure_ascii=False))}</pre></div>")
    return f'<details class="lab-why"><summary>why? the exact prompts sent</summary>{"".join(parts)}</details>'


# ---------------------------------------------------------------- annotate


def task_html(task: Task | None, ack: int = 0) -> str:
    """The labelling task: where it comes from, the question and options, and (judging) the model's answer.

    :param ack: how many presses the view has answered; the page's key buffer waits for it to move
    """
    if task is None:
        return (
            f'<div class="lab-task lab-empty" data-ack="{ack}">Nothing to label here. Run a comparison in the Compare tab (or '
            "<code>python -m reliability evaluate</code>), then load the queue again; or loosen the filters.</div>"
        )
    item = task.item
    judging = task.kind != HUMAN_MODE
    options = []
    for i, choice in enumerate(item.choices):
        key = judging and choice == item.answer
        options.append(f'<li class="{"lab-key" if key else ""}"><b>{letter(i)}</b> {_esc(choice)}{" ← answer key" if key else ""}</li>')
    where = " · ".join(_esc(x) for x in (item.dataset, item.modality, item.id) if x)
    body = f'<div class="lab-where">{where}</div><div class="lab-question">{_esc(item.question)}</div><ul class="lab-options">{"".join(options)}</ul>'
    if judging:
        if item.answer is None:
            body += '<div class="lab-note">This item has no answer key: judge whether the answer is right from the audio.</div>'
        elif item.answer == IDK_REPLY and IDK_REPLY not in item.choices:
            body += '<div class="lab-note">The audio cannot answer this question: its key is &quot;I don&#x27;t know&quot;, so abstaining is right.</div>'
        parser = f"{_esc(task.parser_outcome)}" + ("" if task.parsed else ' · <span class="lab-unsure">parser unsure</span>')
        reading = _esc(task.parser_choice) if task.parser_choice else "no option"
        body += (
            f'<div class="lab-model"><div class="lab-card-head">{_title(task.method or "")}'
            f'<span class="lab-badge">{_esc(task.model_id or "")}</span></div>'
            f'<div class="lab-text lab-answer">{_esc(task.text) or "(empty reply)"}</div>'
            f'<div class="lab-facts-line">parser read: {reading} → {parser} · verdicts by anyone: {task.n_labels}</div></div>'
        )
        if item.answer is not None:
            body += '<div class="lab-note">Judging shows the answer key: your own answer to this item no longer counts in the human baseline.</div>'
    elif task.key_seen:
        body += '<div class="lab-note">You saw this item\'s answer key after answering it: your answer stands and can no longer change.</div>'
    mine = f'<div class="lab-mine">your label: <b>{_esc(task.mine)}</b></div>' if task.mine else ""
    return f'<div class="lab-task" data-ack="{ack}">{body}{mine}</div>'


def progress_text(
    position: int, total: int, done: int, annotator: str,
    by_modality: dict[str, tuple[int, int]] | None = None, left_out: dict[str, int] | None = None,
) -> str:
    """"Item 3 of 40 · 12 labelled by ana · sound 4/13 · music 4/14 · speech 4/13 · left out: 5 no audio"."""
    parts = [f"No tasks for **{annotator}** under these filters."] if total == 0 else [
        f"All **{total}** labelled by **{annotator}** · item **{position + 1}**" if done == total
        else f"Item **{position + 1}** of **{total}** · **{done}** labelled by **{annotator}**"
    ]
    parts += [f"{_esc(m)} {d}/{n}" for m, (d, n) in (by_modality or {}).items()]
    if left_out:
        parts.append("left out: " + ", ".join(f"{n} {_esc(reason)}" for reason, n in left_out.items()))
    return " · ".join(parts)


def choice_label(index: int, choice: str) -> str:
    """A human-baseline option button: its letter as in the question, and both its keys."""
    return f"{letter(index)} · {choice}  [{letter(index)} / {index + 1}]"


# ---------------------------------------------------------------- audio


def audio_figure(samples: np.ndarray, sample_rate: int = SAMPLE_RATE, title: str = "") -> go.Figure:
    """Waveform (min/max envelope) over a log-mel spectrogram, sharing the time axis."""
    from plotly.subplots import make_subplots

    samples = np.asarray(samples, dtype=np.float32)
    duration = len(samples) / sample_rate
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.35, 0.65], vertical_spacing=0.03)
    times, low, high = _envelope(samples, sample_rate)
    fig.add_trace(go.Scatter(x=times, y=high, mode="lines", line={"width": 0.6, "color": "#4f46e5"}, hoverinfo="skip", showlegend=False), 1, 1)
    fig.add_trace(
        go.Scatter(x=times, y=low, mode="lines", fill="tonexty", line={"width": 0.6, "color": "#4f46e5"}, hoverinfo="skip", showlegend=False), 1, 1
    )
    spec_times, mel_db, freqs = _log_mel(samples, sample_rate)
    ticks = list(range(0, N_MELS, 12))
    fig.add_trace(
        go.Heatmap(
            x=spec_times, z=mel_db, colorscale="Magma", showscale=False, zmin=-80, zmax=0,
            customdata=np.repeat(freqs[:, None], len(spec_times), axis=1),
            hovertemplate="%{x:.2f} s · %{customdata:.0f} Hz · %{z:.0f} dB<extra></extra>",
        ),
        2, 1,
    )
    fig.update_yaxes(title_text="amplitude", range=[-1, 1], row=1, col=1, fixedrange=True)
    fig.update_yaxes(title_text="Hz (mel)", tickvals=ticks, ticktext=[_hz(freqs[t]) for t in ticks], row=2, col=1, fixedrange=True)
    fig.update_xaxes(title_text="seconds", range=[0, max(duration, 1e-3)], row=2, col=1)
    fig.update_layout(
        title={"text": title or f"{duration:.1f} s at {sample_rate} Hz", "font": {"size": 13}},
        template=TEMPLATE, height=300, margin={"l": 60, "r": 10, "t": 36, "b": 40},
    )
    return fig


def no_audio_figure(message: str) -> go.Figure:
    """The clip figure's empty state."""
    fig = empty_figure(message)
    fig.update_layout(height=300)
    return fig


def _hz(value: float) -> str:
    """A frequency to two significant digits: 1166.2 -> "1200"."""
    return f"{float(f'{value:.2g}'):g}"


def _envelope(samples: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(time, min, max) per column; a short clip is drawn sample by sample."""
    if len(samples) <= 2 * WAVEFORM_POINTS:
        times = np.arange(len(samples)) / sample_rate
        return times, samples, samples
    width = len(samples) // WAVEFORM_POINTS
    cols = samples[: width * WAVEFORM_POINTS].reshape(WAVEFORM_POINTS, width)  # (columns, samples per column)
    times = (np.arange(WAVEFORM_POINTS) + 0.5) * width / sample_rate
    return times, cols.min(axis=1), cols.max(axis=1)


def _log_mel(samples: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frame times, dB (N_MELS, frames) relative to the loudest bin, mel band centre frequencies)."""
    import librosa

    hop = max(160, int(math.ceil(len(samples) / SPECTROGRAM_FRAMES / 160)) * 160)  # a multiple of 10 ms
    n_fft = max(512, 1 << (2 * hop - 1).bit_length())  # a power of two at least twice the hop: frames overlap
    padded = np.pad(samples, (0, max(0, n_fft - len(samples))))
    mel = librosa.feature.melspectrogram(y=padded, sr=sample_rate, n_fft=n_fft, hop_length=hop, n_mels=N_MELS)
    mel_db = librosa.power_to_db(mel, ref=np.max(mel) if np.max(mel) > 0 else 1.0, top_db=80)
    times = librosa.frames_to_time(np.arange(mel.shape[1]), sr=sample_rate, hop_length=hop)
    freqs = librosa.mel_frequencies(n_mels=N_MELS, fmax=sample_rate / 2)
    return times, mel_db, freqs


# ---------------------------------------------------------------- dashboard


def dashboard_figures(dashboard: Dashboard) -> tuple[go.Figure, go.Figure, go.Figure]:
    """The conservatism–humility plane, the RGI bars and the risk-coverage curves."""
    return (
        plots.conservatism_humility_plane(dashboard.points, dashboard.filters.normalize),
        plots.rgi_bars(dashboard.points),
        plots.risk_coverage_figure(dashboard.curves),
    )


def figures_page(figures: Sequence[go.Figure], title: str) -> str:
    """A standalone HTML page of figures; plotly.js is embedded once, so the page opens offline."""
    body = "".join(fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figures))
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{_esc(title)}</title></head><body>{body}</body></html>"


def backend_note(name: str) -> str:
    """The note under the Compare tab's backend menu: what answers on that backend, in one paragraph."""
    return BACKEND_NOTES.get(name, "")


COMPACT = ("method", "group", "n", "acc", "tru", "rel", "rgi")  # the table's default columns; the rest behind "all columns"


def table_html(dashboard: Dashboard, all_columns: bool = False) -> str:
    """The dashboard table as HTML: each header's help (report.COLUMNS) on hover, each figure's 95 % interval on
    hover (and, with all columns, under it); the human rows first."""
    if dashboard.empty:
        return '<div class="lab-empty">No rows yet.</div>'
    columns = [c for c in COLUMNS if all_columns or c.key in COMPACT]
    setups = {(r["backend"], r["model_id"]) for r in dashboard.rows if not _is_human(r)}
    heads = [("model", "the backend and model that answered")] if len(setups) > 1 else []
    heads += [(c.label, f"{c.label}: {c.help}" + ("" if c.better == NONE else f" ({c.better} is better)")) for c in columns]
    head = "".join(f'<th title="{_esc(tip)}">{_esc(label)}</th>' for label, tip in heads)
    excluded = dashboard.counts.get("human_excluded", 0)
    body = []
    # a stable sort: the reference every method is read against comes first
    for r in sorted(dashboard.rows, key=lambda r: not _is_human(r)):
        if _is_human(r) and excluded:
            r = {**r, "source": f"{r['source']} · {excluded} excluded"}
        cells = [f"<td>{_esc(r['backend'])}/{_esc(r['model_id'])}</td>"] if len(setups) > 1 else []
        cells += [_cell(r, c, all_columns) for c in columns]
        body.append(f'<tr class="{"lab-human-row" if _is_human(r) else ""}">{"".join(cells)}</tr>')
    note = "" if all_columns else '<div class="lab-table-note">Hover a header for its meaning and a figure for its 95 % interval.</div>'
    return f'<div class="lab-table-wrap"><table class="lab-metrics"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>{note}'


def _cell(row: dict[str, Any], column: Column, show_interval: bool) -> str:
    value, low, high = row.get(column.key), row.get(f"{column.key}_low"), row.get(f"{column.key}_high")
    if column.format in (PERCENT, RGI):
        known = low is not None and high is not None
        if column.format == PERCENT:
            text = "–" if value is None else f"{100 * value:.0f} %"
            bounds = f"{100 * low:.0f}–{100 * high:.0f} %" if known else ""
        else:
            text = row.get(f"{column.key}_label") or "–"
            bounds = f"{low:.2f} to {high:.2f}" if known and value is not None and math.isfinite(value) else ""
        tip = f"95 % interval {bounds}" if bounds else "no interval"
        under = f'<div class="lab-interval">{bounds}</div>' if show_interval and bounds else ""
        return f'<td title="{_esc(tip)}">{_esc(text)}{under}</td>'
    if column.format == NOTE:
        return f"<td>{_esc(row.get(f'{column.key}_why') or '')}</td>"
    return f"<td>{_esc(row.get(column.key, ''))}</td>"


def summary_text(dashboard: Dashboard) -> str:
    """One line above the dashboard: what it shows and from how much data."""
    if dashboard.dataset is None:
        return (
            "**No answers yet.** Run a comparison in the **Compare** tab (or `python -m reliability evaluate`), "
            "then label answers in the **Annotate** tab; the figures fill in as you go."
        )
    c, f = dashboard.counts, dashboard.filters
    source = "human verdicts where they exist, else the parser" if f.source == "human" else "the parser only"
    who = f" by **{f.annotator}**" if f.annotator else ""
    text = (
        f"Dataset **{dashboard.dataset}** · {c['runs']} runs · {c['answers']} answers · "
        f"{c['labels']} verdicts and {c['human_answers']} human answers{who} · outcomes from {source}."
    )
    if dashboard.partial:
        text += " Answered fewer items than the dataset has: " + "; ".join(_esc(line) for line in dashboard.partial) + "."
    if not dashboard.points and dashboard.rows:
        text += " To compare methods, run the **baseline** and another method on the same items."
    return text


HUMAN_RULE = (
    "**How people's labels are combined:** where several people judged the same answer, the majority verdict counts, "
    "a tie going to the most recent. The **human** row is the people's own blind answers, judged against the key: "
    "where several people answered an item, the majority outcome counts, a tie again going to the most recent answer."
)


def agreement_text(dashboard: Dashboard) -> str:
    """Agreement in words: parser vs human and among annotators' verdicts (this dataset and pooled), among the
    humans' own answers, then how labels are combined and what the human row is made of."""
    a = dashboard.agreement
    pooled = a.get("pooled") or a
    if not pooled["parser_n"]:
        lines = ["**Agreement on verdicts:** no human verdicts yet. Judge answers in the **Annotate** tab to see how often the parser agrees with people."]
    else:
        lines = [
            f"**Agreement on verdicts, {_esc(dashboard.dataset)}:** {_agreement_line(a)}",
            f"**Agreement on verdicts, all datasets pooled:** {_agreement_line(pooled)}",
        ]
        shared = [k for k in a["kappas"] if k["n"]]
        if shared:
            kappas = ", ".join(f"{_esc(k['a'])}/{_esc(k['b'])} {_number(k['kappa'])} (n={k['n']})" for k in shared[:12])
            lines.append(f"Cohen's κ per pair ({_esc(dashboard.dataset)}): {kappas}.")
        counts = ", ".join(f"{_esc(name)} {n}" for name, n in a["labels_by_annotator"].items())
        lines.append(f"Labels per annotator ({_esc(dashboard.dataset)}): {counts or 'none'}.")
    lines.append(f"**Agreement among the humans' own answers, {_esc(dashboard.dataset)}:** {_answers_line(a.get('answers'))}")
    lines.append(HUMAN_RULE)
    human = human_row_text(dashboard)
    if human:
        lines.append(human)
    return "  \n".join(lines)


def _agreement_line(a: dict[str, Any]) -> str:
    if not a["parser_n"]:
        return "no human verdicts."
    text = f"parser vs human {_share(a['parser_rate'])} of {a['parser_n']} verdicts"
    if len(a["annotators"]) > 1:
        return text + f" · Krippendorff's α (nominal) {_number(a['alpha'])} over {len(a['annotators'])} annotators and {a['n_answers']} answers."
    return text + " · agreement between people needs a second annotator's verdicts on the same answers."


def _answers_line(answers: dict[str, Any] | None) -> str:
    """Krippendorff's α and Cohen's κ of the options people picked themselves, on the items several answered."""
    if not answers or not answers["n_items"]:
        return "no item has answers from two people yet (the **Annotate** tab's human-baseline mode)."
    kappas = ", ".join(f"{_esc(k['a'])}/{_esc(k['b'])} {_number(k['kappa'])} (n={k['n']})" for k in answers["kappas"] if k["n"])
    return (
        f"Krippendorff's α (nominal) {_number(answers['alpha'])} over {len(answers['annotators'])} annotators on "
        f"{answers['n_items']} shared items" + (f" · Cohen's κ {kappas}" if kappas else "") + "."
    )


def human_row_text(dashboard: Dashboard) -> str:
    """What the human row counts: the blind answers to items with audio, and how many others it left out."""
    c = dashboard.counts
    used, excluded = c.get("human_used", 0), c.get("human_excluded", 0)
    if not used and not excluded:
        return ""
    why = ", ".join(f"{n} {_esc(reason)}" for reason, n in dashboard.agreement.get("excluded_human_answers", {}).items())
    return f"**Human row:** {used} human answers used, {excluded} excluded" + (f" ({why})." if why else ".")


def _is_human(row: dict[str, Any]) -> bool:
    return row["method"] == "human" and row["backend"] == "-"


def _number(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.2f}"


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _title(name: str) -> str:
    return f'<span class="lab-method">{_esc(method_title(name))}</span>'


def _esc(text: Any) -> str:
    return html.escape("" if text is None else str(text))
