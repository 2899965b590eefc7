#!/usr/bin/env python3
"""Replace reason string literals at call sites with common/reasons.h constants.

Every reason is declared once, in common/reasons.inc. This script rewrites the
production code (common/ crypto/ firmware/ emulator/ host/ proto/wire/) so that
call sites name the constant instead of repeating the string:

    Error(code, "FOO_BAR", msg)        ->  Error(code, reason::kFooBar, msg)
    Precondition("FOO_BAR", msg)       ->  Precondition(reason::kFooBar, msg)
    ReasonOf(s) == "FOO_BAR"           ->  ReasonOf(s) == reason::kFooBar
    std::string_view reason = "FOO";   ->  std::string_view reason = reason::kFoo;
    constexpr char kFoo[] = "FOO";     ->  constexpr std::string_view kFoo = reason::kFoo;

and adds #include "common/reasons.h" where it introduced a constant. A "reason
position" is the `reason` parameter of any function declared in those
directories with a parameter named `reason` (Error, Precondition, Invalid,
OpenSslError, ... found by reading the declarations, so helpers added later are
covered), an assignment to a variable whose name ends in `reason`, and either
side of ==/!= against ReasonOf(...), .reason() or such a variable.

It is idempotent: a second run changes nothing. A literal in a reason position
that is not declared in common/reasons.inc is left alone and reported; the
script then exits 1 (declare it, with its exit class, and run it again).

Usage:
  scripts/dev/use_reason_constants.py [--root DIR] [--check] [--list]
    --check  change nothing; exit 1 when a file would change or a reason is
             undeclared
    --list   print every reason position found: file:line REASON code
    --no-format  do not run clang-format -i on the changed files (it runs
             when clang-format is on PATH)
"""

import argparse
import os
import re
import shutil
import subprocess
import sys

PRODUCTION_DIRS = ("common", "crypto", "firmware", "emulator", "host", "proto/wire")
SOURCE_SUFFIXES = (".h", ".cc", ".inc")
REASONS_INC = "common/reasons.inc"
REASONS_HEADER = "common/reasons.h"
# Files that declare the reasons themselves.
SKIP_FILES = {REASONS_INC, REASONS_HEADER, "common/reasons.cc"}

REASON_RE = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*")
LITERAL_RE = re.compile(r'"([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*)"')
DECLARED_RE = re.compile(r"^\s*HSMSIM_REASON\(\s*([A-Z0-9_]+)\s*,", re.M)
STATUS_CODE_RE = re.compile(r"^\s*(?:absl::)?StatusCode::(k\w+)\s*$")


def constant_name(reason):
    """BAD_PUBLIC_KEY -> kBadPublicKey."""
    return "k" + "".join(part[:1] + part[1:].lower() for part in reason.split("_"))


def mask(text):
    """Returns text with comments and the insides of char literals blanked.

    String literals are kept (quotes included) so their offsets stay valid;
    raw strings R"d(...)d" are blanked too (they hold SQL, not reasons).
    """
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            for k in range(i, j):
                out[k] = " "
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            for k in range(i, j):
                if out[k] != "\n":
                    out[k] = " "
            i = j
        elif c == "R" and text.startswith('R"', i) and (i == 0 or not text[i - 1].isalnum()):
            open_paren = text.find("(", i)
            delim = text[i + 2:open_paren]
            end = text.find(")" + delim + '"', open_paren)
            end = n if end < 0 else end + len(delim) + 2
            for k in range(i, end):
                if out[k] != "\n":
                    out[k] = " "
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            i = j + 1
        elif c == "'" and not (i > 0 and text[i - 1].isalnum()):  # not a digit separator
            j = i + 1
            while j < n and text[j] != "'":
                j += 2 if text[j] == "\\" else 1
            for k in range(i + 1, min(j, n)):
                out[k] = " "
            i = j + 1
        else:
            i += 1
    return "".join(out)


def split_args(masked, open_paren):
    """Returns [(start, end)] of the arguments of the call whose '(' is at open_paren."""
    args = []
    depth = 0
    start = open_paren + 1
    i = open_paren
    n = len(masked)
    while i < n:
        c = masked[i]
        if c == '"':
            j = i + 1
            while j < n and masked[j] != '"':
                j += 2 if masked[j] == "\\" else 1
            i = j + 1
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                args.append((start, i))
                return args
        elif c == "," and depth == 1:
            args.append((start, i))
            start = i + 1
        elif c == ";" and depth <= 1:
            return None
        i += 1
    return None


