"""Draw docs/LORA.md's figures from a shipped adapter's card: the K@N curve, the alpha sweep and the transfer matrix.

The card's `build` entry (written by `python -m reliability build-adapter`) holds every figure's rows, so this
script computes nothing: it renders reliability.training.plots' figures in Debian's Chromium (Playwright,
never a downloaded browser) and saves each as a PNG. Run `python scripts/lora_figures.py [--adapter default]
[--out docs/figures]`.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reliability.training import plots  # noqa: E402
from reliability.training.adapters import CARD_FILE, SHIPPED_DIR  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def figures(build: dict) -> dict:
    """The figures a build's rows make, by file name."""
    found = {
        "lora-kn-curve": plots.idk_ratio_figure(build["idk_ratios"]),
        "lora-alpha-sweep": plots.alpha_sweep_figure(build["dev_set"]["alpha_sweep"]),
    }
    if build.get("transfer"):
        found["lora-transfer"] = plots.transfer_heatmap(build["transfer"])
    return found


def render(named: dict, out: Path) -> list[Path]:
    """Each figure as a PNG in `out`, drawn by Plotly in headless Chromium at 900 px wide."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 900, "height": 500})
        for name, fig in named.items():
            html = Path(tmp) / f"{name}.html"
            fig.update_layout(width=880)
            fig.write_html(html, include_plotlyjs=True, full_html=True)
            page.goto(html.as_uri())
            page.wait_for_selector(".main-svg")
            path = out / f"{name}.png"
            page.locator(".js-plotly-plot").screenshot(path=str(path))
            written.append(path)
        browser.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", default="default", help="a shipped adapter's name (default: default)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "figures"), help="folder for the PNGs (default: docs/figures)")
    args = parser.parse_args()
    card_path = SHIPPED_DIR / args.adapter / CARD_FILE
    if not card_path.is_file():
        sys.exit(f"no shipped adapter {args.adapter!r} ({card_path} is missing): build it with python -m reliability build-adapter")
    build = json.loads(card_path.read_text()).get("build")
    if not build:
        sys.exit(f"{card_path} has no build entry: it was not made by build-adapter")
    for path in render(figures(build), Path(args.out)):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
