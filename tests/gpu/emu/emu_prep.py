#!/usr/bin/env python3
"""Rewrites a .cu file for emu_cuda.h: kernel<<<g, b, smem, stream>>>(args);
becomes emu_launch(g, b, smem, [&] { kernel(args); }); and dynamic shared
memory declarations become pointers to the launch's buffer.
   emu_prep.py IN.cu OUT.cpp"""
import re
import sys

src = open(sys.argv[1]).read()


def split_top(s):
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return out


def launch(m):
    name, cfg, args = m.group(1), m.group(2), m.group(3)
    parts = split_top(cfg)
    while len(parts) < 3:
        parts.append("0")
    return f"emu_launch({parts[0]}, {parts[1]}, {parts[2]}, [&] {{ {name}({args}); }});"


src = re.sub(r"([A-Za-z_]\w*(?:<[^<>;]*>)?)<<<(.*?)>>>\((.*?)\);", launch, src, flags=re.S)
src = re.sub(r"extern __shared__ (?:__align__\(\d+\) )?(\w[\w ]*?) (\w+)\[\];",
             r"\1 *\2 = (\1 *)emu_dyn_smem;", src)
open(sys.argv[2], "w").write('#include "emu_cuda.h"\n' + src)