def close_paren(masked, open_paren):
    args = split_args(masked, open_paren)
    return None if args is None else args[-1][1]


def line_of(text, offset):
    return text.count("\n", 0, offset) + 1


class Site:
    """One string literal in a reason position."""

    def __init__(self, path, start, end, reason, code):
        self.path, self.start, self.end, self.reason, self.code = path, start, end, reason, code
        self.span = None  # for a constant: the declaration's type, name and value


def production_files(root):
    for top in PRODUCTION_DIRS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, top)):
            dirnames.sort()
            for name in sorted(filenames):
                if name.endswith(SOURCE_SUFFIXES):
                    path = os.path.join(dirpath, name)
                    rel = os.path.relpath(path, root)
                    if rel not in SKIP_FILES:
                        yield rel


CONSTANT_RE = re.compile(r'\b(?:inline\s+)?constexpr\s+((?:char\s+(k\w+)\s*\[\])|'
                         r'(?:std::string_view\s+(k\w+)))\s*=\s*"([A-Z][A-Z0-9_]*)"')
PARAM_LIST_RE = re.compile(r"\b([A-Za-z_]\w*)\s*\(([^()]*)\)\s*(?:const\s*)?(\{|;)")
REASON_PARAM_RE = re.compile(r"(?:std::)?string_view\s+reason$|std::string\s*&\s*reason$|"
                             r"char\s*\*\s*reason$")


def find_reason_functions(masked_files):
    """Returns {function name: (reason arg index, fixed code or None)}.

    A function whose parameter named `reason` is a string takes a reason. When
    its body returns Error(<code>, reason, ...) the code is fixed by the helper.
    """
    functions = {}
    for masked in masked_files.values():
        for m in PARAM_LIST_RE.finditer(masked):
            name = m.group(1)
            params = [" ".join(p.split()) for p in m.group(2).split(",")]
            for index, param in enumerate(params):
                param = param.replace("const ", "")
                if REASON_PARAM_RE.search(param):
                    code = None
                    if m.group(3) == "{":
                        body = masked[m.end():m.end() + 400]
                        b = re.search(r"Error\(\s*(?:absl::)?StatusCode::(k\w+)\s*,\s*reason\s*,",
                                      body)
                        if b:
                            code = b.group(1)
                    old = functions.get(name)
                    if old is None or (old[1] is None and code is not None):
                        functions[name] = (index, code)
    return functions


def literals_in(masked, start, end):
    for m in LITERAL_RE.finditer(masked, start, end):
        yield m.start(), m.end(), m.group(1)


def find_sites(path, masked, functions):
    sites = []
    seen = set()

    def add(start, end, reason, code):
        if start not in seen:
            seen.add(start)
            sites.append(Site(path, start, end, reason, code))

    # Calls of reason-taking functions.
    for name, (index, fixed_code) in functions.items():
        for m in re.finditer(r"(?<![\w.])(?:\w+::)*" + re.escape(name) + r"\s*\(", masked):
            args = split_args(masked, m.end() - 1)
            if args is None or len(args) <= index:
                continue
            code = fixed_code
            if name == "Error" and index == 1:
                cm = STATUS_CODE_RE.match(masked[args[0][0]:args[0][1]])
                code = cm.group(1) if cm else None
            a, b = args[index]
            for s, e, reason in literals_in(masked, a, b):
                add(s, e, reason, code)
    # Assignments to a variable named *reason.
    for m in re.finditer(r"\b\w*reason\s*=(?!=)\s*", masked):
        end = masked.find(";", m.end())
        for s, e, reason in literals_in(masked, m.end(), end if end >= 0 else len(masked)):
            add(s, e, reason, None)
    # Comparisons with ReasonOf(...), x.reason() or a *reason variable.
    subjects = []
    for m in re.finditer(r"\bReasonOf\s*\(|\.reason\s*\(", masked):
        cp = close_paren(masked, m.end() - 1)
        if cp is not None:
            subjects.append((m.start(), cp + 1))
    for m in re.finditer(r"\b\w*reason\b(?!\s*\()", masked):
        subjects.append((m.start(), m.end()))
    for s0, e0 in subjects:
        after = re.compile(r'\s*[!=]=\s*"([A-Z][A-Z0-9_]*)"').match(masked, e0)
        if after:
            add(after.start(1) - 1, after.end(1) + 1, after.group(1), None)
        before = re.compile(r'"([A-Z][A-Z0-9_]*)"\s*[!=]=\s*$').search(masked, max(0, s0 - 80),
                                                                       s0)
        if before:
            add(before.start(1) - 1, before.end(1) + 1, before.group(1), None)
    # Constants that repeat a reason: kFooBar[] = "FOO_BAR" becomes an alias of
    # reason::kFooBar (the whole type and value are replaced, see Site.span).
    for m in CONSTANT_RE.finditer(masked):
        name = m.group(2) or m.group(3)
        if name == constant_name(m.group(4)) and m.start(4) - 1 not in seen:
            seen.add(m.start(4) - 1)
            site = Site(path, m.start(4) - 1, m.end(4) + 1, m.group(4), None)
            site.span = (m.start(1), m.end(4) + 1)
            sites.append(site)
    return [s for s in sites if REASON_RE.fullmatch(s.reason)]


