"""The app's Experiments tab: build a K@N IDK dataset, train a LoRA adapter and compare it, run the alpha sweep and the transfer matrix.

`ExperimentHandlers` holds the event handlers (plain methods over the services, testable without a browser);
`build_experiments_tab(services, tab, methods_box)` lays the tab out inside the caller's `gr.Tab` and wires it.
One experiment runs at a time per app; while it trains or evaluates it holds the backend's model lock,
so Compare requests on that backend wait instead of answering with a half-trained adapter.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import gradio as gr
import plotly.graph_objects as go

from reliability.services import Services
from reliability.training import plots as experiment_plots
from reliability.training import experiments
from reliability.training.adapters import incompatibility
from reliability.training.config import TrainConfig
from reliability.training.idk_dataset import FULL, NONE, SamplingConfig, format_ratios, idk_ratios
from reliability.types import MODALITIES
from reliability.ui.handlers import PRIVATE, user_errors
from reliability.ui.render import method_title

ALL = "(all)"
CONDITIONS = [("with the clip", FULL), ("no audio (text only)", NONE)]
NO_DATASET = "none yet: python -m reliability import dataset reliability/data/mmau-test-mini.json"
NO_RESULTS = (
    "No results yet. Pick a dataset, then **1 · Build IDK dataset** and **2 · Train adapter and compare**; "
    "the alpha sweep and the transfer matrix train several adapters."
)
RESULT_HEADERS = ["alpha / trained on", "adapter", "evaluated on", "n", "Acc %", "Rel %", "Rej %", "ΔCon %", "ΔHum %", "RGI"]
ADAPTER_HEADERS = ["method", "status", "base model", "K@N", "trained on", "examples (IDK %)", "alpha", "final loss", "seconds"]


class ExperimentHandlers:
    """Handlers of the Experiments tab. Settings arrive as one list of values (see `settings_inputs`)."""

    def __init__(self, services: Services):
        self.services = services
        self.stop_event = threading.Event()
        self._busy = threading.Lock()  # one experiment at a time: they share the model and the adapter folder

    def datasets(self, current: str | None) -> Any:
        """The dataset dropdown's choices from the notebook; the current pick stays when it still exists."""
        names = self.services.catalog.dataset_names()
        info = None if names else NO_DATASET
        return gr.update(choices=names, value=current if current in names else (names[0] if names else None), info=info)

    def adapters_table(self) -> dict[str, Any]:
        """Saved and shipped adapters with what their cards say, for the tab's table; the status says why one is not offered."""
        headers = ADAPTER_HEADERS
        rows = []
        base = self.services.pool.get_backend().adapter_base()
        for a in self.services.pool.saved_adapters():
            card, data = a.card, a.card.get("dataset", {})
            why = incompatibility(card, base)
            status = ", ".join([card.get("status", "no card"), *(["shipped"] if a.shipped else []), *([f"not offered: {why}"] if why else [])])
            rows.append([
                a.method, status, card.get("base", {}).get("model_id", ""),
                f"{data.get('k', '?')}@{data.get('n', '?')}", "+".join(data.get("modalities", {})),
                f"{data.get('examples', '?')} ({100 * data.get('idk_ratio', 0):.0f} %)" if data else "",
                card.get("hyperparameters", {}).get("alpha", ""), _round(card.get("final_loss")), card.get("seconds", ""),
            ])
        return {"headers": headers, "data": rows}

    def stop(self) -> str:
        self.stop_event.set()
        return "Stopping after the current batch or training step (everything done so far is kept)…"

    @user_errors
    def build(self, *values, progress=gr.Progress()) -> tuple[str, go.Figure, str]:
        """Sample N answers per training item and show the IDK ratio of every K@N per modality."""
        config, sampling, _, backend = self._settings(values)
        with self._running(backend):
            result, path = self.services.experiments.sample(config, sampling, backend, self._progress(progress))
        ratios = idk_ratios(result.records)
        status = (
            f"**{len(result.records)} items** sampled {sampling.n}× on {backend} ({result.sampled} now, the rest from {path.name}); "
            f"{len(result.skipped)} skipped."
        )
        return status, experiment_plots.idk_ratio_figure(ratios), f"```\n{format_ratios(ratios)}\n```"

    @user_errors
    def train(self, *values, progress=gr.Progress()) -> tuple[str, dict, dict, Any]:
        """Train (or reuse) one adapter with the settings and compare it with the baseline on the evaluation items."""
        result = self._run(experiments.train_and_compare, values, progress)
        return (self._status(result), _rows_table(result), self.adapters_table(), self._methods_update())

    @user_errors
    def sweep(self, *values, progress=gr.Progress()) -> tuple[str, go.Figure, dict, dict, Any]:
        result = self._run(experiments.alpha_sweep, values, progress)
        figure = experiment_plots.alpha_sweep_figure(result.rows)
        return (self._status(result), figure, _rows_table(result), self.adapters_table(), self._methods_update())

    @user_errors
    def transfer(self, *values, progress=gr.Progress()) -> tuple[str, go.Figure, dict, dict, Any]:
        result = self._run(experiments.transfer_matrix, values, progress)
        figure = experiment_plots.transfer_heatmap(result.rows)
        return (self._status(result), figure, _rows_table(result), self.adapters_table(), self._methods_update())

    # ------------------------------------------------------------ helpers

    def _run(self, experiment, values, progress) -> experiments.ExperimentResult:
        config, sampling, training, backend = self._settings(values)
        if not self.services.pool.settings.adapters_dir:
            raise gr.Error("The app has no adapters folder (start it with --adapters DIR).")
        with self._running(backend):
            return self.services.experiments.run(experiment, config, sampling, training, backend, self._progress(progress), self.stop_event)

    @contextlib.contextmanager
    def _running(self, backend: str) -> Iterator[None]:
        """Exclusive use of the tab, and of the backend's model, for one experiment."""
        if not self._busy.acquire(blocking=False):
            raise gr.Error("An experiment is already running in this app; wait for it or stop it.")
        try:
            self.stop_event.clear()
            with self.services.pool.model_lock(backend):
                yield
        finally:
            self._busy.release()

    def _settings(self, values):
        """(ExperimentConfig, SamplingConfig, TrainConfig, backend name) from the settings components' values."""
        (dataset, backend, condition, limit, holdout, modality, n, k, temperature, top_p,
         rank, alpha, learning_rate, epochs, grad_accum, alphas) = values
        if not dataset:
            raise gr.Error("Pick a dataset (import one with `python -m reliability import dataset`).")
        try:
            config = experiments.ExperimentConfig(
                dataset=dataset, holdout=float(holdout or 0), k=int(k), limit=int(limit or 0),
                modality="" if modality in (None, ALL) else modality,
                alphas=tuple(float(a) for a in str(alphas).replace(" ", "").split(",") if a),
            )
            sampling = SamplingConfig(n=int(n), temperature=float(temperature), top_p=float(top_p), condition=condition)
            training = TrainConfig(rank=int(rank), alpha=float(alpha), learning_rate=float(learning_rate), epochs=int(epochs), grad_accum=int(grad_accum))
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc
        return config, sampling, training, backend or self.services.pool.settings.backend

    def _progress(self, progress):
        def report(done: int, total: int, message: str) -> None:
            progress(done / total if total else 0.0, desc=message)

        return report

    def _methods_update(self) -> Any:
        return gr.update(choices=[(method_title(m), m) for m in self.services.pool.method_names()])

    def _status(self, result: experiments.ExperimentResult) -> str:
        where = "on the same items it trained on (in-sample)" if result.in_sample else "on held-out items"
        total = [r for r in result.rows if r.get("group", r.get("eval")) == experiments.TOTAL]
        lines = [f"Trained on **{result.train_items}** items, evaluated {where} (**{result.eval_items}**). "
                 "Every answer is in the lab notebook: the **Dashboard** shows each adapter beside the baseline."]
        for r in total:
            what = f"trained on {r['train']}" if "train" in r else f"alpha {r['alpha']:g}"
            lines.append(f"- `lora:{r['adapter']}` ({what}): ΔCon {_pct(r['delta_con'])}, ΔHum {_pct(r['delta_hum'])}, RGI **{r['rgi_label']}**")
        lines += [f"- note: {n}" for n in result.notes]
        return "\n".join(lines)


