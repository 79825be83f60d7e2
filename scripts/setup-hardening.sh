#!/usr/bin/env bash
# Installs what the hardening checks need on Debian 12, on top of
# scripts/setup.sh: clang and its runtimes (libFuzzer, ASan/UBSan for clang)
# for tests/fuzz. The sanitizer build of the suites uses gcc, whose
# runtimes come with build-essential. Idempotent. Kept out of setup.sh so
# the images (docker/) do not carry a second compiler.
set -euo pipefail
cd "$(dirname "$0")/.."
APT_PKGS=(clang libclang-rt-14-dev)
bash scripts/apt-missing.sh setup-hardening "${APT_PKGS[@]}"
