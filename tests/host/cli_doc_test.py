#!/usr/bin/python3
"""docs/cli.md says what `--help` says, for every command.

Walks every command and subcommand of hsmctl as its `--help` lists them (so
a new command without a section in docs/cli.md fails here), and
hsmsim-unit, and checks each against docs/cli.md as the convention at the
top of docs/cli.md ("How this page lists options") defines it:

- the command has a section (a `###` heading naming it in backticks, and
  each of its positional arguments by the name `--help` gives it);
- the long options its `--help` lists (but `--help`) are exactly the options
  of its section's `Options:` list;
- each default `--help` shows (`--timeout-ms INT=10000`) is the default the
  list states (`(default 10000)`, or the common default of the option), and
  the list states no default that `--help` does not show;
- `--help` ends with the program's exit codes, the same lines as a fenced
  block of docs/cli.md.

Usage: cli_doc_test.py --hsmctl PATH --unit PATH --doc docs/cli.md
       cli_doc_test.py --self-test   (the checks themselves, on made-up text)
Prints one line per difference, naming the command and the option, and
exits 1 when there is any.
"""

import argparse
import re
import subprocess
import sys
import unittest

# CLI11 prints an option's names and value text in the first 30 columns and
# the description after them, or on the next line, indented by 30.
HELP_COLUMN = 30
FOOTER_START = "Exit codes:"
DOC_COMMAND_PROGRAMS = ("hsmctl", "hsmsim-unit")


class Help:
    """What one `--help` says: subcommands, positional arguments (names, in
    order), options (long name -> default or None) and the footer (from
    "Exit codes:" to the end)."""

    def __init__(self, text):
        self.subcommands = []
        self.positionals = []
        self.options = {}
        self.footer = ""
        lines = text.splitlines()
        section = None
        for i, line in enumerate(lines):
            if line.startswith(FOOTER_START):
                self.footer = "\n".join(lines[i:]).rstrip("\n")
                break
            if line and not line.startswith(" "):
                section = line.rstrip(":") if line.endswith(":") else None
                continue
            if section == "Subcommands" and line.strip():
                self.subcommands.append(line.split()[0])
            elif section == "Positionals" and line.startswith("  ") and line[2:3] != " ":
                self.positionals.append(line.split()[0])
            elif section == "Options" and line.startswith("  -"):
                following = lines[i + 1] if i + 1 < len(lines) else ""
                self._add_option(line, following)

    def _add_option(self, line, following):
        if len(line) > HELP_COLUMN and not following.startswith(" " * HELP_COLUMN):
            head = line[:HELP_COLUMN]
        else:
            head = line
        head = head.strip()
        names, _, opts = head.partition(" ")
        longs = [n for n in names.split(",") if n.startswith("--")]
        if not longs or longs == ["--help"]:
            return
        # The value text is "TYPE[:CHECK][=DEFAULT][ ...][ REQUIRED]..."; a
        # default follows the first '='.
        default = None
        match = re.search(r"=(\S+)", opts)
        if match:
            default = match.group(1)
        self.options[longs[0]] = default


def split_top_level(text, separators):
    """Splits `text` at the characters of `separators` that are outside
    backticks and parentheses; returns (parts, rest) where rest is the text
    after the first top-level full stop (". " or a final ".")."""
    parts, current, depth, in_code = [], "", 0, False
    for i, c in enumerate(text):
        if c == "`":
            in_code = not in_code
        elif not in_code and c == "(":
            depth += 1
        elif not in_code and c == ")":
            depth = max(0, depth - 1)
        elif not in_code and depth == 0:
            if c == "." and (i + 1 == len(text) or text[i + 1].isspace()):
                parts.append(current)
                return parts, text[i + 1:]
            if c in separators:
                parts.append(current)
                current = ""
                continue
        current += c
    parts.append(current)
    return parts, ""


class DocOption:
    def __init__(self, name, default, line):
        self.name = name
        self.default = default  # None: the list states no default
        self.line = line