def settings_inputs(services: Services) -> list[gr.components.Component]:
    """The tab's settings components, in the order ExperimentHandlers._settings reads them."""
    with gr.Row():
        dataset = gr.Dropdown([], label="Dataset", allow_custom_value=True, info="the list fills when the tab opens", elem_id="lab-exp-dataset")
        backend = gr.Dropdown(services.pool.backend_names(), value=services.pool.settings.backend, label="Backend")
        condition = gr.Radio(CONDITIONS, value=FULL, label="Audio")
        limit = gr.Number(0, precision=0, label="First N items (0: all)")
        holdout = gr.Slider(0, 0.9, value=0, step=0.05, label="Held out for evaluation (0: evaluate in-sample)")
        modality = gr.Dropdown([ALL, *MODALITIES], value=ALL, label="Train on modality")
    with gr.Row():
        n = gr.Number(5, precision=0, minimum=1, maximum=20, label="N samples per item")
        k = gr.Number(5, precision=0, minimum=1, maximum=20, label="K (K@N)")
        temperature = gr.Number(1.0, minimum=0.05, label="Temperature")
        top_p = gr.Number(0.9, minimum=0.05, maximum=1.0, label="Top-p")
        rank = gr.Number(8, precision=0, minimum=1, label="LoRA rank")
        alpha = gr.Number(16, minimum=0.01, label="LoRA alpha")
        learning_rate = gr.Number(2e-4, label="Learning rate")
        epochs = gr.Number(1, precision=0, minimum=1, label="Epochs")
        grad_accum = gr.Number(4, precision=0, minimum=1, label="Gradient accumulation")
    alphas = gr.Textbox("4, 16, 64, 256", label="Alphas of the sweep (comma-separated)")
    return [dataset, backend, condition, limit, holdout, modality, n, k, temperature, top_p, rank, alpha, learning_rate, epochs, grad_accum, alphas]


