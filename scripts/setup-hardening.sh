#!/usr/bin/env bash
# Installs what the hardening checks need on Debian 12, on top of
# scripts/setup.sh: clang and its runtimes (libFuzzer, ASan/UBSan for clang)
# for tests/fuzz. The sanitizer build of the suites uses gcc, whose
# runtimes come with build-essential. Idempotent. Kept out of setup.sh so
# the images (docker/) do not carry a second compiler.
set -euo pipefail
cd "$(dirname "$0")/.."
APT_PKGS=(clang libclang-rt-14-dev)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-hardening: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
