#!/bin/sh
# Retake the README's screenshots (docs/screenshots/*.png): the browser tests on the scripted backend, in Debian's
# headless Chromium, save every tab empty and filled when LAB_SCREENSHOTS names a folder. Look at each one afterwards.
cd "$(dirname "$0")/.." || exit 1
LAB_SCREENSHOTS=docs/screenshots exec "${PYTHON:-.venv/bin/python}" -m pytest tests/test_app_browser.py -q -p no:cacheprovider "$@"