def build_experiments_tab(services: Services, tab: gr.Tab, methods_box: gr.CheckboxGroup | None = None) -> ExperimentHandlers:
    """Lay out and wire the tab inside the caller's `with gr.Tab(...) as tab:`.

    Selecting the tab refreshes its dataset list and adapter table; `methods_box` (the Compare tab's
    method list) receives every new adapter as a method.
    """
    ui = ExperimentHandlers(services)
    gr.Markdown(
        "Build the model-specific **IDK dataset** (each item answered N times; the target is the answer when at least K "
        "are correct, else \"I don't know\"), train a **LoRA** adapter on it, and compare it with the baseline. "
        "Adapters appear as `lora:<name>` methods in Compare and on the Dashboard."
    )
    settings = settings_inputs(services)
    with gr.Row():
        build = gr.Button("1 · Build IDK dataset")
        train = gr.Button("2 · Train adapter and compare", variant="primary")
        sweep = gr.Button("Alpha sweep")
        transfer = gr.Button("Transfer matrix")
        stop = gr.Button("Stop", variant="stop")
    status = gr.Markdown(NO_RESULTS)
    with gr.Row():
        figure = gr.Plot(experiment_plots.idk_ratio_figure([]), show_label=False)
        ratios = gr.Markdown()
    table = gr.Dataframe(
        {"headers": RESULT_HEADERS, "data": []}, label="Per modality and total: each adapter against the baseline", interactive=False, wrap=True
    )
    adapters = gr.Dataframe({"headers": ADAPTER_HEADERS, "data": []}, label="Saved adapters", interactive=False, wrap=True)
    methods = methods_box if methods_box is not None else gr.CheckboxGroup(visible=False)

    run = dict(concurrency_id="experiments", concurrency_limit=1, **PRIVATE)
    build.click(ui.build, settings, [status, figure, ratios], **run)
    train.click(ui.train, settings, [status, table, adapters, methods], **run)
    sweep.click(ui.sweep, settings, [status, figure, table, adapters, methods], **run)
    transfer.click(ui.transfer, settings, [status, figure, table, adapters, methods], **run)
    stop.click(ui.stop, None, status, **PRIVATE)
    tab.select(ui.datasets, settings[0], settings[0], **PRIVATE).then(ui.adapters_table, None, adapters, **PRIVATE)
    return ui


def _rows_table(result: experiments.ExperimentResult) -> dict[str, Any]:
    first = "trained on" if result.kind == "transfer" else "alpha"
    headers = [first, "adapter", "evaluated on", "n", "Acc %", "Rel %", "Rej %", "ΔCon %", "ΔHum %", "RGI"]
    data = []
    for r in result.rows:
        data.append([
            r["train"] if result.kind == "transfer" else f"{r['alpha']:g}", f"lora:{r['adapter']}", r.get("eval", r.get("group")), r["n"],
            *(_pct(r[c]) for c in ("acc", "rel", "rej", "delta_con", "delta_hum")), r["rgi_label"],
        ])
    return {"headers": headers, "data": data}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else (value if value is not None else "")
