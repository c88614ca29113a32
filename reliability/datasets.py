"""Importers: MMAU JSON, the Hugging Face MMAU layout, and predictions made elsewhere, each validated in full first.

An importer reads every record and checks it before it writes anything: a file with one bad record
is reported record by record and nothing of it is imported. Missing audio is not an error: such items
are skipped and listed, or kept without audio for no-audio runs when asked.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from annotations import store
from reliability.conditions import parse_condition
from reliability.errors import DatasetError, ItemError
from reliability.judge import JUDGE_VERSION, judge
from reliability.methods import validate_item
from reliability.paths import package_file
from reliability.types import MODALITIES, Answer, Decoding, Item, Judgement

FORMATS = ("auto", "mmau", "mmau-hf")
EXTERNAL = "external"  # backend name and prompt version of runs imported from predictions files
EXTERNAL_LETTERED = "external-lettered"  # the prompt version of those whose model saw the options with letters
PREDICTION_KEYS = ("model_output", "model_prediction")  # MMAU's script reads the first, its README names the second
T = TypeVar("T")
# Each import format's fields as a refused file's error states them, and as README.md lists them (tests/test_readme.py)
SCHEMAS = {
    "mmau": "id, question, choices (a list of texts), task or modality (sound, music or speech); optional: answer "
    "(one of the choices; without it the item has no key), audio_id or audio (the clip's path under --audio-dir)",
    "mmau-hf": "instruction, choices ('(A) ...' texts), other_attributes with id and task (or id and task at the top); "
    "optional: answer ('(A) ...' or a letter); the clip is <id>.wav or context.path under --audio-dir",
    "predictions": "id, model_output or model_prediction (or the field --field names); optional: question, choices, "
    "answer (checked against the item's), lettered (true: the model saw the options with letters)",
}
# MMAU test-mini's question files (Apache-2.0; licence, source commits and dates beside them in data/PROVENANCE.md),
# shipped so imports and no-audio runs work offline: the revision v05.15.25 (August 2025) and the March 2025
# original, on which most published predictions were made. The file's stem is the dataset's name.
_DATA = package_file("data")
MMAU_TEST_MINI = _DATA / "mmau-test-mini.json"
MMAU_TEST_MINI_2025_03 = _DATA / "mmau-test-mini-2025-03.json"
BUNDLED = {path.stem: path for path in (MMAU_TEST_MINI, MMAU_TEST_MINI_2025_03)}
_CONTENT = ("question", "choices", "answer")  # what a predictions record may carry of its question
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_LETTER_PREFIX = re.compile(r"^\(([A-Z])\)\s*(?=\S)")  # "(A) Man" in the Hugging Face layout; "(A)" alone is a letter
_BARE_LETTER = re.compile(r"\(?([A-Z])\)?")


@dataclass(frozen=True)
class Problem:
    """One record that was refused, skipped or changed, with why."""

    record: int  # 1-based position in the file
    item_id: str | None
    reason: str

    def __str__(self) -> str:
        where = f"record {self.record}" + (f" (id {self.item_id})" if self.item_id is not None else "")
        return f"{where}: {self.reason}"


@dataclass
class ImportReport:
    """What an import did, record by record."""

    source: str
    dataset: str
    format: str
    records: int = 0  # records read from the file
    imported: int = 0  # items (or answers) written
    modalities: dict[str, int] = field(default_factory=dict)  # imported items per modality
    run_id: str | None = None  # the run a predictions import filled
    errors: list[Problem] = field(default_factory=list)  # any error: nothing was imported
    skipped: list[Problem] = field(default_factory=list)  # left out on purpose (their audio is missing)
    without_audio: list[Problem] = field(default_factory=list)  # audio missing, kept for no-audio runs (keep_missing_audio)
    warnings: list[Problem] = field(default_factory=list)  # imported with a note (duplicate choices merged, no key)

    def summary(self) -> str:
        """One line for the CLI and the app."""
        what = "answers" if self.run_id else "items"
        text = f"imported {self.imported} {what} into {self.dataset!r} from {os.path.basename(self.source)}"
        if self.modalities:
            text += " (" + ", ".join(f"{n} {m}" for m, n in self.modalities.items()) + ")"
        if self.run_id:
            text += f" as run {self.run_id}"
        if self.without_audio:
            text += f", {len(self.without_audio)} without audio"
        return text + f"; {len(self.skipped)} skipped, {len(self.warnings)} warnings"


def missing_audio_line(problems: list[Problem], what: str, shown: int = 3) -> str:
    """One line for many items whose audio file is missing: the count and the first few paths."""
    paths = [p.reason.split(": ", 1)[-1].split(" (", 1)[0] for p in problems[:shown]]
    more = ", ..." if len(problems) > shown else ""
    return f"{len(problems)} items {what}: audio file not found, e.g. {', '.join(paths)}{more}"


class VersionMismatchError(DatasetError):
    """Predictions made for another revision of a dataset's questions; `bundled` names the bundled revision that
    matches them (`bundled_path` its file), or is None."""

    def __init__(self, message: str, bundled: str | None = None, bundled_path: Path | None = None):
        super().__init__(message)
        self.bundled, self.bundled_path = bundled, bundled_path


class _Bad(Exception):
    """A record that cannot be read; the message is the reason."""


@dataclass
class _Fields:
    """A record's content, whatever the source layout."""

    id: str
    question: str
    choices: list[str]
    answer: str | None
    modality: str
    audio_names: list[str]  # relative paths to try under the audio folder, best first
    meta: dict[str, Any]


