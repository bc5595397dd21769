#!/usr/bin/env bash
# Builds and runs every firmware check; installs nothing. Needs (Debian):
#   make g++ gcc doctest-dev arduino-mk gcc-avr avr-libc arduino-core-avr
#   simavr libsimavr-dev
# and a Python with the project installed (twistd tantra, websockets, pytest).
# PYTHON picks the interpreter (default: python3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
python="${PYTHON:-python3}"

echo "== firmware: core host tests (doctest, ASan/UBSan)"
make -C "$here" -j2 test

echo "== firmware: Mega sketch (arduino-mk), simavr bench, ESP8266 host build, sketch check"
make -C "$here" -j2 mega sim host esp-check

echo "== firmware: simavr run and end-to-end tests against the hub"
cd "$root"
"$python" -m pytest -q -rs tests/test_firmware_core.py tests/test_firmware_sim.py tests/test_firmware_e2e.py

for counts in "$here"/build/e2e-*.json; do
  [ -e "$counts" ] && { echo "== $(basename "$counts")"; cat "$counts"; }
done
