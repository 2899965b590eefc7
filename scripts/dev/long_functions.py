#!/usr/bin/env python3
"""long_functions.py: lists C++ function bodies longer than a limit.

Usage: scripts/dev/long_functions.py [--limit 100] [DIR ...]
(default DIRs: the production modules common crypto firmware emulator host
proto/wire). A function is counted from the line of its opening brace at
namespace or class scope to its closing brace, so lambdas and blocks inside a
function count toward it. Exits 1 when any function is over the limit.
A heuristic (no C++ parser): good enough for this code base's clang-format
style, where a function's body opens with "{" at the end of its signature.
"""
import argparse
import os
import re
import sys

PRODUCTION = ["common", "crypto", "firmware", "emulator", "host", "proto/wire"]
SIGNATURE_END = re.compile(r"\)\s*(const)?\s*(noexcept)?\s*(override)?\s*(->\s*[\w:<>,\s*&]+)?\s*\{\s*$")
NOT_A_FUNCTION = re.compile(r"^\s*(if|for|while|switch|catch|else|do)\b|=\s*\[|\[[^\]]*\]\s*\(")


def strip(line):
    """Removes string and char literals and // comments (for brace counting)."""
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^'\\])'", "''", line)
    return line.split("//", 1)[0]


def functions(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [strip(l.rstrip("\n")) for l in f]
    depth = 0
    scope_depths = [0]  # brace depths at which functions may start
    i = 0
    while i < len(lines):
        line = lines[i]
        if depth in scope_depths and SIGNATURE_END.search(line) and not NOT_A_FUNCTION.search(line):
            start = i
            # find the signature's first line for the name
            name_line = line
            j = i
            while j > 0 and "(" not in name_line:
                j -= 1
                name_line = lines[j] + name_line
            d = 0
            k = i
            while k < len(lines):
                d += lines[k].count("{") - lines[k].count("}")
                if d == 0:
                    break
                k += 1
            m = re.search(r"([\w:~]+)\s*\(", lines[j] if "(" in lines[j] else name_line)
            yield (m.group(1) if m else "?"), start + 1, k - start + 1
            i = k + 1
            continue
        opened = line.count("{") - line.count("}")
        if re.search(r"\b(namespace|class|struct)\b[^;]*\{\s*$", line) and opened > 0:
            scope_depths.append(depth + 1)
        depth += opened
        while len(scope_depths) > 1 and depth < scope_depths[-1]:
            scope_depths.pop()
        i += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("dirs", nargs="*")
    args = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    dirs = args.dirs or [os.path.join(root, d) for d in PRODUCTION]
    over = []
    for d in dirs:
        for base, _, files in os.walk(d):
            for name in files:
                if name.endswith((".cc", ".h")):
                    path = os.path.join(base, name)
                    for fn, line, length in functions(path):
                        if length > args.limit:
                            over.append((length, os.path.relpath(path, root), line, fn))
    for length, path, line, fn in sorted(over, reverse=True):
        print(f"{path}:{line}: {fn}: {length} lines")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