def import_dataset(
    db: sqlite_utils.Database,
    path: str | os.PathLike,
    name: str | None = None,
    format: str = "auto",
    audio_dir: str | os.PathLike | None = None,
    keep_missing_audio: bool = False,
) -> ImportReport:
    """Validate and import a dataset file (JSON list or JSONL) into the store, all or nothing.

    `path` may also be a bundled dataset's name (BUNDLED: mmau-test-mini, mmau-test-mini-2025-03), which
    stands for its file where no such file exists.

    :param name: the dataset's name; the file's stem by default
    :param format: "mmau" (MMAU's own JSON), "mmau-hf" (the Hugging Face layout: `instruction`,
      letter-prefixed `choices`, `other_attributes`), or "auto" to tell them apart by their fields
    :param audio_dir: the folder the audio paths are resolved against; without it items are imported
      without audio (for no-audio runs)
    :param keep_missing_audio: keep items whose audio file is missing, without audio, instead of skipping them
    Raises DatasetError listing every bad record (missing fields, answer not among the choices,
    duplicate ids, unknown modality); nothing is written then.
    """
    path = os.fspath(path)
    if path in BUNDLED and not os.path.exists(path):
        path = os.fspath(BUNDLED[path])
    name = name or Path(path).stem
    if not _NAME.fullmatch(name):
        raise DatasetError(f"dataset name {name!r}: use letters, digits, '.', '_' or '-' (at most 100)")
    if audio_dir is not None and not os.path.isdir(audio_dir):
        raise DatasetError(f"audio folder not found: {os.fspath(audio_dir)} (without an audio folder the items are imported without audio)")
    records = read_records(path)
    if format == "auto":
        format = _detect(records, path)
    if format not in FORMATS[1:]:
        raise DatasetError(f"unknown dataset format {format!r}; known: {', '.join(FORMATS)}")
    report = ImportReport(source=path, dataset=name, format=format, records=len(records))
    reader = _mmau_fields if format == "mmau" else _hf_fields

    def read(number: int, record: Any) -> tuple[str, store.StoredItem | None]:
        fields = reader(record)
        return fields.id, _item(fields, name, record, audio_dir, keep_missing_audio, report, number)

    items = [stored for stored in _read_all(path, records, read, report, format) if stored is not None]
    if not items:
        raise DatasetError(f"{path}: no item left to import; {missing_audio_line(report.skipped, 'skipped')}")
    report.imported = len(items)
    counts = Counter(s.item.modality for s in items)
    report.modalities = {m: counts[m] for m in MODALITIES if counts[m]}
    store.upsert_dataset(db, name, items, source=path, format=format)
    return report


