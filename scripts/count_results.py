"""Counts individual test results across suites for scripts/test.sh's closing line.

Usage: count_results.py [--exit=RC] FILE [[--exit=RC] FILE ...]

Each FILE is a meson testlog.json (*.json) or a JUnit XML file (anything
else): the plain suites, their sanitizer runs, the fuzz runs and the soak
all end up in the one line. --exit=RC gives the exit status of the runner
that wrote the next FILE (meson test, pytest, ...).

Rules, each one there because the opposite has hidden a failure:
- A FILE that is missing or unreadable is one failure: its suite should have
  run and did not (scripts/test.sh removes every result file before its
  suite runs, so a stale one cannot stand in for it).
- A runner that exited non-zero is at least one failure, whatever its file
  says (pytest dying in teardown, exit 5 for no tests collected).
- Per meson test entry (one test binary): its Criterion report, when the
  command line has --json=PATH (tests/meson.build adds it), gives one
  result per test case: PASSED, FAILED, ERRORED (a crash, counted once)
  and SKIPPED (cr_skip_test, .disabled). A report that is missing or older
  than the entry's start time is one failure. Without a report, the
  Criterion synthesis line gives passed and failed (its Failing already
  includes Crashing; skips are not in it), and without either, meson's
  result gives one test. In every case a binary whose exit status is not 0
  (a LeakSanitizer leak at exit, after all its tests passed) or whose meson
  result is not OK/SKIP counts at least one failure.

Prints the reasons for failures it found on stderr, then "N passed, N
failed" (", N skipped" when any) as the last line of stdout, and exits
non-zero when anything failed or nothing passed."""
from __future__ import annotations

import json
import os
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

SYNTHESIS = re.compile(
    r"Synthesis: Tested: (\d+) \| Passing: (\d+) \| Failing: (\d+) \| Crashing: (\d+)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# meson results that are not a failure of the binary
MESON_GOOD = ("OK", "SKIP", "EXPECTEDFAIL")


@dataclass
class Count:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, other: "Count") -> None:
        self.passed += other.passed
        self.failed += other.failed
        self.skipped += other.skipped
        self.notes += other.notes

    def fail(self, why: str) -> None:
        self.failed += 1
        self.notes.append(why)

    def line(self) -> str:
        s = f"{self.passed} passed, {self.failed} failed"
        return s + (f", {self.skipped} skipped" if self.skipped else "")


def criterion_report_path(command: list[str]) -> str | None:
    for arg in command or []:
        if arg.startswith("--json="):
            return arg[len("--json="):]
    return None


def count_criterion_report(path: str, started: float | None, name: str) -> Count:
    c = Count()
    try:
        if started is not None and os.stat(path).st_mtime < started:
            c.fail(f"{name}: Criterion report {path} is older than the run (stale)")
            return c
        with open(path) as f:
            report = json.load(f)
        for suite in report["test_suites"]:
            for t in suite["tests"]:
                status = t["status"]
                if status == "PASSED":
                    c.passed += 1
                elif status == "SKIPPED":
                    c.skipped += 1
                else:  # FAILED, ERRORED (crash, timeout) or anything new
                    c.fail(f"{name}: {suite['name']}::{t['name']} {status}")
    except (OSError, ValueError, KeyError, TypeError) as e:
        c.fail(f"{name}: no usable Criterion report {path} ({e.__class__.__name__}: {e})")
    return c


def count_meson_entry(t: dict) -> Count:
    name = t.get("name", "?")
    result = t.get("result")
    out = ANSI.sub("", (t.get("stdout") or "") + (t.get("stderr") or ""))
    report = criterion_report_path(t.get("command"))
    m = SYNTHESIS.search(out)
    if report:
        c = count_criterion_report(report, t.get("starttime"), name)
    elif m:
        _, ok, fail, _crash = map(int, m.groups())  # Failing includes Crashing
        c = Count(passed=ok, failed=fail)
        if fail:
            c.notes.append(f"{name}: {fail} failing")
    elif result == "SKIP":
        c = Count(skipped=1)
    elif result in MESON_GOOD:
        c = Count(passed=1)
    else:
        c = Count()
    rc = t.get("returncode")
    if c.failed == 0 and (result not in MESON_GOOD or (rc != 0 and result != "SKIP")):
        c.fail(f"{name}: meson result {result}, exit status {rc}")
    return c


def count_meson(path: str) -> Count:
    c = Count()
    with open(path) as f:
        for line in f:
            if line.strip():
                c.add(count_meson_entry(json.loads(line)))
    return c


def count_junit(path: str) -> Count:
    c = Count()
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    for ts in suites:
        n = int(ts.get("tests", 0))
        f = int(ts.get("failures", 0)) + int(ts.get("errors", 0))
        s = int(ts.get("skipped", 0))
        c.passed += n - f - s
        c.failed += f
        c.skipped += s
        if f:
            c.notes.append(f"{path}: {ts.get('name', '?')}: {f} failed")
    return c


def count_file(path: str, runner_rc: int) -> Count:
    try:
        c = (count_meson if path.endswith(".json") else count_junit)(path)
    except FileNotFoundError:
        c = Count()
        c.fail(f"{path}: missing (its suite did not run or died before writing it)")
    except (OSError, ET.ParseError, ValueError, AttributeError) as e:
        c = Count()
        c.fail(f"{path}: unreadable ({e.__class__.__name__}: {e})")
    if runner_rc != 0 and c.failed == 0:
        c.fail(f"{path}: its runner exited {runner_rc}")
    return c


def count_args(argv: list[str]) -> Count:
    total = Count()
    rc = 0
    for arg in argv:
        if arg.startswith("--exit="):
            rc = int(arg[len("--exit="):])
            continue
        total.add(count_file(arg, rc))
        rc = 0
    return total


def main(argv: list[str]) -> int:
    total = count_args(argv)
    for note in total.notes:
        print(f"count_results: {note}", file=sys.stderr)
    sys.stderr.flush()
    print(total.line())
    return 1 if total.failed or total.passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
