"""scripts/count_results.py, the counter behind scripts/test.sh's closing line,
on crafted meson testlogs, Criterion reports and JUnit files: each case is
one way a failure or a skip has been lost or double counted before (a leak
after the synthesis line, a skip, a crash, a missing or stale file, pytest
dying early). One case runs a real Criterion binary, so that the report
format the counter reads is Criterion's, not only this file's idea of it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
SCRIPT = REPO / "scripts" / "count_results.py"
LINE = re.compile(r"^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?$")


def count(*args) -> tuple[tuple[int, int, int], int, str]:
    """Runs the counter; returns ((passed, failed, skipped), exit status, stderr)."""
    r = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)],
                       capture_output=True, text=True, timeout=60)
    last = r.stdout.strip().splitlines()[-1]
    m = LINE.match(last)
    assert m, f"last line is not 'N passed, N failed[, N skipped]': {last!r}"
    return tuple(int(g or 0) for g in m.groups()), r.returncode, r.stderr


def synthesis(tested, ok, fail, crash) -> str:
    return (f"\x1b[0;34m[====] \x1b[0mSynthesis: Tested: {tested} | Passing: {ok} | "
            f"Failing: {fail} | Crashing: {crash} \n")


def entry(name="unit / t", result="OK", rc=0, stderr="", command=None, starttime=None):
    return {"name": name, "stdout": "", "stderr": stderr, "result": result,
            "returncode": rc, "command": command or [f"/b/tests/test_{name}", "--jobs", "1"],
            "starttime": time.time() - 5 if starttime is None else starttime, "duration": 0.1}


def write_testlog(tmp_path: Path, *entries, name="testlog.json") -> Path:
    p = tmp_path / name
    p.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return p


def criterion_report(path: Path, statuses: dict[str, str]) -> Path:
    """A report in Criterion 2.4's --json layout, one suite."""
    tests = [{"name": n, "assertions": 1, "status": s} for n, s in statuses.items()]
    path.write_text(json.dumps({"id": "Criterion v2.4.1", "test_suites": [
        {"name": "s", "tests": tests}]}))
    return path


def reported_entry(tmp_path, statuses, rc=0, result="OK", stderr=""):
    rep = criterion_report(tmp_path / "criterion-t.json", statuses)
    return entry(result=result, rc=rc, stderr=stderr,
                 command=["/b/tests/test_t", "--jobs", "1", f"--json={rep}"])


def junit(tmp_path: Path, tests, failures=0, errors=0, skipped=0, name="pytest-junit.xml"):
    p = tmp_path / name
    p.write_text(f'<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" '
                 f'errors="{errors}" failures="{failures}" skipped="{skipped}" '
                 f'tests="{tests}"></testsuite></testsuites>')
    return p


# ---- meson entries --------------------------------------------------------------

def test_all_passing_counts_each_test(tmp_path):
    log = write_testlog(tmp_path, entry(stderr=synthesis(10, 10, 0, 0)),
                  entry(name="u", stderr=synthesis(3, 3, 0, 0)))
    assert count(log)[:2] == ((13, 0, 0), 0)


def test_leak_after_synthesis_is_a_failure(tmp_path):
    # LeakSanitizer reports after Criterion's synthesis and exits 23: every
    # test passed, the binary did not.
    leak = synthesis(10, 10, 0, 0) + "==1==ERROR: LeakSanitizer: detected memory leaks\n"
    (p, f, s), rc, err = count(write_testlog(tmp_path, entry(result="FAIL", rc=23, stderr=leak)))
    assert (p, f, s) == (10, 1, 0) and rc == 1
    assert "exit status 23" in err


def test_nonzero_exit_fails_even_when_meson_says_ok(tmp_path):
    e = reported_entry(tmp_path, {"a": "PASSED", "b": "PASSED"}, rc=1, result="OK")
    assert count(write_testlog(tmp_path, e))[:2] == ((2, 1, 0), 1)


def test_timeout_without_synthesis_is_one_failure(tmp_path):
    assert count(write_testlog(tmp_path, entry(result="TIMEOUT", rc=-15)))[:2] == ((0, 1, 0), 1)


def test_skips_come_from_the_criterion_report(tmp_path):
    # Criterion's synthesis leaves skips out of "Tested" (5 of 6 here).
    e = reported_entry(tmp_path, {"a": "PASSED", "b": "PASSED", "c": "PASSED", "d": "PASSED",
                                  "e": "PASSED", "gpu": "SKIPPED"},
                       stderr=synthesis(5, 5, 0, 0))
    assert count(write_testlog(tmp_path, e))[:2] == ((5, 0, 1), 0)


def test_synthesis_alone_invents_no_skip(tmp_path):
    assert count(write_testlog(tmp_path, entry(stderr=synthesis(5, 5, 0, 0))))[0] == (5, 0, 0)