def import_predictions(
    db: sqlite_utils.Database,
    path: str | os.PathLike,
    dataset: str,
    model: str,
    method: str = "baseline",
    condition: str = "full",
    records: list[Any] | None = None,
    field: str | None = None,
    lettered: bool = False,
) -> ImportReport:
    """Import replies a model gave elsewhere (e.g. a real LALM on a GPU cluster) as a run, judged here.

    The file is a JSON list or JSONL of records with `id` and `model_output` (or `model_prediction`, or
    the `field` named), such as MMAU's own prediction files. Every id must be an item of `dataset`, and
    where a record carries its own question, choices or answer they must be the item's: a file made
    on another revision of the questions raises VersionMismatchError (naming the bundled revision that
    matches it), so that no reply is scored against another key. Importing the same model's predictions
    again updates that run's answers. All or nothing, like import_dataset.
    `records`: such records already read from `path` by another reader (reliability.lmms_eval).
    `lettered`: the model saw the options with letters (also said by a `"lettered": true` field in every
    record); by default they were shown without, so a letter that contradicts the option a reply names gives way.
    """
    path = os.fspath(path)
    condition = parse_condition(condition).name
    records = read_records(path) if records is None else records
    items = {stored.item.id: stored for stored in store.stored_items(db, dataset)}
    report = ImportReport(source=path, dataset=dataset, format="predictions", records=len(records))
    lettered = _lettered(path, records, lettered)
    check_version(path, records, items, dataset)

    def read(number: int, record: Any) -> tuple[str, tuple[store.StoredItem, str]]:
        item_id, text = _prediction(record, field)
        if item_id not in items:
            raise _Bad(f"no such item in dataset {dataset!r}")
        return item_id, (items[item_id], text)

    replies = _read_all(path, records, read, report, "predictions")
    if not replies:
        raise DatasetError(f"{path}: no predictions in the file")
    decoding = Decoding()  # unknown: the run's identity records the defaults
    run = store.get_or_create_run(
        db,
        dataset,
        {"backend": EXTERNAL, "model_id": model, "adapter": None},
        {"method": method, "prompt_version": EXTERNAL_LETTERED if lettered else EXTERNAL},
        decoding,
        condition,
        JUDGE_VERSION,
        source=path,
    )
    answers = [Answer(stored.item.id, method, text, judge_as_shown(text, Shown(stored, lettered)), [], decoding) for stored, text in replies]
    store.save_answers(db, run.id, answers, [None] * len(answers), JUDGE_VERSION)
    report.run_id, report.imported = run.id, len(answers)
    return report


@dataclass(frozen=True)
class Shown:
    """An item as a model elsewhere was shown it: the stored item, and whether its options had letters."""

    stored: store.StoredItem
    lettered: bool = False


def imported_items(db: sqlite_utils.Database, run_ids: Iterable[str]) -> dict[str, Shown]:
    """Answer id -> its item as shown, for the answers of runs imported from predictions files, whose replies
    are judged against the source record's options (judge_as_shown), also when re-judged."""
    found = {}
    for run_id in set(run_ids):
        run = store.get_run(db, run_id)
        if run.backend == EXTERNAL:
            lettered = run.prompt_version == EXTERNAL_LETTERED
            found.update((store.content_id(run.id, s.item.id), Shown(s, lettered)) for s in store.stored_items(db, run.dataset))
    return found


def judge_as_shown(text: str, shown: Shown) -> Judgement:
    """Judge a reply made elsewhere against the options as that model saw them: the source record's list,
    repeats included, so that "(C)" names the third option there, with or without letters; the choice is
    then the merged option."""
    stored = shown.stored
    item = stored.item
    verdict = judge(text, _shown_choices(stored), item.answer, lettered=shown.lettered)
    if verdict.choice is None:
        return verdict
    merged = next((c for c in item.choices if c.strip().lower() == verdict.choice.strip().lower()), verdict.choice)
    return dataclasses.replace(verdict, choice=merged)


def _shown_choices(stored: store.StoredItem) -> list[str]:
    """The options in the source record's order before duplicates were merged (the item's own without a record)."""
    raw = stored.raw if isinstance(stored.raw, dict) else {}
    choices = raw.get("choices")
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        return list(stored.item.choices)
    if "instruction" in raw or "other_attributes" in raw:  # the Hugging Face layout prefixes "(A) "
        return [_LETTER_PREFIX.sub("", c).strip() for c in choices]
    return choices


