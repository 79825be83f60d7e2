#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan, build dir build-fuzz),
# replays every committed regression input, then fuzzes each target for
# FUZZ_SECONDS (default 60) from the seed corpus (tests/fuzz/make_seeds.py;
# the corpus grows in build-fuzz/corpus across runs). Writes a JUnit file
# (argument 1, default build-fuzz/fuzz-junit.xml) with one test case per
# regression input and per fuzz run, so scripts/count_results.py counts them.
#
# A crash is saved under tests/fuzz/regressions/<target>/ (commit it with the
# fix: from then on it replays on every run) and fails the run.
#
# Environment: FUZZ_SECONDS, FUZZ_JOBS (targets fuzzed at once, default 2),
# FUZZ_TARGETS (default "api gguf tokenizer http jinja").
set -uo pipefail
cd "$(dirname "$0")/../.."
B=build-fuzz
JUNIT=${1:-$B/fuzz-junit.xml}
SECS=${FUZZ_SECONDS:-60}
JOBS=${FUZZ_JOBS:-2}
TARGETS=${FUZZ_TARGETS:-"api gguf tokenizer http jinja"}
REG=tests/fuzz/regressions

fail_all() { # the build itself failed: one failed case, and say why
  mkdir -p "$(dirname "$JUNIT")"
  printf '<testsuite name="fuzz" tests="1" failures="1"><testcase classname="fuzz" name="build"><failure message="%s"/></testcase></testsuite>\n' "$1" > "$JUNIT"
  echo "fuzz: $1" >&2
  exit 1
}

# clang 14 does not know "f16c" in __builtin_cpu_supports (kernels/quant.c):
# the fuzz build answers "no" to every CPU feature, so it runs the scalar
# kernels. The fuzzed code (parsers, loader, tokenizers, server) has no SIMD.
if [ ! -f "$B/build.ninja" ]; then
  CC=clang meson setup "$B" -Dcuda=disabled -Dtests=disabled -Dfuzz=true \
    -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized \
    "-Dc_args=-fsanitize=fuzzer-no-link -D__builtin_cpu_supports(x)=0" >&2 \
    || fail_all "meson setup failed"
fi
ninja -C "$B" $(for t in $TARGETS; do echo tests/fuzz/fuzz_$t; done) >&2 || fail_all "build failed"
.venv/bin/python tests/fuzz/make_seeds.py "$B" >/dev/null || fail_all "seed generation failed"

export PIVOT_FUZZ_MODEL="$PWD/$B/tiny-chat.gguf"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
# The HTTP target's server logs one line per request on stderr; libFuzzer
# keeps its own output and the sanitizer reports on a dup of stderr.
flags_for() { [ "$1" = http ] && echo "-close_fd_mask=2"; }

cases="$B/fuzz-cases.txt"   # name|ok|message lines, turned into JUnit below
: > "$cases"
mkdir -p "$B/logs" "$B/artifacts"

# 1. regressions: each committed input must run clean.
for t in $TARGETS; do
  for f in "$REG/$t"/*; do
    [ -f "$f" ] || continue
    if "$B/tests/fuzz/fuzz_$t" $(flags_for "$t") "$f" > "$B/logs/reg-$t-$(basename "$f").log" 2>&1; then
      echo "regression/$t/$(basename "$f")|1|" >> "$cases"
    else
      echo "regression/$t/$(basename "$f")|0|see $B/logs/reg-$t-$(basename "$f").log" >> "$cases"
      tail -n 40 "$B/logs/reg-$t-$(basename "$f").log" >&2
    fi
  done
done

# 2. fuzz each target for SECS seconds, JOBS at a time.
fuzz_one() {
  local t=$1 corpus="$B/corpus/$t" log="$B/logs/fuzz-$t.log" art="$B/artifacts/$t/"
  mkdir -p "$corpus" "$art"
  "$B/tests/fuzz/fuzz_$t" $(flags_for "$t") -max_total_time="$SECS" -print_final_stats=1 \
    -timeout=25 -rss_limit_mb=4096 -artifact_prefix="$art" "$corpus" > "$log" 2>&1
  local rc=$?
  local execs cov
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1)
  if [ $rc -eq 0 ]; then
    echo "fuzz/$t|1|${execs:-?} executions, ${cov:-?}, ${SECS}s" >> "$cases"
  else
    for a in "$art"*; do # keep what crashed as a regression input
      [ -f "$a" ] && mkdir -p "$REG/$t" && cp "$a" "$REG/$t/" && echo "fuzz: $t: saved $REG/$t/$(basename "$a")" >&2
    done
    echo "fuzz/$t|0|exit $rc after ${execs:-?} executions; input saved under $REG/$t" >> "$cases"
    grep -v '^pivot:' "$log" | tail -n 60 >&2
  fi
  echo "fuzz: $t: rc=$rc, ${execs:-?} executions, ${cov:-?} (edges, features)" >&2
}
running=0
for t in $TARGETS; do
  fuzz_one "$t" &
  running=$((running + 1))
  if [ $running -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
done
wait

.venv/bin/python - "$cases" "$JUNIT" <<'PY'
import sys
from xml.sax.saxutils import quoteattr
rows = [l.rstrip("\n").split("|", 2) for l in open(sys.argv[1]) if l.strip()]
fails = sum(1 for _, ok, _ in rows if ok != "1")
with open(sys.argv[2], "w") as f:
    f.write(f'<testsuite name="fuzz" tests="{len(rows)}" failures="{fails}">\n')
    for name, ok, msg in rows:
        f.write(f'  <testcase classname="fuzz" name={quoteattr(name)}>')
        f.write(f'<system-out>{quoteattr(msg)[1:-1]}</system-out>' if ok == "1"
                else f'<failure message={quoteattr(msg)}/>')
        f.write('</testcase>\n')
    f.write('</testsuite>\n')
for name, ok, msg in rows:
    print(f"fuzz: {'ok  ' if ok == '1' else 'FAIL'} {name} {msg}", file=sys.stderr)
sys.exit(1 if fails else 0)
PY
