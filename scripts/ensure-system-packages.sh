#!/usr/bin/env bash
# Install the Debian packages the test suite drives, when they are missing: Graphviz (the
# pictures of graphs and runs) and Chromium with its driver (the web view is tested in a real
# headless browser). Idempotent: a few milliseconds when everything is in place.
set -euo pipefail

missing=()
command -v dot >/dev/null || missing+=(graphviz)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (apt-get)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "system packages: dot $(dot -V 2>&1 | awk '{print $5}'), $(chromium --version 2>/dev/null | awk '{print $1, $2}')"