def check_version(path: str, records: list[Any], items: dict[str, store.StoredItem], dataset: str) -> None:
    """Refuse predictions made for other questions than the dataset's, in one line: how many records, one example,
    and the bundled question file they match, if any. A record is compared on what it carries of its own question
    (question, choices, answer; spacing aside); one whose id the dataset lacks counts too where the file carries
    questions or a bundled file matches it. Records that are not objects are left to the per-record check."""
    shown = {item_id: _content(stored) for item_id, stored in items.items()}
    differ = [(r, why) for r in _objects(records) if (why := _difference(r, shown)) is not None]
    if not differ:
        return
    carries = any(k in r for r in _objects(records) for k in _CONTENT)
    changed = [d for d in differ if d[1] != "not in the dataset"]
    bundled = next((name for name, file in BUNDLED.items() if name != dataset and _matches(records, file)), None)
    if not changed and not carries and bundled is None:
        return  # ids alone, unknown anywhere: listed record by record as no such item
    record, why = (changed or differ)[0]
    message = (
        f"{path}: {len(differ)} of {len(records)} record(s) were made for other questions than dataset {dataset!r} holds "
        f"(e.g. id {record['id']}: {why}); nothing imported, so that no reply is scored against another key"
    )
    if bundled:
        message += f"; the file matches the bundled question file {bundled!r}"
    raise VersionMismatchError(message, bundled, BUNDLED.get(bundled))


def _objects(records: list[Any]) -> list[dict[str, Any]]:
    return [r for r in records if isinstance(r, dict) and isinstance(r.get("id"), (str, int)) and not isinstance(r.get("id"), bool)]


def _content(stored: store.StoredItem) -> dict[str, Any]:
    item = stored.item
    return {"question": _spaced(item.question), "choices": [_spaced(c) for c in _shown_choices(stored)], "answer": _spaced(item.answer)}


def _difference(record: dict[str, Any], shown: dict[str, dict[str, Any]]) -> str | None:
    """Why a predictions record was made for another question than the stored one, or None."""
    item = shown.get(str(record["id"]))
    if item is None:
        return "not in the dataset"
    for key in _CONTENT:
        if key not in record:
            continue
        value = record[key]
        if key == "choices":
            value = [_spaced(_LETTER_PREFIX.sub("", c)) for c in value] if isinstance(value, list) and all(isinstance(c, str) for c in value) else value
        elif isinstance(value, str):
            value = _spaced(_LETTER_PREFIX.sub("", value))
        if value != item[key]:
            return f"its {'choices differ' if key == 'choices' else key + ' differs'}"
    return None


def _matches(records: list[Any], file: Path) -> bool:
    """Whether every record is an item of this bundled question file, with the same content where it carries any."""
    shown = {
        str(r["id"]): {"question": _spaced(r["question"]), "choices": [_spaced(c) for c in r["choices"]], "answer": _spaced(r["answer"])}
        for r in json.loads(file.read_text(encoding="utf-8"))
    }
    objects = _objects(records)
    return bool(objects) and all(_difference(r, shown) is None for r in objects)


def _spaced(text: str | None) -> str | None:
    return None if text is None else " ".join(text.split())


def _lettered(path: str, records: list[Any], lettered: bool) -> bool:
    """Whether the options were shown with letters: the flag, or a `lettered` field all records agree on."""
    said = {r["lettered"] for r in records if isinstance(r, dict) and "lettered" in r}
    if not said <= {True, False}:
        raise DatasetError(f"{path}: 'lettered' should be true or false, got {sorted(map(repr, said))}")
    if len(said) > 1:
        raise DatasetError(f"{path}: records disagree on 'lettered'; a file is one run, shown its options one way")
    return lettered or said == {True}


def _read_all(path: str, records: list[Any], read: Callable[[int, Any], tuple[str, T]], report: ImportReport, format: str) -> list[T]:
    """`read(number, record)` -> (id, value) for every record; every failure and repeated id goes to
    report.errors, and any error raises DatasetError listing them all (with the format's fields when one is missing)."""
    seen: dict[str, int] = {}
    values = []
    for number, record in enumerate(records, start=1):
        item_id = record.get("id") if isinstance(record, dict) else None
        try:
            item_id, value = read(number, record)
            if item_id in seen:
                raise _Bad(f"duplicate id (first at record {seen[item_id]})")
            seen[item_id] = number
        except _Bad as exc:
            report.errors.append(Problem(number, None if item_id is None else str(item_id), str(exc)))
            continue
        values.append(value)
    if report.errors:
        fields = f"; each record has {SCHEMAS[format]}" if any(e.reason.startswith("missing field") for e in report.errors) else ""
        raise DatasetError(f"{path}: {len(report.errors)} bad record(s) of {len(records)}; nothing imported{fields}", report.errors)
    return values


