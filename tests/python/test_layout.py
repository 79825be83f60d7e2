"""The layout rules (scripts/check_layers.py, scripts/check_size.py) on the
real tree, and the checkers themselves on small crafted trees, so a checker
that stopped seeing violations would fail here too."""
import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


layers = load("check_layers")
size = load("check_size")


def write(root, files):
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_tree_has_no_back_edge_or_cycle():
    assert layers.check(str(ROOT)) == []


def test_tree_sizes():
    assert size.check(str(ROOT)) == []


def test_layers_flags_a_back_edge(tmp_path):
    write(tmp_path, {
        "kernels/ops.h": "int ops(void);\n",
        "cache/kv.h": "int kv(void);\n",
        "kernels/ops.c": '#include "ops.h"\n#include "kv.h"\n',  # kernels -> cache
    })
    probs = layers.check(str(tmp_path))
    assert len(probs) == 1 and "kernels/ops.c" in probs[0] and "kernels -> cache" in probs[0]


def test_layers_allows_the_direction(tmp_path):
    write(tmp_path, {
        "kernels/ops.h": "int ops(void);\n",
        "cache/kv.h": '#include "ops.h"\n#include <stdio.h>\n#include "llhttp.h"\n',
        "cli/main.c": '#include "kv.h"\n#include "ops.h"\n',
        "tests/kernels/test_ops.c": '#include "main.h"\n',  # tests are not checked
    })
    assert layers.check(str(tmp_path)) == []


def test_layers_flags_a_cycle_between_parts(tmp_path):
    # router.c -> completions.h, completions.c -> router.h: a call cycle
    write(tmp_path, {
        "server/router.h": "void route(void);\n",
        "server/router.c": '#include "router.h"\n#include "completions.h"\n',
        "server/completions.h": "void handle(void);\n",
        "server/completions.c": '#include "completions.h"\n#include "router.h"\n',
        "server/metrics.h": "void m(void);\n",
        "server/metrics.c": '#include "metrics.h"\n#include "srv_internal.h"\n',
        "server/srv_internal.h": '#include "metrics.h"\n',  # internal headers do not make cycles
    })
    probs = layers.check(str(tmp_path))
    assert probs == ["parts that include each other in a cycle: server/completions, server/router"]


def test_layers_flags_a_header_cycle(tmp_path):
    write(tmp_path, {"model/a.h": '#include "b.h"\n', "model/b.h": '#include "a.h"\n'})
    probs = layers.check(str(tmp_path))
    assert probs == ["parts that include each other in a cycle: model/a, model/b"]


def body(n):
    return "".join(f"    x += {i}; /* {{ */\n" for i in range(n))


@pytest.mark.parametrize("count,flagged", [(100, False), (101, True)])
def test_size_flags_long_functions(tmp_path, count, flagged):
    # counted from the line of the opening brace to the closing one
    src = "static int f(int x)\n{\n" + body(count - 3) + "    return x;\n}\n"
    src += 'const char *s = "}";\nint g(void) { return 0; }\n'
    write(tmp_path, {"model/f.c": src})
    probs = size.check(str(tmp_path))
    assert probs == (["model/f.c:2: f() is 101 lines (over 100)"] if flagged else [])


def test_size_flags_long_files_and_exempts_tests(tmp_path):
    write(tmp_path, {
        "cache/big.c": "int a;\n" * 601,
        "cache/ok.c": "int a;\n" * 600,
        "tests/cache/test_big.c": "int a;\n" * 2000,
    })
    assert size.check(str(tmp_path)) == ["cache/big.c: 601 lines (over 600)"]
