#!/usr/bin/env bash
# Refresh requirements/lock.txt (bash scripts/lock.sh [--upgrade]): every dependency of twoview and of its extras, pinned, resolved by
# pip-tools (pip's own resolver, so it sees the CPU build of torch that lies on this machine's disk;
# uv and poetry do not look there and would lock a multi-GB CUDA build).
# The loose ranges stay in pyproject.toml for people who install twoview into their own environment;
# the README's install, scripts/test.sh and CI install with `-c requirements/lock.txt`.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q --disable-pip-version-check --root-user-action=ignore "pip-tools>=7.4,<8"
# Pins already in the lock are kept; pass --upgrade to move everything to the newest allowed release.
python -m piptools compile -q "$@" --extra learned,depth,peers,ray,exr,test --strip-extras \
  --no-emit-index-url --no-emit-find-links --allow-unsafe -o requirements/lock.txt pyproject.toml
echo "requirements/lock.txt: $(grep -c '==' requirements/lock.txt) pinned packages"
