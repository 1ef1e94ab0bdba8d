"""DuckDB's pattern matching as PostgreSQL must read it (engines.meaning_postgres): ``LIKE`` without an escape
character, ``ILIKE`` folding every letter, and RE2 regular expressions (DuckDB's) written as the PostgreSQL ARE
that matches the same text — or refused at load when there is none."""

from __future__ import annotations

from typing import Any

from kiban.engines.refusal import Refused


def _groups(pattern: str) -> int:
    """The capture groups of a regular expression: ``(`` not escaped, not in a class, not ``(?…``."""
    count, escaped, in_class = 0, False, False
    for k, char in enumerate(pattern):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        elif char == "(" and not in_class and pattern[k + 1:k + 2] != "?":
            count += 1
    return count


def regexp_extract(node: Any) -> Any:
    """``regexp_extract(s, p, g)``: the group's text, '' when nothing matched (or the group does not exist), NULL
    when s or p is NULL. PostgreSQL's ``regexp_substr`` gives NULL for no match and the whole match for a group
    the pattern lacks."""
    from sqlglot import exp

    group = node.args.get("group") or exp.Literal.number(0)
    pattern = regex(node.expression, node)
    found: Any = exp.Coalesce(this=exp.Anonymous(this="regexp_substr", expressions=[
        node.this.copy(), pattern.copy(), exp.Literal.number(1), exp.Literal.number(1), exp.Literal.string(""),
        group.copy()]), expressions=[exp.Literal.string("")])
    if isinstance(pattern, exp.Literal) and pattern.is_string and isinstance(group, exp.Literal) \
            and group.is_int and int(group.name) > _groups(pattern.name):
        found = exp.Literal.string("")
    missing = exp.or_(exp.Is(this=node.this.copy(), expression=exp.Null()),
                      exp.Is(this=pattern.copy(), expression=exp.Null()))
    return exp.Case(ifs=[exp.If(this=missing, true=exp.Null())], default=found)


def like(node: Any) -> Any:
    """``LIKE`` without ``ESCAPE``: DuckDB has no escape character (``'a\\b' like 'a\\b'``), PostgreSQL's is the
    backslash → ``ESCAPE ''``. ``ILIKE`` folds case in the database's collation (``COLLATE "C"`` folds ASCII
    only)."""
    from sqlglot import exp

    like = node.copy()
    if isinstance(node, exp.ILike):
        def folded(side: Any) -> Any:
            collated = exp.Collate(this=side.copy(), expression=exp.Identifier(this="default", quoted=True))
            return exp.Lower(this=collated)
        like = exp.Like(this=folded(node.this), expression=folded(node.expression))
        if node.args.get("negate"):
            like.set("negate", True)
        if isinstance(node.parent, exp.Escape):  # lower() of the escape character too: it is compared folded
            escape = node.parent.expression
            node.parent.set("expression", exp.Lower(this=escape.copy()))
    if isinstance(node.parent, exp.Escape):
        return like
    return exp.Escape(this=like, expression=exp.Literal.string(""))


_WORD = "0-9A-Za-z_"
_BOUNDARY = f"(?:(?<=[{_WORD}])(?![{_WORD}])|(?<![{_WORD}])(?=[{_WORD}]))"
_NOT_BOUNDARY = f"(?:(?<=[{_WORD}])(?=[{_WORD}])|(?<![{_WORD}])(?![{_WORD}]))"
_ESCAPES = {"w": _WORD, "W": _WORD, "d": "0-9", "D": "0-9", "s": "\\t\\n\\f\\r ", "S": "\\t\\n\\f\\r "}
_POSIX = {"alpha": "A-Za-z", "digit": "0-9", "alnum": "0-9A-Za-z", "upper": "A-Z", "lower": "a-z",
          "space": "\\t\\n\\v\\f\\r ", "xdigit": "0-9A-Fa-f", "word": _WORD, "blank": "\\t "}


def wants_dot_all(flags: Any) -> bool:
    """Whether DuckDB's regex options make ``.`` match a newline (``'s'``); unknown options: assume not."""
    from sqlglot import exp

    return isinstance(flags, exp.Literal) and flags.is_string and "s" in flags.name


def regex(pattern: Any, node: Any, dot_all: bool = False) -> Any:
    """A literal RE2 pattern (DuckDB's) as a PostgreSQL ARE that matches the same text; raises Refused for what
    has no ARE equivalent. A pattern that is not a literal is written through (it cannot be read at load)."""
    from sqlglot import exp

    if not (isinstance(pattern, exp.Literal) and pattern.is_string):
        return pattern.copy()
    text = pattern.name
    out: list[str] = []
    in_class = False
    k = 0
    while k < len(text):
        char = text[k]
        if char == "\\" and k + 1 < len(text):
            nxt = text[k + 1]
            if nxt in "pPQECGKX" or text[k + 1:k + 3] == "x{":
                raise Refused(f"the regular expression '{text}' (\\{nxt})", "PostgreSQL's regular expressions "
                              "have no such escape: write the characters out, e.g. [a-zA-Z] for \\pL", node)
            if not in_class and nxt in "bBz":  # RE2's word boundary (ASCII words) and end of text
                out.append({"b": _BOUNDARY, "B": _NOT_BOUNDARY, "z": "\\Z"}[nxt])
            elif nxt in _ESCAPES and (not in_class or nxt.islower()):  # RE2's \w \d \s are ASCII only
                body = _ESCAPES[nxt]
                out.append(body if in_class else f"[{body}]" if nxt.islower() else f"[^{body}]")
            elif nxt in _ESCAPES:
                raise Refused(f"the regular expression '{text}' (\\{nxt} in [])", "write the class out", node)
            else:
                out.append(char + nxt)
            k += 2
            continue
        if in_class:
            if text.startswith("[:", k):  # a POSIX class inside a bracket expression: ASCII in RE2
                end = text.find(":]", k + 2)
                name = text[k + 2:end] if end >= 0 else ""
                if name not in _POSIX:
                    raise Refused(f"the regular expression '{text}' ([:{name}:])", "write the class out: "
                                  "RE2's classes hold ASCII characters only", node)
                out.append(_POSIX[name])
                k = end + 2
                continue
            if char == "]":
                in_class = False
            out.append(char)
            k += 1
            continue
        if char == "[":
            in_class = True
            start = k + 1 + (text[k + 1:k + 2] == "^")
            lead = text[k:start + 1] if text[start:start + 1] == "]" else text[k:start]  # []…] holds a ]
            out.append(lead)
            k += len(lead)
            continue
        if char == "(" and text[k + 1:k + 2] == "?" and text[k + 2:k + 3] != ":" \
                and not (k == 0 and text.startswith("(?i)")):
            raise Refused(f"the regular expression '{text}' ({text[k:k + 4]}…)", "PostgreSQL takes only "
                              "(?i) at the start and (?:…) groups: write flags as the function's options", node)
        if char == "." and not dot_all:  # RE2's . never matches a newline; PostgreSQL's does
            out.append("[^\\n]")
            k += 1
            continue
        out.append(char)
        k += 1
    return exp.Literal.string("".join(out))


def replacement(text: str) -> str:
    """RE2's replacement text (``\\0`` the whole match) as PostgreSQL's (``\\&``)."""
    out, k = [], 0
    while k < len(text):
        if text[k] == "\\" and k + 1 < len(text):
            out.append("\\&" if text[k + 1] == "0" else text[k:k + 2])
            k += 2
        else:
            out.append(text[k])
            k += 1
    return "".join(out)
