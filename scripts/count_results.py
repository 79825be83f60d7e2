"""Counts individual test results across suites for the closing line.

Criterion prints "Synthesis: Tested: X | Passing: Y | Failing: Z | Crashing: W"
per executable (captured in meson's testlog.json); pytest writes JUnit XML.
A test executable that crashed or timed out without a synthesis line counts
as one failure. Prints "N passed, N failed" (", N skipped" when any) and
exits non-zero when anything failed or nothing ran.

Arguments: result files, any number, each a meson testlog.json (*.json) or
a JUnit XML file (anything else): the plain suites, their sanitizer runs,
the fuzz runs and the soak all end up in the one line. A file that is
missing counts as one failure (its suite did not run)."""
import json
import re
import sys
import xml.etree.ElementTree as ET

passed = failed = skipped = 0
syn = re.compile(r"Synthesis: Tested: (\d+) \| Passing: (\d+) \| Failing: (\d+) \| Crashing: (\d+)")


def count_meson(path):
    global passed, failed, skipped
    with open(path) as f:
        for line in f:
            t = json.loads(line)
            out = (t.get("stdout") or "") + (t.get("stderr") or "")
            m = syn.search(re.sub(r"\x1b\[[0-9;]*m", "", out))
            if m:
                tested, ok, fail, crash = map(int, m.groups())
                passed += ok
                failed += fail + crash
                skipped += max(0, tested - ok - fail - crash)
            elif t.get("result") not in ("OK", "SKIP"):
                failed += 1
            elif t.get("result") == "OK":
                passed += 1


def count_junit(path):
    global passed, failed, skipped
    root = ET.parse(path).getroot()
    for ts in root.iter("testsuite"):
        n = int(ts.get("tests", 0))
        f = int(ts.get("failures", 0)) + int(ts.get("errors", 0))
        s = int(ts.get("skipped", 0))
        passed += n - f - s
        failed += f
        skipped += s


for path in sys.argv[1:]:
    try:
        (count_meson if path.endswith(".json") else count_junit)(path)
    except (FileNotFoundError, ET.ParseError, json.JSONDecodeError):
        failed += 1
line = f"{passed} passed, {failed} failed"
if skipped:
    line += f", {skipped} skipped"
print(line)
sys.exit(1 if failed or passed == 0 else 0)
