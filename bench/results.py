"""bench/RESULTS.md is shared: bench/run.py writes the peer comparison, every other script owns one
`## ` section. Each writer replaces only what it owns and keeps the rest."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def split_sections(text: str) -> tuple[str, list[str]]:
    """(everything before the first `## ` heading, each `## ` section with its heading)."""
    parts = ("\n" + text).split("\n## ")
    head = parts[0].lstrip("\n")
    return head, ["## " + part.rstrip() + "\n" for part in parts[1:]]


def section(marker: str) -> str | None:
    """The current text of the section whose heading starts with ``marker``, if any."""
    _, found = split_sections(RESULTS.read_text() if RESULTS.exists() else "")
    return next((s for s in found if s.startswith(marker)), None)


def write_section(marker: str, text: str) -> None:
    """Replace the section whose heading starts with ``marker`` (or add it at the end)."""
    head, found = split_sections(RESULTS.read_text() if RESULTS.exists() else "")
    new = text.rstrip() + "\n"

    def owned(s: str) -> bool:  # the heading itself when one matches exactly: "## Web console" must not also
        heading = s.split("\n", 1)[0]  # take "## Web console: catalog pages"
        exact = any(x.split("\n", 1)[0] == marker for x in found)
        return heading == marker if exact else s.startswith(marker)

    replaced = [new if owned(s) else s for s in found]
    if not any(owned(s) for s in found):
        replaced.append(new)
    RESULTS.write_text((head.rstrip() + "\n\n" if head.strip() else "") + "\n".join(replaced))


def keep_others(report: str, own_headings: tuple[str, ...]) -> str:
    """``report`` (a whole file's worth) followed by the sections of the current file it does not own."""
    _, found = split_sections(RESULTS.read_text() if RESULTS.exists() else "")
    others = [s for s in found if not s.startswith(own_headings)]
    return report.rstrip() + "\n" + ("\n" + "\n".join(others) if others else "")
