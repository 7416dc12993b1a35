#!/usr/bin/env bash
# Set up, then run every test: bnlib's unit tests, every notebook under nbval (smoke profile),
# and the site build checked page by page in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
export BNLIB_REQUIRE_BROWSER="${BNLIB_REQUIRE_BROWSER:-1}"
python -m pytest tests notebooks --nbval-lax -p no:cacheprovider --durations=15 "$@"
