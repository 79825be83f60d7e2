#!/usr/bin/env bash
# Installs the Debian packages named as arguments that are not installed yet
# (one apt-get update first, only when something is missing). Used by
# scripts/setup.sh and scripts/setup-hardening.sh.
#   bash scripts/apt-missing.sh WHO PKG...    # WHO prefixes the one log line
set -euo pipefail
who=$1; shift
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "$who: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
