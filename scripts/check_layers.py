#!/usr/bin/env python3
"""The module dependency rule, checked on the include graph.

Each top-level source folder is a module. A file may include headers of its
own module and of the modules its module is allowed to depend on (LAYERS
below, one way: nothing may include a header of a module above it). Within a
module the header include graph must have no cycle either. Tests, fuzz
targets and the GPU checks may include anything; they are not checked.

  scripts/check_layers.py [ROOT]      # exit 0 clean, 1 with one line per violation

The rule is the picture in docs/ARCHITECTURE.md; change both together.
"""
import os
import re
import sys

# module -> the modules it may include (besides itself)
LAYERS = {
    "kernels": set(),
    "api": set(),
    # grammar/: constrained decoding over bytes; cJSON and the error codes only
    "grammar": {"kernels"},
    "cache": {"kernels"},
    "model": {"cache", "kernels"},
    "engine": {"api", "grammar", "model", "cache", "kernels"},
    "eval": {"model", "cache", "kernels"},
    "server": {"engine", "api", "grammar", "model", "cache", "kernels"},
    # bench/: the load generator (bench_*.c with a header) needs nothing of
    # ours but the clock; the microbenchmarks (bench_attn.c, ...) are
    # programs that time kernels and caches, so they sit above them.
    "bench": {"kernels", "cache", "model", "grammar"},
    "cli": {"server", "engine", "eval", "bench", "api", "grammar", "model", "cache", "kernels"},
}
SOURCE_EXT = (".c", ".h", ".cu", ".cuh", ".cpp")
INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def module_of(rel):
    """The module a repository-relative path belongs to, or None."""
    top = rel.split("/", 1)[0]
    return top if top in LAYERS else None


def scan(root):
    """{rel path: [included names]} for every source file of a module."""
    files = {}
    for mod in LAYERS:
        base = os.path.join(root, mod)
        for dirpath, _dirs, names in os.walk(base):
            for n in names:
                if n.endswith(SOURCE_EXT):
                    p = os.path.join(dirpath, n)
                    rel = os.path.relpath(p, root).replace(os.sep, "/")
                    with open(p, encoding="utf-8", errors="replace") as f:
                        files[rel] = INCLUDE_RE.findall(f.read())
    return files


def resolve(files, rel, name):
    """The file an include names: next to the includer first, then the one
    module header of that base name (the build puts every module folder on
    the include path). None for system/third-party headers."""
    here = os.path.normpath(os.path.join(os.path.dirname(rel), name)).replace(os.sep, "/")
    if here in files:
        return here
    base = os.path.basename(name)
    hits = sorted(f for f in files if os.path.basename(f) == base)
    return hits[0] if hits else None


def cycles(graph):
    """The strongly connected components of more than one node (Tarjan):
    each is a set of nodes that reach each other, so some cycle runs
    through all of them. Sorted lists."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def check(root):
    files = scan(root)
    problems = []
    graph = {}
    for rel, incs in sorted(files.items()):
        mod = module_of(rel)
        graph[rel] = []
        for name in incs:
            target = resolve(files, rel, name)
            if target is None:
                continue
            tmod = module_of(target)
            if tmod != mod and tmod not in LAYERS[mod]:
                problems.append(f"{rel}: includes {target} ({mod} -> {tmod} is not allowed)")
            graph[rel].append(target)
    # Cycles between the parts of the tree. A part is foo.c with foo.h (so
    # "router.c includes completions.h, completions.c includes router.h" is
    # a cycle: calls that run in a circle). Internal headers (*_internal.h,
    # *_impl.h) are private to their module and may be shared by its parts
    # without making them one; they are left out of the part graph.
    def part(rel):
        return os.path.splitext(rel)[0]

    def internal(rel):
        return re.search(r"_(internal|impl)\.h$", rel) is not None

    parts = {}
    for rel, targets in graph.items():
        if internal(rel):
            continue
        for t in targets:
            if not internal(t) and part(t) != part(rel):
                parts.setdefault(part(rel), set()).add(part(t))
    problems += ["parts that include each other in a cycle: " + ", ".join(c)
                 for c in cycles(parts)]
    return problems


def run(name, check_fn, argv):
    """The command line of a checker (this one and check_size.py): check the
    tree at argv[1] (default: this repository), one line per violation, then
    a summary; exit status 1 when anything was found."""
    root = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    problems = check_fn(root)
    for p in problems:
        print(p)
    if problems:
        print(f"{name}: {len(problems)} violation(s)")
        return 1
    print(f"{name}: clean")
    return 0


if __name__ == "__main__":
    sys.exit(run("check_layers", check, sys.argv))
