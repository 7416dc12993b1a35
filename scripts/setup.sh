#!/usr/bin/env bash
# Create .venv with everything from requirements.txt, headless Chromium for the browser test,
# and point bnlib at local CIFAR-10 when no internet download is possible.  Idempotent.
# Source it (". scripts/setup.sh") so that the exports reach the caller.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import bnlib, tensorflow" >/dev/null 2>&1 || { echo "setup: pip install failed" >&2; exit 1; }
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
      || echo "setup: could not install chromium (the browser test will say so)" >&2
  else
    echo "setup: chromium missing; install it (apt-get install chromium) for the browser test" >&2
  fi
fi
# Data: $BNLIB_CIFAR10 if set; else the project's offline copy when it sits beside the checkout
# (development and CI machines have no internet); else Keras downloads CIFAR-10 itself.
if [ -z "${BNLIB_CIFAR10:-}" ] && [ -f ../shared/data/cifar10-exact-subset.npz ]; then
  export BNLIB_CIFAR10="$(cd ../shared/data && pwd)/cifar10-exact-subset.npz"
fi
export BNLIB_PROFILE="${BNLIB_PROFILE:-smoke}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
export PATH="$PWD/.venv/bin:$PATH"
echo "setup: $(python -c 'import bnlib.notebook as n; print(n.versions())' 2>/dev/null) | profile $BNLIB_PROFILE | data ${BNLIB_CIFAR10:-keras download}"
