#!/usr/bin/env bash
# Builds llama.cpp's own `llama-server` (the peer of bench/compare-llamacpp) from the llama.cpp
# sources vendored in the llama-cpp-python sdist: CPU only, native flags, Release, no HTTPS, no
# web UI download, only the `llama-server` target, -j2. Nothing of llama.cpp is committed; the
# sdist and the build live under the build folder and are reused (the build is skipped when the
# binary exists).
#
#   bash bench/build-llama-server.sh            # prints the binary's path on its last line
#   LLAMA_CPP_PYTHON_VERSION=0.3.36 bash bench/build-llama-server.sh
#   PIVOT_LLAMA_DIR=/some/dir bash bench/build-llama-server.sh   (default: build/llama-server)
#
# ~10-20 min on 2 cores the first time.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${PIVOT_LLAMA_DIR:-$repo/build/llama-server}
bin=$dir/bin/llama-server
if [[ -x $bin ]]; then
    echo "$bin"
    exit 0
fi
pip=${PIP:-$repo/.venv/bin/pip}
[[ -x $pip ]] || pip="python3 -m pip"
ver=${LLAMA_CPP_PYTHON_VERSION:-}
mkdir -p "$dir/sdist"
if ! ls "$dir"/sdist/llama_cpp_python-*.tar.gz >/dev/null 2>&1; then
    # the sdist only: --no-binary so pip does not pick a wheel, --no-deps (we build no Python)
    $pip download --no-binary :all: --no-deps -d "$dir/sdist" \
        "llama-cpp-python${ver:+==$ver}" >&2
fi
tarball=$(ls "$dir"/sdist/llama_cpp_python-*.tar.gz | sort -V | tail -1)
src=$dir/src/$(basename "$tarball" .tar.gz)
if [[ ! -f $src/vendor/llama.cpp/CMakeLists.txt ]]; then
    mkdir -p "$dir/src"
    tar -xzf "$tarball" -C "$dir/src"
fi
lsrc=$src/vendor/llama.cpp
# Options of the vendored llama.cpp (0.3.36 vendors a 2025-26 tree): LLAMA_CURL is deprecated and
# ignored there (LLAMA_OPENSSL replaced it), the server sits under tools/ behind
# LLAMA_BUILD_TOOLS + LLAMA_BUILD_SERVER, and its web UI would be fetched from Hugging Face unless
# LLAMA_USE_PREBUILT_UI is off. Static libraries so the binary does not depend on this folder's
# layout.
cmake -S "$lsrc" -B "$dir/cmake" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE=ON \
    -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_OPENMP=ON \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_APP=OFF >&2
cmake --build "$dir/cmake" --target llama-server -j "${JOBS:-2}" >&2
mkdir -p "$dir/bin"
cp "$dir/cmake/bin/llama-server" "$bin.tmp"
mv "$bin.tmp" "$bin"
echo "$bin"