class DocSection:
    """One `###` section of docs/cli.md: the commands its heading names and
    its `Options:` list."""

    def __init__(self, heading, line):
        self.heading = heading
        self.line = line
        self.commands = commands_of_heading(heading)
        # The words of the heading (NAME, FILE|URI..., [N] -> NAME, FILE,
        # URI, N): where the positional arguments are named.
        self.words = set(re.findall(r"[A-Za-z0-9-]+", heading))
        self.options = None  # name -> DocOption; None: no "Options:" list
        self.problems = []
        self.body = []

    def finish(self):
        text = "\n".join(self.body)
        at = text.find("Options:")
        if at < 0:
            return
        first_line = self.line + 1 + text[:at].count("\n")
        listed = " ".join(text[at + len("Options:"):].split())
        self.options = {}
        if listed.startswith("none."):
            return
        items, _ = split_top_level(listed, ",")
        for item in items:
            item = item.strip()
            match = re.match(r"`(--[a-z0-9-]+)[^`]*`\s*(\((.*)\))?$", item)
            if not match:
                self.problems.append(
                    f"docs/cli.md:{first_line}: {self.heading}: Options list item "
                    f"'{item}' is not `--name VALUE` (NOTE)")
                continue
            self.options[match.group(1)] = DocOption(
                match.group(1), default_of_note(match.group(3) or ""), first_line)


def default_of_note(note):
    """The default a note states ("default 2048, 1..100000" -> "2048";
    "default `default`" -> "default"), "" when it says "default" without a
    value, None when it says none."""
    if not re.search(r"\bdefault\b", note):
        return None
    match = re.search(r"\bdefault\s+(`[^`]*`|[^\s,;)]+)", note)
    if not match:
        return ""
    return match.group(1).strip("`")


def commands_of_heading(heading):
    """`hsmctl mk setimm` / `mk clrnew` -> ["hsmctl mk setimm", "hsmctl mk
    clrnew"]; [] for a heading that names no command."""
    spans = re.findall(r"`([^`]+)`", heading)
    if not spans:
        return []
    program = spans[0].split()[0]
    if program not in DOC_COMMAND_PROGRAMS:
        return []
    commands = []
    for span in spans:
        words = span.split()
        if words[0] != program:
            words = [program] + words
        command = [words[0]]
        for word in words[1:]:
            if not re.fullmatch(r"[a-z][a-z0-9-]*", word):
                break
            command.append(word)
        commands.append(" ".join(command))
    return commands


class Doc:
    """docs/cli.md: its command sections, its common options (the
    `Options:` list of the section "Options common to many commands") and
    its fenced blocks."""

    def __init__(self, text):
        self.sections = []
        self.common = {}
        self.fenced = []
        current = None
        fence = None
        for number, line in enumerate(text.splitlines(), start=1):
            if line.startswith("```"):
                if fence is None:
                    fence = []
                else:
                    self.fenced.append("\n".join(fence))
                    fence = None
                continue
            if fence is not None:
                fence.append(line)
            if line.startswith("#"):
                if current is not None:
                    current.finish()
                current = DocSection(line.lstrip("#").strip(), number) if line.startswith(
                    "### ") else None
                if current is not None:
                    self.sections.append(current)
                continue
            if current is not None and fence is None:
                current.body.append(line)
        if current is not None:
            current.finish()
        for section in self.sections:
            if section.heading == "Options common to many commands" and section.options:
                self.common = section.options

    def section_of(self, command):
        for section in self.sections:
            if command in section.commands:
                return section
        return None


def compare_command(command, help_, doc):
    """Returns the differences between one command's --help and docs/cli.md,
    one line each, naming the command and the option."""
    section = doc.section_of(command)
    if section is None:
        return [f"{command}: no section in docs/cli.md (a heading ### `{command} ...`); "
                f"--help lists {', '.join(sorted(help_.options)) or 'no option'}"]
    problems = list(section.problems)
    where = f"docs/cli.md:{section.line} ({section.heading})"
    if section.options is None:
        return problems + [f"{command}: {where} has no 'Options:' list; --help lists "
                           f"{', '.join(sorted(help_.options)) or 'no option (write Options: none.)'}"]
    for name in sorted(set(help_.options) - set(section.options)):
        problems.append(f"{command}: option {name} is in --help but not in the Options list "
                        f"of {where}")
    for name in sorted(set(section.options) - set(help_.options)):
        problems.append(f"{command}: option {name} is in the Options list of {where} but "
                        f"not in --help")
    for name in help_.positionals:
        if name not in section.words:
            problems.append(f"{command}: argument {name} of --help is not named in the heading "
                            f"of {where}")
    for name in sorted(set(help_.options) & set(section.options)):
        shown = help_.options[name]
        stated = section.options[name].default
        if stated is None and name in doc.common:
            stated = doc.common[name].default
        if stated == "":
            problems.append(f"{command}: option {name}: {where} says 'default' without a value "
                            f"(write 'default V' as --help shows it, or 'else ...')")
        elif shown != stated:
            problems.append(
                f"{command}: option {name}: --help shows default {shown or '(none)'} but "
                f"{where} states {stated or 'none'}")
    return problems


