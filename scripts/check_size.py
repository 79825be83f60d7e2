#!/usr/bin/env python3
"""Readable sizes: no production source file over MAX_FILE lines, no function
over MAX_FUNC lines (tests, fuzz targets, the GPU checks and generated tables
are exempt; see EXEMPT).

  scripts/check_size.py [ROOT]        # exit 0 clean, 1 with one line per violation

A function is found the simple way C code here is written: a top-level `{`
after a `)` (or on the line after one) opens it, the matching `}` closes it;
strings, character literals and comments are skipped when matching braces.
"""
import os
import re
import sys

MAX_FILE = 600
MAX_FUNC = 100
SOURCE_DIRS = ("kernels", "cache", "model", "api", "engine", "server", "eval", "bench", "cli")
SOURCE_EXT = (".c", ".h", ".cu", ".cuh")
# generated tables (scripts/gen_unicode_tables.py) are data, not code
EXEMPT = {"model/unicode_tables.c"}


def strip(text):
    """The text with comments, strings and character literals blanked (same
    length and newlines), so braces inside them do not count."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(c + re.sub(r"[^\n]", " ", text[i + 1:j - 1]) + c)
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def functions(text):
    """[(name, first line, line count)] of the top-level brace blocks that
    follow a parameter list."""
    s = strip(text)
    res = []
    depth = 0
    start = None
    for pos, c in enumerate(s):
        if c == "{":
            if depth == 0:
                head = s[max(0, pos - 400):pos].rstrip()
                if head.endswith(")"):
                    # name: the identifier before the parameter list's "("
                    k = len(head) - 1
                    level = 0
                    while k >= 0:
                        if head[k] == ")":
                            level += 1
                        elif head[k] == "(":
                            level -= 1
                            if level == 0:
                                break
                        k -= 1
                    m = re.search(r"([A-Za-z_]\w*)\s*$", head[:max(k, 0)])
                    start = (m.group(1) if m else "?", s.count("\n", 0, pos) + 1)
                else:
                    start = None
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0 and start is not None:
                end = s.count("\n", 0, pos) + 1
                res.append((start[0], start[1], end - start[1] + 1))
                start = None
    return res


def check(root):
    problems = []
    for d in SOURCE_DIRS:
        for dirpath, _dirs, names in os.walk(os.path.join(root, d)):
            for nm in sorted(names):
                if not nm.endswith(SOURCE_EXT):
                    continue
                p = os.path.join(dirpath, nm)
                rel = os.path.relpath(p, root).replace(os.sep, "/")
                if rel in EXEMPT:
                    continue
                with open(p, encoding="utf-8", errors="replace") as f:
                    text = f.read()
                lines = text.count("\n")
                if lines > MAX_FILE:
                    problems.append(f"{rel}: {lines} lines (over {MAX_FILE})")
                for name, line, count in functions(text):
                    if count > MAX_FUNC:
                        problems.append(f"{rel}:{line}: {name}() is {count} lines (over {MAX_FUNC})")
    return problems


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from check_layers import run

    sys.exit(run("check_size", check, sys.argv))