def test_crash_counts_once(tmp_path):
    # Criterion's Failing already includes Crashing.
    (p, f, s), rc, _ = count(write_testlog(tmp_path, entry(result="FAIL", rc=1,
                                                    stderr=synthesis(4, 3, 1, 1))))
    assert (p, f, s) == (3, 1, 0) and rc == 1
    e = reported_entry(tmp_path, {"a": "PASSED", "b": "ERRORED", "c": "SKIPPED"},
                       rc=1, result="FAIL", stderr=synthesis(2, 1, 1, 1))
    assert count(write_testlog(tmp_path, e))[0] == (1, 1, 1)


def test_failures_and_crashes_add_up(tmp_path):
    e = reported_entry(tmp_path, {"a": "FAILED", "b": "ERRORED", "c": "PASSED"}, rc=1,
                       result="FAIL")
    assert count(write_testlog(tmp_path, e))[0] == (1, 2, 0)


def test_missing_criterion_report_is_a_failure(tmp_path):
    e = entry(stderr=synthesis(7, 7, 0, 0),
              command=["/b/test_t", f"--json={tmp_path / 'absent.json'}"])
    (p, f, _), rc, err = count(write_testlog(tmp_path, e))
    assert f == 1 and rc == 1 and "absent.json" in err


def test_stale_criterion_report_is_a_failure(tmp_path):
    e = reported_entry(tmp_path, {"a": "PASSED"})
    rep = tmp_path / "criterion-t.json"
    old = e["starttime"] - 3600
    os.utime(rep, (old, old))
    (p, f, _), rc, err = count(write_testlog(tmp_path, e))
    assert (p, f) == (0, 1) and rc == 1 and "stale" in err


def test_meson_skip_is_a_skip(tmp_path):
    assert count(write_testlog(tmp_path, entry(result="SKIP", rc=77)))[:2] == ((0, 0, 1), 1)


# ---- files and runners --------------------------------------------------------------

def test_missing_file_is_a_failure(tmp_path):
    log = write_testlog(tmp_path, entry(stderr=synthesis(2, 2, 0, 0)))
    (p, f, _), rc, err = count(log, tmp_path / "pytest-junit.xml")
    assert (p, f) == (2, 1) and rc == 1 and "missing" in err


def test_pytest_dying_early(tmp_path):
    # No JUnit file at all (scripts/test.sh removed the last run's).
    assert count("--exit=2", tmp_path / "gone.xml")[0][1] == 1
    # A file that says nothing failed, from a runner that exited 1 (a stale
    # file, or pytest dying after writing part of it) is still a failure.
    ok = junit(tmp_path, tests=40)
    assert count("--exit=1", ok)[:2] == ((40, 1, 0), 1)
    # A truncated file.
    cut = tmp_path / "cut.xml"
    cut.write_text(ok.read_text()[:60])
    assert count(cut)[:2] == ((0, 1, 0), 1)


def test_pytest_collecting_nothing_is_a_failure(tmp_path):
    assert count("--exit=5", junit(tmp_path, tests=0))[:2] == ((0, 1, 0), 1)


def test_exit_status_applies_to_the_next_file_only(tmp_path):
    a = junit(tmp_path, tests=3, name="a.xml")
    b = junit(tmp_path, tests=4, failures=1, skipped=1, name="b.xml")
    assert count("--exit=0", a, "--exit=1", b, a)[:2] == ((8, 1, 1), 1)


def test_junit_counts(tmp_path):
    f = junit(tmp_path, tests=10, failures=1, errors=1, skipped=3)
    assert count(f)[:2] == ((5, 2, 3), 1)
    bare = tmp_path / "bare.xml"  # tests/fuzz and the GPU step write a bare <testsuite>
    bare.write_text('<testsuite name="g" tests="2" failures="0" skipped="1"></testsuite>')
    assert count(bare)[:2] == ((1, 0, 1), 0)


def test_nothing_passed_exits_non_zero(tmp_path):
    assert count(junit(tmp_path, tests=2, skipped=2))[:2] == ((0, 0, 2), 1)


# ---- a real Criterion binary --------------------------------------------------------

CRITERION_SRC = r"""
#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
Test(s, ok) { cr_assert(1); }
Test(s, bad) { cr_assert(0, "boom"); }
Test(s, crash) { raise(SIGSEGV); }
Test(s, skip) { cr_skip_test("not here"); }
Test(s, off, .disabled = true) { cr_assert(1); }
Test(t, ok2) { cr_assert(1); }
"""


def test_real_criterion_binary(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler")
    src = tmp_path / "t.c"
    src.write_text(CRITERION_SRC)
    exe = tmp_path / "t"
    b = subprocess.run([cc, str(src), "-o", str(exe), "-lcriterion"], capture_output=True,
                       text=True, timeout=120)
    if b.returncode != 0:
        pytest.skip(f"cannot build a Criterion test here: {b.stderr[-300:]}")
    rep = tmp_path / "criterion-t.json"
    cmd = [str(exe), "--jobs", "1", f"--json={rep}"]
    start = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    e = entry(result="OK" if r.returncode == 0 else "FAIL", rc=r.returncode, stderr=r.stderr,
              command=cmd, starttime=start)
    assert r.returncode != 0
    # 2 pass; bad fails and crash crashes (once each); skip and off skip.
    assert count(write_testlog(tmp_path, e))[:2] == ((2, 2, 2), 1)