def compare_footer(program, help_, doc):
    if not help_.footer:
        return [f"{program}: --help does not end with its exit codes ('{FOOTER_START}')"]
    if help_.footer not in doc.fenced:
        return [f"{program}: docs/cli.md has no fenced block equal to the exit codes --help "
                f"prints:\n{help_.footer}"]
    return []


def run_help(argv):
    result = subprocess.run(argv + ["--help"], capture_output=True, text=True, timeout=60,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} --help exited {result.returncode}: "
                           f"{result.stderr}")
    return Help(result.stdout + result.stderr)


def check_all(hsmctl, unit, doc):
    """Returns (commands checked, differences)."""
    problems, checked = [], 0
    footer = None
    pending = [[]]
    while pending:
        words = pending.pop(0)
        help_ = run_help([hsmctl] + words)
        command = " ".join(["hsmctl"] + words)
        pending.extend(words + [s] for s in help_.subcommands)
        checked += 1
        if footer is None:
            problems += compare_footer("hsmctl", help_, doc)
            footer = help_.footer
        elif help_.footer != footer:
            problems.append(f"{command}: --help ends with other exit codes than hsmctl --help")
        # A group of subcommands with no option of its own needs no section.
        if help_.subcommands and not help_.options and words:
            continue
        problems += compare_command(command, help_, doc)
    unit_help = run_help([unit])
    checked += 1
    problems += compare_footer("hsmsim-unit", unit_help, doc)
    problems += compare_command("hsmsim-unit", unit_help, doc)
    return checked, problems


