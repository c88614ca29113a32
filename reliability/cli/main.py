"""The command line: python -m reliability import | evaluate | diagnose | rejudge | runs | metrics | agreement | export | serve,
plus the training commands of reliability/cli/training.py (idk-dataset, train-lora, adapters, experiment).

Every command works on one lab database (--db, by default in the user's data folder). Errors are
printed as one line starting with "error:" and exit with status 1 (2 for bad arguments, 130 after
Ctrl-C); an import refused for bad records lists them, one line each, before that line.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from reliability.cli.common import TqdmProgress, add_limit_arguments, backend_from_args, items_from_args, open_lab_db, positive
from reliability.errors import DatasetError, ReliabilityError, missing_package, skipped_line
from reliability.cli.training import add_lora_commands
from reliability.paths import default_db


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except DatasetError as exc:
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ReliabilityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: every finished batch is saved; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command (also used by the docs test)."""
    from reliability.backends import BACKENDS, DEFAULT_BACKEND
    from reliability.methods import LORA_PATTERN, method_names

    backend_help = f"backend name: {', '.join(BACKENDS)} (default: {DEFAULT_BACKEND})"
    parser = argparse.ArgumentParser(
        prog="reliability", description="Audio-LLM reliability lab: import, evaluate, score, export."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=None, help=f"the lab database file (default: {default_db()})")

    imports = commands.add_parser(
        "import", help="import a dataset or predictions made elsewhere", description="Import a dataset or predictions."
    ).add_subparsers(dest="kind", required=True, metavar="KIND")
    p = imports.add_parser(
        "dataset",
        parents=[common],
        help="import a benchmark file (MMAU JSON or the Hugging Face MMAU layout)",
        description="Validate every record, then import all of them or none. Items whose audio file is "
        "missing are listed and skipped (or kept without audio with --keep-missing-audio).",
    )
    p.add_argument("file", help="a JSON list or JSONL file, or a bundled dataset's name: mmau-test-mini, mmau-test-mini-2025-03")
    p.add_argument("--name", help="dataset name (default: the file name without extension)")
    p.add_argument("--format", default="auto", choices=["auto", "mmau", "mmau-hf"], help="file layout (default: auto)")
    p.add_argument("--audio-dir", help="folder the audio paths are resolved against; without it, items have no audio")
    p.add_argument(
        "--keep-missing-audio", action="store_true",
        help="with --audio-dir: keep items whose audio file is missing, without audio, for no-audio runs",
    )
    p.set_defaults(handler=_import_dataset)
    p = imports.add_parser(
        "predictions",
        parents=[common],
        help="import a model's replies made elsewhere as a run",
        description="Import a JSON list or JSONL of {id, model_output or model_prediction} records as a run of "
        "an imported dataset, judged here; all records or none. Where records carry their own question, choices or "
        "answer, they must be the dataset's: a file made on another revision of the questions (MMAU test-mini has "
        "two, both bundled: mmau-test-mini and mmau-test-mini-2025-03) is refused with the command that imports "
        "the revision it matches.",
    )
    p.add_argument("file", help="a JSON list or JSONL file")
    p.add_argument("--dataset", required=True, help="the imported dataset the ids belong to")
    p.add_argument("--model", required=True, help="the model's name, stored as the run's model id")
    p.add_argument("--method", default="baseline", help="the method it was asked with (default: baseline)")
    p.add_argument("--condition", default="full", help="full (with audio) or none (default: full)")
    p.add_argument(
        "--format", default="predictions", choices=["predictions", "lmms-eval"],
        help="predictions: {id, model_output} records (default); lmms-eval: the samples JSONL of an MMAU task's --log_samples",
    )
    p.add_argument("--field", help="the records' reply field (default: model_output, else model_prediction)")
    p.add_argument(
        "--lettered", action="store_true",
        help="the model saw the options with letters (A, B, ...); by default they were shown without, so a final "
        "letter that contradicts the option a reply names gives way to it (a record field \"lettered\": true says the same)",
    )
    p.set_defaults(handler=_import_predictions)

    p = commands.add_parser(
        "evaluate",
        parents=[common],
        help="run methods over a dataset on a backend (cached, resumable)",
        description="Answer every item with every method. Answers already stored are reused, so running the "
        "same command again after a crash or Ctrl-C finishes the work without asking anything twice.",
    )
    p.add_argument("--dataset", required=True, help="an imported dataset")
    p.add_argument("--methods", default="baseline", help=f"comma-separated: {','.join([*method_names(), LORA_PATTERN])}")
    p.add_argument("--backend", default=None, help=backend_help)
    p.add_argument(
        "--backend-arg", action="append", default=[], metavar="KEY=VALUE",
        help="constructor argument of the backend, repeatable (e.g. model_id=..., device=cpu)",
    )
    add_limit_arguments(p)
    p.add_argument("--modality", help="only items of this modality (sound, music, speech)")
    p.add_argument("--no-audio", action="store_true", help="ask without the audio (the same as --condition none)")
    p.add_argument("--condition", default="full", help="full, none, or one fragment n<N>_chunk<K> (default: full)")
    p.add_argument("--batch-size", type=positive, default=8, help="items per backend call (default: 8)")
    p.add_argument("--max-new-tokens", type=positive, default=64, help="answer length budget in tokens (default: 64)")
    p.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (with --do-sample)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (with --do-sample)")
    p.add_argument("--seed", type=int, help="seed for reproducible sampling")
    p.add_argument(
        "--adapters-dir",
        help="folder of your LoRA adapters for lora:<name> methods, searched before the ones shipped with the lab "
        "(default: adapters/ in the user's data folder, or $RELIABILITY_ADAPTERS)",
    )
    p.set_defaults(handler=_evaluate)

    p = commands.add_parser(
        "diagnose",
        parents=[common],
        help="text-prior diagnostics: full, no-audio and fragment runs (cached, resumable)",
        description="Ask every method under each condition (full, none, fragments n<N>_chunk<K>; each an ordinary "
        "cached run), then print R_TP = Acc_none / Acc_full, the per-item categories TS/FS/XS/AH/UN, retention "
        "per N and the abstention rate with and without audio. --stored reports stored runs without asking.",
    )
    p.add_argument("--dataset", required=True, help="an imported dataset")
    p.add_argument("--methods", default="baseline,idk", help="comma-separated, the first is the reference (default: baseline,idk)")
    p.add_argument(
        "--conditions", default="all",
        help="comma-separated: full, none, n<N>_chunk<K>; 'all' = full, none and the 14 fragments of N = 2..5 (default)",
    )
    p.add_argument("--backend", default=None, help=backend_help)
    p.add_argument("--backend-arg", action="append", default=[], metavar="KEY=VALUE", help="constructor argument of the backend, repeatable")
    add_limit_arguments(p)
    p.add_argument("--modality", help="only items of this modality (sound, music, speech)")
    p.add_argument("--batch-size", type=int, default=8, help="items per backend call (default: 8)")
    p.add_argument("--stored", action="store_true", help="report the runs already stored; ask no model")
    p.add_argument("--parser-only", action="store_true", help="ignore human verdicts; use the parser's outcomes")
    p.set_defaults(handler=_diagnose)

    p = commands.add_parser(
        "rejudge",
        parents=[common],
        help="re-judge stored answers with the current judge, without running any model",
        description="Re-judge every stored answer whose judge version is older than the current one.",
    )
    p.add_argument("--run", action="append", help="only this run (id or unique prefix), repeatable")
    p.set_defaults(handler=_rejudge)

    p = commands.add_parser("runs", parents=[common], help="list stored runs", description="List stored runs.")
    p.add_argument("--dataset", help="only runs of this dataset")
    p.set_defaults(handler=_runs)

    p = commands.add_parser(
        "metrics",
        parents=[common],
        help="print (or write) the metrics table",
        description="Acc, Tru, Rej, Rel per modality and total, and every method against the baseline "
        "(ΔCon, ΔHum, RGI), with paired bootstrap intervals. Human verdicts override the parser "
        "unless --parser-only; the source column says which each row used. MMAU Acc is MMAU's own "
        "string-match accuracy (its evaluation.py), to compare with the leaderboard; items without an "
        "answer key are left out and counted. Definitions: docs/METRICS.md.",
        epilog=_columns_help(),
    )
    _metrics_arguments(p)
    p.add_argument("--format", default="text", choices=["text", "json", "csv"], help="output format (default: text)")
    p.add_argument("--output", default="-", help="file to write (default: the screen)")
    p.set_defaults(handler=_metrics)

    p = commands.add_parser(
        "agreement",
        parents=[common],
        help="inter-annotator agreement and parser-vs-human agreement",
        description="Cohen's kappa per pair of annotators, Krippendorff's alpha (nominal) over all, and the "
        "share of human verdicts that agree with the parser.",
    )
    p.add_argument("--dataset", help="only labels of this dataset")
    p.set_defaults(handler=_agreement)

    exports = commands.add_parser(
        "export", help="export answers, labels, a submission file or the metrics table", description="Export data."
    ).add_subparsers(dest="kind", required=True, metavar="KIND")
    p = exports.add_parser("answers", parents=[common], help="answers of runs to CSV or JSONL", description="Export answers.")
    p.add_argument("--dataset", help="every run of this dataset (default: the only dataset with runs)")
    p.add_argument("--run", action="append", help="this run (id or unique prefix), repeatable")
    p.add_argument("--format", default="csv", choices=["csv", "jsonl"], help="default: csv")
    p.add_argument("--output", required=True, help="file to write")
    p.set_defaults(handler=_export_answers)
    p = exports.add_parser("labels", parents=[common], help="human labels to CSV or JSONL", description="Export labels.")
    p.add_argument("--dataset", help="labels of this dataset (default: the only dataset with runs)")
    p.add_argument("--format", default="csv", choices=["csv", "jsonl"], help="default: csv")
    p.add_argument("--output", required=True, help="file to write")
    p.set_defaults(handler=_export_labels)
    p = exports.add_parser(
        "submission",
        parents=[common],
        help="a run in MMAU's format (model_output key), for MMAU's own scorer",
        description="Write a run's replies in MMAU's format: each item's original record plus model_output and "
        "the run's condition. Name the run with --run, or by its dataset (--dataset; by default the only dataset "
        "with runs) and, when that has several runs, --method and --condition.",
    )
    p.add_argument("--run", help="run id or unique prefix")
    p.add_argument("--dataset", help="the dataset whose run to write (default: the only dataset with runs)")
    p.add_argument("--method", help="with --dataset: the run of this method")
    p.add_argument("--condition", help="with --dataset: the run of this condition (full, none, n<N>_chunk<K>)")
    p.add_argument("--output", required=True, help="JSON file to write")
    p.set_defaults(handler=_export_submission)
    p = exports.add_parser("metrics", parents=[common], help="the metrics table to JSON or CSV", description="Export the metrics table.")
    _metrics_arguments(p)
    p.add_argument("--format", default="json", choices=["json", "csv"], help="default: json")
    p.add_argument("--output", required=True, help="file to write")
    p.set_defaults(handler=_metrics)

    p = commands.add_parser(
        "serve",
        parents=[common],  # serve stores nothing; it takes --db like every command, so a script can pass it to all
        help="serve a backend over an OpenAI-compatible API (/v1/chat/completions, /v1/models)",
        description="Serve a lab backend (the cascade by default) to any OpenAI client, lmms-eval or the openai "
        "backend of another lab, batching concurrent requests into the backend's batched generate.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=positive, default=8000, help="default: 8000")
    p.add_argument("--api-key", help="require this key as 'Authorization: Bearer KEY' (default: none; or $RELIABILITY_SERVE_KEY)")
    p.add_argument("--backend", default=None, help=backend_help)
    p.add_argument("--backend-arg", action="append", default=[], metavar="KEY=VALUE", help="constructor argument of the backend, repeatable")
    p.add_argument("--model-name", default="", help="the model name clients ask for (default: the backend's model id)")
    p.add_argument("--max-batch", type=positive, default=16, help="most requests per backend call (default: 16)")
    p.add_argument("--batch-wait-ms", type=float, default=20.0, help="how long a lone request waits for others (default: 20)")
    p.add_argument("--max-n", type=positive, default=32, help="most samples (n) one request may ask for (default: 32)")
    p.add_argument("--max-tokens", type=positive, default=2048, help="most max_tokens one request may ask for (default: 2048)")
    p.add_argument("--max-body-mb", type=float, default=32.0, help="largest request body in MiB; larger is refused with 413 (default: 32)")
    p.add_argument("--max-audio-seconds", type=float, default=600.0, help="longest clip, read from its header (default: 600)")
    p.add_argument("--limit-concurrency", type=positive, default=256, help="most connections at once; more get 503 (default: 256)")
    p.set_defaults(handler=_serve)

    add_lora_commands(commands, common)
    return parser


def _columns_help() -> str:
    """The table's columns in one paragraph, from their one declaration."""
    from reliability.report import COLUMNS, NONE

    return "Columns: " + "; ".join(f"{c.label}: {c.help}" + ("" if c.better == NONE else f" ({c.better} is better)") for c in COLUMNS) + "."


def _metrics_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", help="an imported dataset (default: the only dataset with runs)")
    p.add_argument("--condition", help="only runs of this condition (default: every condition, each on its own)")
    p.add_argument("--baseline", default="baseline", help="the method others are compared with (default: baseline)")
    p.add_argument("--parser-only", action="store_true", help="ignore human verdicts; use the parser's outcomes")
    p.add_argument("--normalize", default="total", choices=["total", "group"], help="ΔCon/ΔHum denominator (default: total)")
    p.add_argument("--n-boot", type=positive, default=1000, help="bootstrap resamples (default: 1000)")
    p.add_argument("--level", type=float, default=0.95, help="interval level (default: 0.95)")


def _import_dataset(args) -> None:
    from reliability.datasets import import_dataset, missing_audio_line

    if args.keep_missing_audio and not args.audio_dir:
        print("note: --keep-missing-audio only matters with --audio-dir; without it every item is imported without audio", file=sys.stderr)
    report = import_dataset(open_lab_db(args), args.file, args.name, args.format, args.audio_dir, args.keep_missing_audio)
    for problems, what in ((report.skipped, "skipped"), (report.without_audio, "kept without audio")):
        if problems:
            print(f"warning: {missing_audio_line(problems, what)}", file=sys.stderr)
    for problem in report.warnings:
        print(f"warning: {problem}", file=sys.stderr)
    print(report.summary())


def _import_predictions(args) -> None:
    from reliability.datasets import VersionMismatchError, import_predictions
    from reliability.lmms_eval import import_lmms_eval

    db = open_lab_db(args)
    if args.format == "lmms-eval":
        if args.field:
            raise ReliabilityError("--field names a field of predictions records; lmms-eval logs keep the reply in filtered_resps")
        report = import_lmms_eval(db, args.file, args.dataset, args.model, args.method, args.condition)  # its MMAU tasks letter the options
    else:
        try:
            report = import_predictions(
                db, args.file, args.dataset, args.model, args.method, args.condition, field=args.field, lettered=args.lettered
            )
        except VersionMismatchError as exc:
            if exc.bundled is None:
                raise
            raise ReliabilityError(f"{exc}; import that revision: {_matching_version_command(db, args, exc)}") from None
    print(report.summary())


def _matching_version_command(db, args, exc) -> str:
    """The exact commands that import the predictions into the bundled revision they match (first the revision, if new)."""
    import shlex

    def command(*words: str | None) -> str:
        return " ".join(shlex.quote(w) for w in ("reliability", *(w for w in words if w is not None)))

    db_flag = ("--db", args.db) if args.db else (None, None)
    options = [
        *(("--method", args.method) if args.method != "baseline" else ()),
        *(("--condition", args.condition) if args.condition != "full" else ()),
        *(("--field", args.field) if args.field else ()),
        *(("--lettered",) if args.lettered else ()),
    ]
    predictions = command("import", "predictions", args.file, *db_flag, "--dataset", exc.bundled, "--model", args.model, *options)
    if exc.bundled in {d["name"] for d in db["datasets"].rows}:
        return predictions
    return command("import", "dataset", exc.bundled, *db_flag) + " && " + predictions  # a bundled file imports by its name


def _serve(args) -> None:
    try:
        from reliability.serve import ServeConfig, serve
    except ModuleNotFoundError as exc:
        raise missing_package(exc, "serve", "serve") from exc

    key = args.api_key or os.environ.get("RELIABILITY_SERVE_KEY")
    config = ServeConfig(
        args.host, args.port, key, args.model_name, args.max_batch, args.batch_wait_ms, args.max_n, args.max_tokens,
        int(args.max_body_mb * 2**20), args.max_audio_seconds, args.limit_concurrency,
    )
    serve(backend_from_args(args), config)


def _evaluate(args) -> None:
    from reliability.evaluate import NONE, evaluate
    from reliability.training.adapters import ensure_loaded, lora_names
    from reliability.types import Decoding

    db = open_lab_db(args)
    items = items_from_args(db, args)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    backend = backend_from_args(args)
    # lora:<name> finds its adapter in the user's folder or among the shipped ones, and refuses a mismatched one
    ensure_loaded(backend, lora_names(methods), args.adapters_dir)
    decoding = Decoding(
        do_sample=args.do_sample, temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens, seed=args.seed
    )
    progress = TqdmProgress()
    try:
        result = evaluate(db, backend, items, methods, decoding, args.batch_size, NONE if args.no_audio else args.condition, progress)
    finally:
        progress.close()
    if result.skipped:
        print(f"warning: {skipped_line(result.skipped)}", file=sys.stderr)
    runs = ", ".join(f"{rid} ({m})" for rid, m in zip(result.run_ids, methods))
    print(f"answered {result.answered} new, {result.cached} cached, {len(result.skipped)} skipped; runs: {runs}")


def _diagnose(args) -> None:
    from reliability.conditions import all_conditions
    from reliability.diagnostics.runs import load_report, run_diagnostics
    from reliability.diagnostics.measures import format_report

    db = open_lab_db(args)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.stored:
        print(format_report(load_report(db, args.dataset, args.backend, methods=methods, human=not args.parser_only)))
        return
    conditions = all_conditions() if args.conditions == "all" else [c.strip() for c in args.conditions.split(",") if c.strip()]
    items = items_from_args(db, args)
    progress = TqdmProgress()
    try:
        diagnosis = run_diagnostics(
            db, backend_from_args(args), items, methods, conditions, batch_size=args.batch_size, progress=progress, human=not args.parser_only
        )
    finally:
        progress.close()
    by_line: dict[str, list[str]] = {}  # the same items skipped for the same reasons under many conditions: one line
    for condition, skipped in diagnosis.skipped.items():
        if skipped:
            by_line.setdefault(skipped_line(skipped), []).append(condition)
    for line, conditions in by_line.items():
        print(f"warning: under {len(conditions)} condition(s) ({', '.join(conditions)}): {line}", file=sys.stderr)
    print(f"answered {diagnosis.answered} new, {diagnosis.cached} cached")
    print(format_report(diagnosis.report))


def _rejudge(args) -> None:
    from annotations import store
    from reliability.evaluate import rejudge
    from reliability.judge import JUDGE_VERSION

    db = open_lab_db(args)
    run_ids = [store.get_run(db, r).id for r in args.run] if args.run else None
    print(f"re-judged {rejudge(db, run_ids)} answers with {JUDGE_VERSION}")


def _runs(args) -> None:
    from annotations import store

    for r in store.list_runs(open_lab_db(args), args.dataset):
        print(
            f"{r.id}  {r.dataset}  {r.backend}/{r.model_id}  {r.method}  {r.condition}  "
            f"{r.n_answers} answers  {r.judge_version}  {r.created_at[:19]}"
        )


def _metrics(args) -> None:
    from reliability.exports import export_table, write_text
    from reliability.report import metrics_report
    from reliability.tables import format_table

    db = open_lab_db(args)
    report = metrics_report(
        db, _dataset_with_runs(db, args.dataset), args.condition, args.baseline, not args.parser_only, args.n_boot, args.level, args.normalize
    )
    rows = report.rows
    # a run that answered fewer items than its dataset has says so (n of N): its figures are over those items only
    partial = [f"note: {c}" for c in report.partial]
    if args.format == "text":
        write_text(args.output, "\n".join([format_table(rows, setup=("model", "condition")), *partial]))
    else:
        export_table(rows, args.output, args.format)
        for line in partial:
            print(line, file=sys.stderr)
    if args.output != "-":
        print(f"wrote {len(rows)} rows to {os.path.abspath(args.output)}")


def _agreement(args) -> None:
    from annotations import store
    from annotations.agreement import summarize

    db = open_lab_db(args)
    s = summarize(store.verdicts_by_answer(db, args.dataset), store.parser_vs_human(db, args.dataset))
    print(f"answers labelled: {s.n_answers}; annotators: {', '.join(s.annotators) or 'none'}")
    print(f"Krippendorff's alpha (nominal): {_number(s.alpha)}")
    for (a, b), (kappa, n) in s.kappas.items():
        print(f"Cohen's kappa {a} / {b}: {_number(kappa)} over {n} answers")
    print(f"parser agrees with humans: {_number(s.parser_rate)} of {s.parser_n} verdicts")


def _export_answers(args) -> None:
    from annotations import store
    from reliability.exports import export_answers

    db = open_lab_db(args)
    if args.run:
        run_ids = [store.get_run(db, r).id for r in args.run]
    else:
        run_ids = [r.id for r in store.list_runs(db, _dataset_with_runs(db, args.dataset))]
    print(f"wrote {export_answers(db, args.output, run_ids, args.format)} answers to {os.path.abspath(args.output)}")


def _export_labels(args) -> None:
    from reliability.exports import export_labels

    db = open_lab_db(args)
    print(f"wrote {export_labels(db, args.output, _dataset_with_runs(db, args.dataset), args.format)} labels to {os.path.abspath(args.output)}")


def _export_submission(args) -> None:
    from reliability.exports import export_submission

    db = open_lab_db(args)
    run_id = args.run or _only_run(db, _dataset_with_runs(db, args.dataset), args.method, args.condition)
    print(f"wrote {export_submission(db, args.output, run_id)} records to {os.path.abspath(args.output)}")


def _dataset_with_runs(db, dataset: str | None) -> str:
    """The dataset asked for, or else the only one with runs; otherwise an error naming what to add."""
    from annotations import store

    if dataset:
        return dataset
    names = sorted({r.dataset for r in store.list_runs(db)})
    if len(names) == 1:
        return names[0]
    if not names:
        raise ReliabilityError("no runs yet: run `evaluate --dataset NAME` first")
    raise ReliabilityError(f"several datasets have runs; add --dataset with one of: {', '.join(names)}")


def _only_run(db, dataset: str, method: str | None, condition: str | None) -> str:
    """The one run of a dataset left by the method and condition filters; otherwise an error naming what to add."""
    from annotations import store

    runs = [r for r in store.list_runs(db, dataset, condition) if method in (None, r.method)]
    if len(runs) == 1:
        return runs[0].id
    if not runs:
        wanted = " and ".join(f"{k} {v!r}" for k, v in (("method", method), ("condition", condition)) if v)
        raise ReliabilityError(f"no run of dataset {dataset!r}" + (f" with {wanted}" if wanted else "") + "; see `runs`")
    # ask only for the flags not given, and only those that tell these runs apart
    apart = [flag for flag, given, values in (("--method", method, {r.method for r in runs}), ("--condition", condition, {r.condition for r in runs}))
             if given is None and len(values) > 1]
    choices = ", ".join(f"{r.id[:8]} ({r.method}, {r.condition})" for r in runs[:6]) + (", ..." if len(runs) > 6 else "")
    given = " and ".join(f"{k} {v!r}" for k, v in (("method", method), ("condition", condition)) if v)
    raise ReliabilityError(
        f"dataset {dataset!r} has {len(runs)} runs" + (f" with {given}" if given else "") + f"; add {' or '.join([*apart, '--run'])}: {choices}"
    )


def _number(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"