def declared_reasons(root):
    with open(os.path.join(root, REASONS_INC), encoding="utf-8") as f:
        return set(DECLARED_RE.findall(f.read()))


def add_include(rel, text):
    """Adds #include "common/reasons.h" among the file's project includes, in order."""
    line = '#include "common/reasons.h"\n'
    if line in text:
        return text
    includes = list(re.finditer(r'^#include "([^"]+)"\n', text, re.M))
    own_header = rel[:-3] + ".h" if rel.endswith(".cc") else None
    others = [m for m in includes if m.group(1) != own_header]
    if others:
        for m in others:
            if m.group(1) > "common/reasons.h":
                return text[:m.start()] + line + text[m.start():]
        return text[:others[-1].end()] + line + text[others[-1].end():]
    # No project include but the own header: a block of its own after the
    # last include, or after the include guard.
    anchors = list(re.finditer(r"^#include [<\"][^>\"]+[>\"]\n", text, re.M))
    if anchors:
        pos = anchors[-1].end()
    else:
        guard = re.search(r"^#define \w+_H_\n", text, re.M)
        pos = guard.end() if guard else 0
    return text[:pos] + "\n" + line + text[pos:]


def namespace_prefix(text):
    return "reason::" if re.search(r"^namespace hsmsim\b", text, re.M) else "hsmsim::reason::"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.path.join(os.path.dirname(__file__), "..", ".."))
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--no-format", action="store_true",
                        help="do not run clang-format on the files changed")
    args = parser.parse_args()
    root = os.path.abspath(args.root)

    declared = declared_reasons(root)
    texts = {}
    for rel in production_files(root):
        with open(os.path.join(root, rel), encoding="utf-8") as f:
            texts[rel] = f.read()
    masked = {rel: mask(t) for rel, t in texts.items()}
    functions = find_reason_functions(masked)

    undeclared = []
    changed = []
    for rel, text in texts.items():
        sites = find_sites(rel, masked[rel], functions)
        if args.list:
            for s in sorted(sites, key=lambda s: s.start):
                print(f"{rel}:{line_of(text, s.start)} {s.reason} {s.code or '-'}")
        replace = []
        for s in sites:
            if s.reason in declared:
                replace.append(s)
            else:
                undeclared.append(f"{rel}:{line_of(text, s.start)}: {s.reason}")
        if not replace:
            continue
        prefix = namespace_prefix(text)
        new = text
        for s in sorted(replace, key=lambda s: s.start, reverse=True):
            constant = prefix + constant_name(s.reason)
            if s.span:
                new = (new[:s.span[0]] + "std::string_view " + constant_name(s.reason) + " = " +
                       constant + new[s.span[1]:])
            else:
                new = new[:s.start] + constant + new[s.end:]
        new = add_include(rel, new)
        if new != text:
            changed.append(rel)
            if not args.check:
                with open(os.path.join(root, rel), "w", encoding="utf-8") as f:
                    f.write(new)

    for rel in changed:
        print(("would change " if args.check else "changed ") + rel, file=sys.stderr)
    # A constant is longer than its literal: re-wrap the lines that grew.
    formatter = shutil.which("clang-format")
    if changed and not args.check and formatter and not args.no_format:
        subprocess.run([formatter, "-i"] + changed, cwd=root, check=True)
    for u in undeclared:
        print(f"{u}: not declared in {REASONS_INC}; declare it with its exit class",
              file=sys.stderr)
    return 1 if undeclared or (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