class SelfTest(unittest.TestCase):
    """The checks find what they should, on made-up help and docs."""

    HELP = (
        "Rotate\nUsage: hsmctl mk rotate [OPTIONS] [UNIT]\n\nPositionals:\n"
        "  UNIT TEXT                   A unit\n\nOptions:\n"
        "  -h,--help                   Print this help message and exit\n"
        "  --resume Excludes: --abort\n"
        "                              Continue\n"
        "  --batch-size UINT:INT in [1 - 100000]=2048\n"
        "                              Blobs per batch\n"
        "  --sign TEXT ...             Signers, FILE=PWFILE\n"
        "  --timeout-ms INT:INT in [1 - 3600000]=10000\n"
        "                              Timeout\n\n"
        "Exit codes:\n  0  ok\n  1  refused\n")
    DOC = (
        "### Options common to many commands\n"
        "Options: `--timeout-ms N` (default 10000, 1..3600000).\n\n"
        "### `hsmctl mk rotate [UNIT]`\nRotate (see `--resume`). Options: `--resume`,\n"
        "`--batch-size N` (default 2048, 1..100000), `--sign FILES` (required; signs\n"
        "set immediate), `--timeout-ms N`. Exit 1 when...\n\n"
        "```\nExit codes:\n  0  ok\n  1  refused\n```\n")

    def test_help_is_parsed(self):
        help_ = Help(self.HELP)
        self.assertEqual(help_.options, {"--resume": None, "--batch-size": "2048",
                                         "--sign": None, "--timeout-ms": "10000"})
        self.assertEqual(help_.footer, "Exit codes:\n  0  ok\n  1  refused")

    def test_matching_doc_has_no_difference(self):
        doc = Doc(self.DOC)
        self.assertEqual(compare_command("hsmctl mk rotate", Help(self.HELP), doc), [])
        self.assertEqual(compare_footer("hsmctl", Help(self.HELP), doc), [])

    def test_argument_missing_from_heading_is_named(self):
        self.assertEqual(Help(self.HELP).positionals, ["UNIT"])
        problems = compare_command("hsmctl mk rotate", Help(self.HELP),
                                   Doc(self.DOC.replace(" [UNIT]`", "`")))
        self.assertEqual(len(problems), 1)
        self.assertIn("hsmctl mk rotate: argument UNIT of --help is not named", problems[0])

    def test_option_missing_from_doc_is_named(self):
        help_ = Help(self.HELP.replace("  --sign", "  --dry-run                   Show\n  --sign"))
        problems = compare_command("hsmctl mk rotate", help_, Doc(self.DOC))
        self.assertEqual(len(problems), 1)
        self.assertIn("hsmctl mk rotate: option --dry-run is in --help but not in the Options",
                      problems[0])

    def test_option_only_in_doc_is_named(self):
        doc = Doc(self.DOC.replace("`--resume`,", "`--resume`, `--abort`,"))
        problems = compare_command("hsmctl mk rotate", Help(self.HELP), doc)
        self.assertEqual(len(problems), 1)
        self.assertIn("option --abort is in the Options list", problems[0])

    def test_default_difference_is_named(self):
        doc = Doc(self.DOC.replace("(default 2048,", "(default 1024,"))
        problems = compare_command("hsmctl mk rotate", Help(self.HELP), doc)
        self.assertEqual(len(problems), 1)
        self.assertIn("option --batch-size: --help shows default 2048 but", problems[0])
        self.assertIn("states 1024", problems[0])

    def test_common_default_applies_and_can_differ(self):
        doc = Doc(self.DOC.replace("(default 10000, 1..3600000)", "(default 5000)"))
        problems = compare_command("hsmctl mk rotate", Help(self.HELP), doc)
        self.assertEqual(len(problems), 1)
        self.assertIn("option --timeout-ms: --help shows default 10000", problems[0])

    def test_default_only_in_doc_is_named(self):
        doc = Doc(self.DOC.replace("`--sign FILES` (required;", "`--sign FILES` (default a;"))
        problems = compare_command("hsmctl mk rotate", Help(self.HELP), doc)
        self.assertEqual(len(problems), 1)
        self.assertIn("option --sign: --help shows default (none)", problems[0])

    def test_command_without_section_is_named(self):
        problems = compare_command("hsmctl mk frobnicate", Help(self.HELP), Doc(self.DOC))
        self.assertEqual(len(problems), 1)
        self.assertIn("hsmctl mk frobnicate: no section in docs/cli.md", problems[0])

    def test_footer_difference_is_named(self):
        problems = compare_footer("hsmctl", Help(self.HELP.replace("refused", "failed")),
                                  Doc(self.DOC))
        self.assertEqual(len(problems), 1)
        problems = compare_footer("hsmctl", Help(self.HELP.split("Exit codes:")[0]),
                                  Doc(self.DOC))
        self.assertIn("does not end with its exit codes", problems[0])

    def test_heading_names_several_commands(self):
        self.assertEqual(commands_of_heading("`hsmctl mk setimm` / `mk clrnew`"),
                         ["hsmctl mk setimm", "hsmctl mk clrnew"])
        self.assertEqual(commands_of_heading("`hsmctl keys create --count N [--prefix P]`"),
                         ["hsmctl keys create"])
        self.assertEqual(commands_of_heading("`hsmctl fault inject UNIT POINT ACTION [N]`"),
                         ["hsmctl fault inject"])
        self.assertEqual(commands_of_heading("A unit is known by its unit id"), [])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hsmctl")
    parser.add_argument("--unit")
    parser.add_argument("--doc")
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args()
    if args.self_test:
        unittest.main(argv=[sys.argv[0]], verbosity=2)
        return 0
    with open(args.doc, encoding="utf-8") as f:
        doc = Doc(f.read())
    checked, problems = check_all(args.hsmctl, args.unit, doc)
    for problem in problems:
        print(problem)
    print(f"checked the --help of {checked} commands against {args.doc}: "
          f"{len(problems)} difference(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
