#!/usr/bin/env bash
# Set up, then build the book: every notebook executed in the smoke profile (any cell error fails
# the build), HTML in _build/html.  Open _build/html/index.html in a browser.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
jupyter-book build . --warningiserror --keep-going
echo "book: $(pwd)/_build/html/index.html"
