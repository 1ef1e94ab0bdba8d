"""Codemod: one assertion per fact. ``assert A and B and C, msg`` becomes ``assert A, msg`` / ``assert B, msg`` /
``assert C, msg``.

The rewrite keeps the meaning: ``and`` stops at the first false operand exactly as a run of asserts stops at the
first that fails, and the message is evaluated only for the assert that fails, as before. Only an assert whose
test is an ``and`` at the top level is split (``assert (a and b) and c`` is flattened into three); an ``and``
inside a call, a comprehension, ``not (...)`` or an ``or`` is left alone. The indentation, the text of each operand
and of the message (line breaks inside brackets included) and a trailing comment (kept on the last assert) stay as
they were; each new statement is checked to parse to the very operand it came from.

Skipped, and counted, where a safe textual rewrite is not certain: an assert that shares its line with other code
(``if x: assert a and b``, ``a; assert b and c``) or whose lines hold a comment between operands.

Idempotent: a second run changes nothing. Run it over the tests after merging branches that add asserts::

    python -m tests.helpers.split_asserts tests           # rewrite in place, then report
    python -m tests.helpers.split_asserts --check tests   # report only; exit 1 if anything is left to split

(``python tests/helpers/split_asserts.py tests`` works too: the module imports only the standard library.)
"""

from __future__ import annotations

import argparse
import ast
import io
import sys
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Outcome:
    """What one file's rewrite did: the new text, how many asserts were split, and the ones skipped (line, why)."""

    text: str
    split: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)


def _is_and(node: ast.expr) -> bool:
    return isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And)


def _operands(node: ast.expr) -> Iterator[ast.expr]:
    """The operands of a top-level ``and``, nested ``(a and b) and c`` flattened."""
    if _is_and(node):
        assert isinstance(node, ast.BoolOp)
        for value in node.values:
            yield from _operands(value)
    else:
        yield node


def _joined(tree: ast.AST) -> Iterator[ast.Assert]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert) and _is_and(node.test):
            yield node


def joined_asserts(source: str) -> list[int]:
    """Line numbers of the asserts whose test is a top-level ``and`` (what the codemod splits)."""
    return sorted(node.lineno for node in _joined(ast.parse(source)))


def _comments(source: str) -> list[tuple[int, int]]:
    """(line, column in characters) of every comment."""
    try:
        return [tok.start for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT]
    except (tokenize.TokenError, SyntaxError):  # the source parsed with ast, so this does not happen
        return []


def _char_col(line: str, byte_col: int) -> int:
    """ast's column offsets count UTF-8 bytes; string slicing counts characters."""
    return len(line.encode("utf-8")[:byte_col].decode("utf-8"))


def _multiline_string(segment: str) -> bool:
    try:
        return any(tok.type == tokenize.STRING and tok.start[0] != tok.end[0]
                   for tok in tokenize.generate_tokens(io.StringIO(segment).readline))
    except (tokenize.TokenError, SyntaxError):
        return True  # not sure: leave the continuation lines as they are


def _moved(segment: str, shift: int) -> str:
    """``segment`` with its continuation lines moved ``shift`` columns, as its first line moves (they stay aligned
    with it); left as it is where a line holds too little indentation or a string spans lines."""
    first, *rest = segment.split("\n")
    if not rest or shift == 0 or _multiline_string(segment):
        return segment
    if shift < 0 and any(line.strip() and len(line) - len(line.lstrip(" ")) < -shift for line in rest):
        return segment
    moved = [(" " * shift + line if shift > 0 else line[-shift:]) if line.strip() else line for line in rest]
    return "\n".join([first, *moved])


def _statement(source: str, value: ast.expr, message: str | None, columns: tuple[int, int]) -> str | None:
    """``assert <value>[, message]`` in the operand's own text (parenthesised where it must be), or None if no
    text parses back to the same operand. ``columns``: where the operand started, and where the new assert starts."""
    segment = ast.get_source_segment(source, value)
    if segment is None:
        return None
    want = ast.dump(value)
    start, indent = columns
    for opening, closing in (("", ""), ("(", ")")):
        text = opening + _moved(segment, indent + len("assert ") + len(opening) - start) + closing
        line = f"assert {text}" + (f", {message}" if message is not None else "")
        try:
            parsed = ast.parse(line)
        except SyntaxError:
            continue
        stmt = parsed.body[0]
        if isinstance(stmt, ast.Assert) and ast.dump(stmt.test) == want:
            return line
    return None


