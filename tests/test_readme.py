"""The README as a newcomer reads it: its commands run as written, its links exist, and nothing points outside the repository."""
from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from reliability.cli.main import build_parser, main
from tests.test_cli import all_commands

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CLIS = (("reliability",), ("python", "-m", "reliability"))  # the installed command, and the same without installing
# evaluate and diagnose run the README's commands on the scripted backend: the default model is tested elsewhere
SCRIPTED = ["--backend", "scripted", "--backend-arg", "reply=I don't know"]
# a sibling folder (parent, then "shared") or a session's work folder; built from parts so this file does not match itself
OUTSIDE = re.compile("|".join([r"\.\./" + "shared", r"parents\[2\]", "DESIGN" + r"\.md", "/" + "work/"]))


def shell_lines(markdown: str) -> list[list[str]]:
    """The commands of the fenced bash blocks, as argument lists, comments and blank lines dropped."""
    blocks = [block.replace("\\\n", " ") for block in re.findall(r"```bash\n(.*?)```", markdown, re.S)]  # continued lines joined
    return [words for block in blocks for line in block.splitlines() if (words := shlex.split(line, comments=True))]


def needs_a_server(args: list[str]) -> bool:
    """A command the README runs against a model server (or that starts one): checked to parse, not run."""
    return args[0] == "serve" or "openai" in args


def readme_cli_commands() -> list[list[str]]:
    return [words[len(cli):] for words in shell_lines(README.read_text()) for cli in CLIS if tuple(words[: len(cli)]) == cli]


def test_the_readme_has_cli_commands_to_run():
    commands = [c[0] for c in readme_cli_commands()]
    assert {"import", "evaluate", "metrics", "export"} <= set(commands), commands


def test_every_readme_cli_command_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # outputs such as preds.json land here, not in the checkout
    db = str(tmp_path / "lab.db")
    for command in readme_cli_commands():
        # repository paths as written, resolved against the checkout (the README runs from its root)
        args = [str(ROOT / a) if (ROOT / a).exists() and "/" in a else a for a in command]
        if needs_a_server(args):
            build_parser().parse_args(args)
            continue
        if args[0] in ("evaluate", "diagnose") and "--backend" not in args:
            args += SCRIPTED
        status = main([*args, "--db", db])
        out, err = capsys.readouterr()
        assert status == 0, f"{shlex.join(command)} -> {err.strip()}"
        assert "Traceback" not in err
    assert (tmp_path / "preds.json").exists()


def test_every_cli_command_is_mentioned_in_the_readme():
    text = README.read_text()
    missing = [c[0] for c in all_commands(build_parser()) if len(c) == 1 and f"`{c[0]}" not in text and f" {c[0]} " not in text]
    assert not missing, f"commands without a word in README.md: {missing}"


def test_the_readme_app_commands_parse():
    from reliability.ui.app import parse_args

    words = [w[2:] if w[0] == "python" else w[1:] for w in shell_lines(README.read_text()) if w[:2] == ["python", "app.py"] or w[0] == "reliability-lab"]
    assert words, "the README shows how to start the app"
    for command in words:
        parse_args(command)
    for args in re.findall(r'make demo ARGS="([^"]+)"', README.read_text()):
        parse_args(shlex.split(args))


def test_the_readme_lists_the_fields_of_each_import_format():
    from reliability.datasets import SCHEMAS

    text = README.read_text()
    missing = [name for name, fields in SCHEMAS.items() if fields not in text]
    assert not missing, f"README.md does not list the fields of: {missing} (as reliability/datasets.py's SCHEMAS states them)"


@pytest.mark.parametrize("doc", ["README.md", "docs/METRICS.md", "docs/LORA.md"])
def test_links_and_images_in_the_docs_exist(doc):
    path = ROOT / doc
    targets = re.findall(r"\]\(([^)#\s]+)\)", path.read_text())
    local = [t for t in targets if "://" not in t]
    missing = [t for t in local if not (path.parent / t).exists()]
    assert not missing, f"{doc} links to files that do not exist: {missing}"


def test_no_tracked_file_refers_to_a_path_outside_the_repository():
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: no list of tracked files")
    hits = []
    for name in listed.stdout.decode().split("\0"):
        path = ROOT / name
        if not name or not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # audio, images
        hits += [f"{name}:{n}: {line.strip()}" for n, line in enumerate(text.splitlines(), 1) if OUTSIDE.search(line)]
    assert not hits, "files that point outside the repository:\n" + "\n".join(hits)
