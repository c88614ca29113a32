"""The installable package: the console scripts are the functions `python -m` and app.py call, the CLI runs on the base
dependencies alone, every extra a hint names exists, and the package data the code reads is declared."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import site
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from reliability.backends import BACKEND_EXTRAS
from reliability.paths import demo_clips, demo_items, package_file

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]
# the extras' top-level modules: the base must run the CLI without any of them
EXTRA_MODULES = (
    "torch", "transformers", "tokenizers", "peft", "accelerate", "safetensors", "gradio", "gradio_client", "plotly",
    "fastapi", "uvicorn", "openai", "faster_whisper", "onnxruntime", "gguf",
)
WITHOUT_EXTRAS = """
import importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {modules!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Absent())
from reliability.cli.main import main
sys.exit(main(sys.argv[1:]))
"""
PYTHON_DASH_M = "from reliability.cli.main import main\n\nsys.exit(main())"
# what `pip install .` builds from: the package metadata, the README it names and the two packages
BUILT_FROM = ("pyproject.toml", "README.md", "reliability", "annotations")
# the README's evaluate and diagnose run on the scripted backend here: the default model is tested elsewhere
SCRIPTED = ["--backend", "scripted", "--backend-arg", "reply=I don't know"]


def test_the_scripts_are_what_python_dash_m_and_app_py_call():
    scripts = PYPROJECT["project"]["scripts"]
    assert scripts == {"reliability": "reliability.cli.main:main", "reliability-lab": "reliability.ui.app:main"}
    assert PYTHON_DASH_M in (ROOT / "reliability" / "__main__.py").read_text()
    assert "from reliability.ui.app import main" in (ROOT / "app.py").read_text()


def test_python_dash_m_runs_from_the_checkout():
    done = subprocess.run([sys.executable, "-m", "reliability", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("usage: reliability"), done.stderr


def without_extras(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    code = WITHOUT_EXTRAS.format(modules=set(EXTRA_MODULES))
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, env=env)


def test_the_cli_runs_on_the_base_dependencies_alone(tmp_path):
    db = str(tmp_path / "lab.db")
    steps = [
        ["--help"],
        ["import", "dataset", "mmau-test-mini", "--db", db],
        ["evaluate", "--dataset", "mmau-test-mini", "--limit", "6", "--no-audio", "--backend", "scripted", "--backend-arg", "reply=A", "--db", db],
        ["metrics", "--db", db],
    ]
    for args in steps:
        done = without_extras(args, tmp_path)
        assert done.returncode == 0 and "Traceback" not in done.stderr, f"{args}: {done.stderr}"


@pytest.mark.parametrize("args, extra", [
    (["serve"], "serve"),
    (["evaluate", "--dataset", "d", "--no-audio", "--backend", "qwen2-audio"], "qwen"),
    (["evaluate", "--dataset", "d", "--no-audio", "--backend", "openai"], "openai"),
])
def test_a_missing_extra_is_one_line_naming_it(tmp_path, args, extra):
    db = str(tmp_path / "lab.db")
    assert without_extras(["import", "dataset", "mmau-test-mini", "--name", "d", "--db", db], tmp_path).returncode == 0
    done = without_extras([*args, "--db", db], tmp_path)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert f"pip install 'reliability-lab[{extra}]'" in done.stderr


def test_the_app_without_its_extra_is_one_line_naming_it(tmp_path):
    code = WITHOUT_EXTRAS.format(modules=set(EXTRA_MODULES)).replace("from reliability.cli.main import main", "from reliability.ui.app import main")
    done = subprocess.run([sys.executable, "-c", code, "--help"], cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "HOME": str(tmp_path)})
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "pip install 'reliability-lab[ui]'" in done.stderr, done.stderr


def test_every_extra_named_in_a_hint_exists():
    sources = "\n".join(p.read_text() for p in [*(ROOT / "reliability").rglob("*.py"), ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
    named = set(re.findall(r"install_hint\(['\"]([\w-]+)['\"]\)", sources))
    named |= set(re.findall(r"missing_package\([^)]*['\"]([\w-]+)['\"]\)", sources))
    named |= {extra for group in re.findall(r"reliability-lab\[([\w,-]+)\]", sources) for extra in group.split(",")}
    named |= set(BACKEND_EXTRAS.values())
    assert {"ui", "qwen", "cascade", "serve"} <= named
    assert named <= set(EXTRAS), f"hints name extras that pyproject.toml does not declare: {sorted(named - set(EXTRAS))}"


def test_the_package_data_the_code_reads_is_declared():
    from reliability.backends.cascade.music import MODEL_PATH
    from reliability.datasets import BUNDLED

    found = PYPROJECT["tool"]["setuptools"]["package-data"]["reliability"]
    package = ROOT / "reliability"
    declared = {p for pattern in found for p in package.glob(pattern) if p.is_file()}
    read = [demo_items(), *demo_clips().iterdir(), *BUNDLED.values(), MODEL_PATH, package_file("data", "MMAU-LICENSE.txt")]
    assert all(p.is_file() for p in read)
    assert {p.resolve() for p in read} <= {p.resolve() for p in declared}
    assert "adapters/**/*" in found  # adapters shipped in the package (trained ones stay in the user's data folder)


def readme_batch_block() -> list[str]:
    """The command lines of the README's first bash block under "Batch runs", as written."""
    section = (ROOT / "README.md").read_text().split("## Batch runs", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)[1]
    return [line for line in block.splitlines() if shlex.split(line, comments=True)]


@pytest.mark.slow
def test_the_installed_package_runs_the_readme_batch_block_from_any_folder(tmp_path):
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the checkout
    source.mkdir()
    for name in BUILT_FROM:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True)
    # the dependencies installed here (pip and setuptools included) but not the checkout: no network needed
    (Path(purelib.stdout.strip()) / "installed_here.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", HOME=str(home), XDG_DATA_HOME=str(home / "data"),
               PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    install = [python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(source)]
    done = subprocess.run(install, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def run(words: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(words, capture_output=True, text=True, env=env, cwd=elsewhere, timeout=300)

    where = run(["python", "-c", "import reliability; print(reliability.__file__)"])
    assert where.stdout.startswith(str(venv)), "the installed copy answers, not the checkout"
    for words in (["reliability", "--help"], ["python", "-m", "reliability", "--help"], ["reliability-lab", "--help"]):
        done = run(words)
        assert done.returncode == 0 and "usage:" in done.stdout, f"{shlex.join(words)}: {done.stderr}"
    for line in readme_batch_block():
        words = shlex.split(line, comments=True)
        assert words[0] == "reliability", f"the block runs the installed command: {line}"
        done = run(words + (SCRIPTED if words[1] in ("evaluate", "diagnose") else []))
        assert done.returncode == 0 and "error:" not in done.stderr and "Traceback" not in done.stderr, f"{line}\n{done.stderr}"
    assert (elsewhere / "preds.json").is_file() and (home / "data" / "reliability-lab" / "lab.db").is_file()