def _spans(source: str, lines: list[str], nodes: list[ast.expr]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    spans = []
    for node in nodes:
        assert node.end_lineno is not None
        assert node.end_col_offset is not None
        start = (node.lineno, _char_col(lines[node.lineno - 1], node.col_offset))
        end = (node.end_lineno, _char_col(lines[node.end_lineno - 1], node.end_col_offset))
        spans.append((start, end))
    return spans


def split_source(source: str, line_length: int = 120) -> Outcome:
    """Split every top-level ``assert a and b`` of ``source`` that can be split safely (no line made longer than
    ``line_length`` that was not already)."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    comments = _comments(source)
    outcome = Outcome(source)
    edits: list[tuple[int, int, list[str]]] = []  # (first line, last line) replaced by new lines (1-based)
    for node in sorted(_joined(tree), key=lambda n: n.lineno):
        assert node.end_lineno is not None
        assert node.end_col_offset is not None
        first, last = lines[node.lineno - 1], lines[node.end_lineno - 1]
        start_col = _char_col(first, node.col_offset)
        end_col = _char_col(last, node.end_col_offset)
        indent = first[:start_col]
        if indent.strip():
            outcome.skipped.append((node.lineno, "shares its line with code before it"))
            continue
        tail = last[end_col:].rstrip("\r\n")
        if tail.strip() and not tail.lstrip().startswith("#"):
            outcome.skipped.append((node.lineno, "shares its line with code after it"))
            continue
        operands = list(_operands(node.test))
        inside = _spans(source, lines, [*operands, *([node.msg] if node.msg is not None else [])])
        stray = [c for c in comments
                 if (node.lineno, start_col) <= c < (node.end_lineno, end_col)
                 and not any(s <= c < e for s, e in inside)]
        if stray:
            outcome.skipped.append((node.lineno, "a comment between its operands"))
            continue
        message = ast.get_source_segment(source, node.msg) if node.msg is not None else None
        if message is not None and not ast.get_source_segment(source, node.msg):
            outcome.skipped.append((node.lineno, "its message's text is not found"))
            continue
        statements = [_statement(source, operand, message, (start[1], len(indent)))
                       for operand, (start, _end) in zip(operands, inside, strict=False)]
        if any(s is None for s in statements):
            outcome.skipped.append((node.lineno, "an operand that does not parse on its own"))
            continue
        new = [indent + s for s in statements if s is not None]
        new[-1] += tail
        longest = max(len(line) for line in "\n".join(new).split("\n"))
        if longest > line_length >= max(len(line.rstrip("\r\n")) for line in lines[node.lineno - 1:node.end_lineno]):
            outcome.skipped.append((node.lineno, f"a line would grow past {line_length} characters"))
            continue
        ending = "\n" if last.endswith("\n") else ""
        edits.append((node.lineno, node.end_lineno, [line + "\n" for line in new[:-1]] + [new[-1] + ending]))
    for start, end, replacement in reversed(edits):
        lines[start - 1:end] = replacement
    outcome.text = "".join(lines)
    outcome.split = len(edits)
    if edits:
        ast.parse(outcome.text)  # a rewrite that does not parse is a bug here: fail loudly, write nothing
    return outcome


def _files(paths: list[str]) -> Iterator[Path]:
    for name in paths:
        path = Path(name)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*.py") if p.is_file())
        elif path.suffix == ".py":
            yield path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.helpers.split_asserts", description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="*", default=["tests"], help="files or folders (default: tests)")
    parser.add_argument("--check", action="store_true", help="report only; exit 1 if an assert is left to split")
    parser.add_argument("--line-length", type=int, default=120, help="the longest line to write (default: 120, ruff's)")
    args = parser.parse_args(argv)
    changed = split = 0
    skipped: list[str] = []
    for path in _files(args.paths):
        source = path.read_text(encoding="utf-8")
        outcome = split_source(source, args.line_length)
        skipped += [f"{path}:{line}: {why}" for line, why in outcome.skipped]
        if outcome.split:
            split += outcome.split
            changed += 1
            if not args.check:
                path.write_text(outcome.text, encoding="utf-8")
    verb = "to split" if args.check else "split"
    print(f"{split} asserts {verb} in {changed} files; {len(skipped)} skipped (split those by hand)")
    for line in skipped:
        print(f"  skipped {line}")
    return 1 if args.check and (split or skipped) else 0


if __name__ == "__main__":
    sys.exit(main())
