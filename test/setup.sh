#!/usr/bin/env bash
# Installs what the test suite needs on Debian/Ubuntu: Python with torch for the webui shim
# tests and the PyTorch benchmark baseline, Chromium for the viewer test, then the npm packages.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" -eq 0 ]; then apt=(apt-get); else apt=(sudo apt-get); fi
"${apt[@]}" update -qq
"${apt[@]}" install -y -qq --no-install-recommends \
  python3 python3-torch python3-numpy python3-pil python3-pytest python3-msgpack python3-websocket \
  chromium >/dev/null
npm ci --no-audit --no-fund