def read_records(path: str) -> list[Any]:
    """The records of a JSON list or a JSONL file. Raises DatasetError for an unreadable file."""
    if not os.path.isfile(path):
        raise DatasetError(f"no such file: {path}")
    if path.endswith(".parquet"):
        raise DatasetError(f"{path}: parquet is not read here; save it as JSON lines first (datasets: .to_json(path))")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read the file ({exc})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = _json_lines(path, text)
    if isinstance(data, dict):
        data = [data]  # a one-line JSONL file
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a JSON list of records or JSON lines, got {type(data).__name__}")
    return data


def _json_lines(path: str, text: str) -> list[Any]:
    records, problems = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            problems.append(Problem(number, None, f"not valid JSON ({exc.msg})"))
    if problems:
        raise DatasetError(f"{path}: neither a JSON document nor JSON lines ({len(problems)} bad lines)", problems)
    return records


def _detect(records: list[Any], path: str) -> str:
    first = next((r for r in records if isinstance(r, dict)), {})
    if "instruction" in first or "other_attributes" in first:
        return "mmau-hf"
    if "question" in first:
        return "mmau"
    raise DatasetError(f"{path}: cannot tell the format from fields {sorted(first)[:10]}; pass --format")


def _mmau_fields(record: Any) -> _Fields:
    """MMAU's JSON: id, audio_id, question, choices, answer, task (= modality), plus metadata. The lab's own item
    files (reliability/demo/items.json) name the last two `audio` and `modality`."""
    r = _object(record)
    _require(r, ("id",), ("question",), ("choices",), ("task", "modality"))
    audio_id = _either(r, "audio_id", "audio")
    return _Fields(
        id=_text(r, "id"),
        question=_text(r, "question"),
        choices=_choices(r.get("choices")),
        answer=_key(r),
        modality=_text(r, "task" if r.get("task") is not None else "modality"),
        audio_names=[audio_id, os.path.basename(audio_id)] if isinstance(audio_id, str) and audio_id else [],
        meta={k: v for k, v in r.items() if k not in ("id", "audio_id", "audio", "question", "choices", "answer", "task", "modality")},
    )


def _either(record: dict[str, Any], *keys: str) -> Any:
    """The value of the first of `keys` the record has (not null), else None."""
    return next((record[k] for k in keys if record.get(k) is not None), None)


def _require(record: dict[str, Any], *groups: tuple[str, ...]) -> None:
    """Every group has one of its fields, or one _Bad naming every missing group at once."""
    missing = [" or ".join(repr(k) for k in group) for group in groups if _either(record, *group) is None]
    if missing:
        raise _Bad(f"missing field{'s' if len(missing) > 1 else ''} {', '.join(missing)}")


def _hf_fields(record: Any) -> _Fields:
    """The Hugging Face layout: `instruction`, choices "(A) ...", answer "(A) ..." or "A", ids in `other_attributes`."""
    r = _object(record)
    attrs = r.get("other_attributes") or {}
    if isinstance(attrs, str):
        try:
            attrs = json.loads(attrs)
        except json.JSONDecodeError:
            raise _Bad("other_attributes is not valid JSON") from None
    if not isinstance(attrs, dict):
        raise _Bad(f"other_attributes should be an object, got {type(attrs).__name__}")
    merged = {**r, **attrs}  # id and task live in other_attributes; a top-level id also works
    _require(merged, ("id",), ("instruction",), ("choices",), ("task",))
    choices = [_LETTER_PREFIX.sub("", c).strip() for c in _choices(r.get("choices"))]
    answer = _key(r)
    if answer is not None:
        answer = _LETTER_PREFIX.sub("", answer).strip()  # "(A) Man" -> "Man"
        letter = _BARE_LETTER.fullmatch(answer)
        if answer not in choices and letter and ord(letter[1]) - ord("A") < len(choices):
            answer = choices[ord(letter[1]) - ord("A")]  # a bare "A" names the first choice
    item_id = _text(merged, "id")
    context = r.get("context")
    context_path = context.get("path") if isinstance(context, dict) else context
    names = [f"{item_id}.wav"] + ([os.path.basename(context_path)] if isinstance(context_path, str) and context_path else [])
    return _Fields(
        id=item_id,
        question=_text(r, "instruction"),
        choices=choices,
        answer=answer,
        modality=_text(merged, "task"),
        audio_names=names,
        meta={k: v for k, v in attrs.items() if k not in ("id", "task")},
    )


def _item(
    fields: _Fields,
    dataset: str,
    record: dict[str, Any],
    audio_dir: str | os.PathLike | None,
    keep_missing_audio: bool,
    report: ImportReport,
    number: int,
) -> store.StoredItem | None:
    """Check a record's content and resolve its audio; None when it is skipped for missing audio."""
    if fields.modality not in MODALITIES:
        raise _Bad(f"task/modality {fields.modality!r} is not one of {', '.join(MODALITIES)}")
    choices, merged = _merge_duplicates(fields.choices, fields.answer)
    if merged:
        report.warnings.append(Problem(number, fields.id, f"duplicate choices merged: {merged}"))
    if fields.answer is None:
        report.warnings.append(Problem(number, fields.id, "no answer key: only abstentions can be scored"))
    audio_path = None
    if audio_dir is not None:
        if not fields.audio_names:
            raise _Bad("missing field 'audio_id' or 'audio'")
        audio_path = _find_audio(audio_dir, fields.audio_names)
        if audio_path is None:
            missing = os.path.join(os.fspath(audio_dir), fields.audio_names[0])
            if not keep_missing_audio:
                report.skipped.append(Problem(number, fields.id, f"audio file not found: {missing}"))
                return None
            report.without_audio.append(Problem(number, fields.id, f"audio file not found: {missing}"))
    item = Item(fields.id, fields.question, tuple(choices), fields.answer, fields.modality, audio_path, dataset)
    try:
        validate_item(item)
    except ItemError as exc:
        raise _Bad(str(exc).removeprefix(f"item {fields.id!r}: ")) from None
    return store.StoredItem(item, fields.meta, record)


def _merge_duplicates(choices: list[str], answer: str | None) -> tuple[list[str], list[str]]:
    """Choices with repeats (same text up to case and spaces) removed, keeping the answer key's spelling.

    MMAU test-mini has 27 items with a repeated option; a prompt cannot offer the same option twice
    and the judge could not tell the two apart. Returns (choices, the repeated texts).
    """
    kept: dict[str, str] = {}
    repeated = []
    for choice in choices:
        key = choice.strip().lower()
        if key in kept:
            repeated.append(choice)
            if choice == answer:
                kept[key] = choice
        else:
            kept[key] = choice
    return list(kept.values()), repeated


def _find_audio(audio_dir: str | os.PathLike, names: list[str]) -> str | None:
    for name in names:
        candidate = os.path.abspath(os.path.join(os.fspath(audio_dir), name))
        if os.path.isfile(candidate):
            return candidate
    return None


def _prediction(record: Any, field: str | None = None) -> tuple[str, str]:
    r = _object(record)
    keys = (field,) if field else PREDICTION_KEYS
    key = next((k for k in keys if k in r), None)
    if key is None:
        hint = "" if field else "; name another with --field NAME"
        missing = [" or ".join(repr(k) for k in group) for group in (("id",), keys) if _either(r, *group) is None]
        raise _Bad(f"missing field{'s' if len(missing) > 1 else ''} {', '.join(missing)}{hint}")
    item_id = _text(r, "id")
    if not isinstance(r[key], str):
        raise _Bad(f"{key} should be text, got {type(r[key]).__name__}")
    return item_id, r[key]


def _object(record: Any) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise _Bad(f"expected an object, got {type(record).__name__}")
    return record


def _text(record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    if value is None:
        raise _Bad(f"missing field {key!r}")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # numeric ids are common in JSONL exports
    if not isinstance(value, str) or not value.strip():
        raise _Bad(f"field {key!r} should be non-empty text, got {value!r}")
    return value


def _choices(value: Any) -> list[str]:
    if value is None:
        raise _Bad("missing field 'choices'")
    if not isinstance(value, list) or not value or not all(isinstance(c, str) for c in value):
        raise _Bad(f"choices should be a non-empty list of texts, got {value!r}")
    return value


def _key(record: dict[str, Any]) -> str | None:
    """The answer key; absent or null means an item without a key (MMAU's test split)."""
    answer = record.get("answer")
    if answer is not None and not isinstance(answer, str):
        raise _Bad(f"answer should be text, got {answer!r}")
    return answer

