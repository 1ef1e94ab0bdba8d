"""Text files read in blocks: opening (gzip too), landing identity, encodings and their detection.

Blocks are cut at newline boundaries, which is safe for every encoding kiban reads (UTF-8, CP932,
EUC-JP): the byte 0x0A never occurs inside a multi-byte character of any of them, and neither do the
ASCII delimiters and quote characters. A cut is moved back when it would split a quoted value that
spans lines, so a block always holds whole records.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import numpy as np

from kiban.collect.connector import LandedFile, ReadContext
from kiban.collect.spec import SOURCE_FILE, SOURCE_LINE

BLOCK_BYTES = 8 << 20  # raw bytes per block: bounds memory, large enough for the parsers to be fast
SAMPLE_BYTES = 256 << 10  # what encoding detection decodes
# encodings by the names people write in sources/*.yml → Python's codec names
ENCODINGS = {
    "utf-8": "utf-8", "utf8": "utf-8", "utf-8-sig": "utf-8-sig", "utf8-sig": "utf-8-sig",
    # Files labelled Shift_JIS are in practice Windows' CP932 (NEC and IBM extensions such as ① and ㈱),
    # a superset of strict Shift_JIS: decoding them as CP932 loses nothing.
    "cp932": "cp932", "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "windows-31j": "cp932",
    "ms932": "cp932",
    "euc-jp": "euc_jp", "euc_jp": "euc_jp", "eucjp": "euc_jp",
}
DETECT_ORDER = ("utf-8", "cp932", "euc_jp")
# Python's cp932 codec maps the single bytes 0x80, 0xA0 and 0xFD-0xFF, which are no characters in CP932,
# to U+0080 and U+F8F0-U+F8F3 (as Windows does) instead of failing: kiban refuses them.
_CP932_UNMAPPED = re.compile("[\u0080\uf8f0-\uf8f3]")


@dataclass(frozen=True)
class SourceFile:
    """One matched file: its absolute path, its name as messages show it and its landing identity."""

    path: Path
    name: str  # relative to the project root (posix) where possible
    landed: LandedFile
    stamp: tuple[int, int, int, int] = (0, 0, 0, 0)  # size, last change, mtime, inode when identified (_stamp)


def codec(name: str) -> str:
    """Python's codec for an encoding name from a source file (``auto`` stays ``auto``)."""
    key = name.strip().lower()
    if key == "auto":
        return "auto"
    if key not in ENCODINGS:
        raise ValueError(f"encoding '{name}' is not supported (use utf-8, utf-8-sig, cp932, shift_jis, euc-jp "
                         "or auto)")
    return ENCODINGS[key]


def match_files(ctx: ReadContext, patterns: list[str]) -> list[Path]:
    """The files the glob(s) match, relative to the project root, sorted and without duplicates."""
    found: dict[Path, None] = {}
    for pattern in patterns:
        full = pattern if Path(pattern).is_absolute() else str(ctx.project_root / pattern)
        for hit in sorted(glob.glob(full, recursive=True)):
            path = Path(hit)
            if path.is_file():
                found[path.resolve()] = None
    return list(found)


def display_name(ctx: ReadContext, path: Path) -> str:
    try:
        return path.relative_to(ctx.project_root.resolve()).as_posix()
    except ValueError:
        return str(path)


def identify(ctx: ReadContext, path: Path) -> SourceFile:
    """Size and SHA-256 of a file (hashlib drops the GIL on big buffers, so this runs at disk speed), and its
    size and modification time before hashing (:func:`still_the_same` compares them after the read)."""
    before = _stamp(path)
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(BLOCK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    name = display_name(ctx, path)
    return SourceFile(path, name, LandedFile(name, size, digest.hexdigest()), before)


# Names a writer gives a file it has not finished (the rename convention): never matched by a glob
IN_PROGRESS = re.compile(r"(^\.|~$|\.(part|partial|tmp|temp|crdownload|filepart|swp)$)", re.IGNORECASE)
SETTLE_WAIT_FACTOR = 10  # a file still changing after this many settle times is left for the next load


def _stamp(path: Path) -> tuple[int, int, int, int]:
    """What changes whenever the file does: its size, its last change — the later of the modification time and
    the inode's change time (``ctime``: a writer can put the modification time back, as ``cp -p`` and ``rsync
    --inplace --times`` do, but nobody can set ``ctime``) — and which file the path names (a rename over it)."""
    st = path.stat()
    return st.st_size, max(st.st_mtime_ns, st.st_ctime_ns), st.st_mtime_ns, st.st_ino


def settled(ctx: ReadContext, paths: list[Path]) -> list[Path]:
    """The files that are complete: a ready marker next to them when the table asks for one, and size and
    modification time unchanged for ``settle:`` — the load waits for younger files (at most
    SETTLE_WAIT_FACTOR × settle, then leaves them, with a note, for the next load)."""
    import time

    table = ctx.table
    if table.ready_marker:
        waiting = [p for p in paths if not p.with_name(p.name + table.ready_marker).exists()]
        if waiting:
            ctx.note(f"{len(waiting)} file(s) without their {table.ready_marker} marker yet, left for a later load")
        paths = [p for p in paths if p not in waiting]
    settle = table.settle_seconds()
    if settle <= 0:
        return paths
    deadline = time.time() + settle * SETTLE_WAIT_FACTOR
    seen = {p: _stamp(p) for p in paths}
    ready: list[Path] = []
    pending = list(paths)
    while pending and not ctx.cancel.is_set():
        now = time.time()
        young = []
        for path in pending:
            try:
                stamp = _stamp(path)
            except FileNotFoundError:  # renamed or removed while we waited: not ours to take
                continue
            if stamp != seen[path] or now - stamp[1] / 1e9 < settle:
                seen[path] = stamp
                young.append(path)
            else:
                ready.append(path)
        pending = young
        if not pending:
            break
        if now >= deadline:
            names = ", ".join(display_name(ctx, p) for p in pending[:3])
            ctx.note(f"{len(pending)} file(s) still being written ({names}), left for a later load")
            break
        newest = max(seen[p][1] / 1e9 for p in pending)
        ctx.cancel.wait(min(max(newest + settle - now, 0.05), deadline - now))
    return sorted(ready)


def unlanded(ctx: ReadContext, patterns: list[str]) -> Iterator[SourceFile]:
    """The matched, complete files this table has not landed before (a landing folder loads each file once), in
    path order. A glob that matches no file at all is an error (a warning with ``optional: true``). A file
    landed before whose content changed is a new version, handled by ``on_change:``: landed again (``append``),
    left with a note (``refuse``), or landed in place of the earlier load(s) that took it (``replace``: see
    :func:`replacements`)."""
    paths = [p for p in match_files(ctx, patterns) if not IN_PROGRESS.search(p.name)]
    if not paths:
        where = ", ".join(patterns)
        if not ctx.table.optional:
            raise ctx.error(f"path {where} matches no file", "check the path (relative to the project root), or "
                            "set `optional: true` on the table when an empty landing folder is expected")
        ctx.note(f"no file matches {where} (optional)")
    found: list[SourceFile] = []
    for path in settled(ctx, paths):
        if ctx.cancel.is_set():
            return
        source = identify(ctx, path)
        if _stamp(path) != source.stamp:
            ctx.note(f"{source.name} changed while it was identified, left for a later load")
            continue
        found.append(source)
    fresh = [s for s in found if not ctx.landed(s.landed) and s.landed.path not in ctx.landed_paths]
    for source in fresh:  # a new name, bytes landed before: a copy, or a file moved or renamed — said, not guessed
        earlier = ctx.landed_contents.get((source.landed.size, source.landed.sha256))
        if earlier is not None and source.landed.size:
            ctx.note(f"{source.name} has the very content of {earlier}, landed before: landed again as a new file — "
                     "if it was moved or renamed, its rows are now twice in the lake (move processed files out of "
                     "what `path:` matches)")
    changed = [s for s in found if s.landed.path in ctx.landed_paths and not ctx.landed(s.landed)]
    take = {s.landed.path for s in fresh}
    if changed and ctx.table.on_change == "refuse":
        for source in changed:
            ctx.note(f"{source.name} changed since it was landed: not landed again (on_change: refuse); "
                     "`kiban loads retract` the earlier load to take the new version")
    elif changed and ctx.table.on_change == "replace":
        take |= replacements(ctx, changed, {s.landed.path for s in found})
    elif changed:
        take |= {s.landed.path for s in changed}
    skipped = sum(1 for s in found if ctx.landed(s.landed) and s.landed.path not in take)
    for source in found:
        if source.landed.path in take:
            if ctx.cancel.is_set():
                return
            yield source
    if skipped:
        ctx.note(f"{skipped} file(s) already landed, skipped")


def replacements(ctx: ReadContext, changed: list[SourceFile], present: set[str]) -> set[str]:
    """``on_change: replace``: the files to read so that this load can take the place of every earlier load that
    read a changed file. Such a load is retracted in this load's commit (:meth:`ReadContext.supersede`), so every
    other file it read is read again here — and the loads that read those (their files, in turn). When one of
    them is gone from the landing folder (or is not complete), its rows could not be replaced: the changed file
    is left, with a note, for a retraction by hand."""
    take: set[str] = set()
    handled: set[str] = set()
    for source in changed:
        if source.landed.path in handled:
            continue
        paths, loads = {source.landed.path}, set[str]()
        while True:  # the loads that read these files, and the files those loads read
            more = set().union(*(ctx.landed_by.get(p, frozenset()) for p in paths)) - loads
            if not more:
                break
            loads |= more
            paths |= set().union(*(ctx.load_sources.get(load, frozenset()) for load in more))
        handled |= paths
        missing = sorted(paths - present)
        if missing:
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            ctx.note(f"{source.name} changed since it was landed, but the load(s) that took it "
                     f"({', '.join(sorted(loads))}) also read {shown}, not in the landing folder now (or not "
                     "complete): not replaced (on_change: replace) — put the file(s) back, or `kiban loads "
                     "retract` those loads and collect")
            continue
        names = sorted(p for p in paths if p in {c.landed.path for c in changed})
        why = f"{', '.join(names[:3])}{' …' if len(names) > 3 else ''} changed (on_change: replace)"
        for load in loads:
            ctx.supersede(load, why)
        take |= paths
        ctx.note(f"{', '.join(names[:3])}{' …' if len(names) > 3 else ''} changed since it was landed: this load "
                 f"replaces load(s) {', '.join(sorted(loads))} ({len(paths)} file(s) read again)")
    return take


def still_the_same(ctx: ReadContext, source: SourceFile) -> None:
    """After a file was read: it must be what was identified — else the load fails (nothing is committed) and
    the next load takes the file once it has stopped changing."""
    try:
        now = _stamp(source.path)
    except FileNotFoundError:
        now = (-1, -1, -1, -1)
    if now != source.stamp:
        raise ctx.error(f"{source.name} changed while it was read: nothing of this load was committed",
                        "the file is taken once it has stopped changing (raise `settle:`, or have the writer "
                        "use a ready marker or write under a .part name and rename)")


class Headers:
    """The columns of the first file of a load; a later file whose columns differ is noted (its rows are merged
    by column name, so a renamed column would quietly become two half-empty ones)."""

    def __init__(self, ctx: ReadContext) -> None:
        self.ctx = ctx
        self.first: tuple[str, list[str]] | None = None

    def watch(self, source: SourceFile, batches: Iterator[Any]) -> Iterator[Any]:
        seen = False
        for batch in batches:
            if not seen:
                seen = True
                names = [n for n in batch.schema.names if n not in (SOURCE_FILE, SOURCE_LINE)]
                if self.first is None:
                    self.first = (source.name, names)
                elif names != self.first[1]:
                    self.ctx.note(header_change(source.name, self.first, names))
            yield batch


def header_change(name: str, first: tuple[str, list[str]], names: list[str]) -> str:
    """A note: this file's columns differ from the first file's of the load (they are merged by name)."""
    added = [n for n in names if n not in first[1]]
    missing = [n for n in first[1] if n not in names]
    parts = ([f"new {', '.join(added)}"] if added else []) + ([f"without {', '.join(missing)}"] if missing else [])
    what = "; ".join(parts) or "the same columns in another order"
    return f"{name}: its header differs from {first[0]}'s ({what}); the rows are merged by column name"


def guarded(ctx: ReadContext, source: SourceFile, rows: Iterator[Any]) -> Iterator[Any]:
    """``rows``, with a damaged file (a truncated gzip, a read error) as a SourceError that names it."""
    try:
        yield from rows
    except (EOFError, OSError, zlib.error) as exc:
        raise ctx.error(f"{source.name}: cannot be read to the end ({exc})",
                        "a compressed file may be truncated or still being written") from None


def open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed when it is gzip (by its magic number, whatever its name)."""
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


def plain_suffix(path: Path) -> str:
    """The file's format suffix, ignoring a compression suffix: ``orders.csv.gz`` → ``.csv``."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".gzip"):
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def decode(raw: bytes, encoding: str) -> str:
    """``raw`` decoded strictly; raises UnicodeDecodeError (with the byte position) when it does not fit."""
    text = raw.decode(encoding)
    # 0xFD-0xFF are neither lead nor trail bytes; 0x80 and 0xA0 also occur as trail bytes, so those two are
    # looked for in the text, and only when the bytes are there at all (memchr is cheap, a str scan is not)
    if encoding == "cp932" and (raw.find(b"\xfd") >= 0 or raw.find(b"\xfe") >= 0 or raw.find(b"\xff") >= 0
                                or raw.find(b"\x80") >= 0 or raw.find(b"\xa0") >= 0):
        found = _CP932_UNMAPPED.search(text)
        if found:
            start = len(text[: found.start()].encode("cp932"))
            raise UnicodeDecodeError(encoding, raw, start, start + 1, "not a CP932 character")
    return text


def _japanese_score(text: str) -> int:
    """How Japanese a decoding looks: kana and kanji count for it, half-width katakana against it (what
    EUC-JP turns into when it is wrongly read as CP932)."""
    score = 0
    for char in text:
        point = ord(char)
        if 0x3040 <= point <= 0x30FF or 0x4E00 <= point <= 0x9FFF:
            score += 1
        elif 0xFF61 <= point <= 0xFF9F or 0xE000 <= point <= 0xF8FF:
            score -= 2
    return score


def detect_encoding(sample: bytes) -> str | None:
    """The encoding a sample decodes in: the one with the fewest undecodable lines, then the most
    Japanese-looking one (None when no line decodes in any)."""
    if sample.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    cut = sample.rfind(b"\n")
    if cut > 0:  # the sample may end inside a character: judge whole lines
        sample = sample[: cut + 1]
    lines = [line for line in sample.split(b"\n") if line.strip()]
    fits: list[tuple[int, int, str]] = []
    for order, name in enumerate(DETECT_ORDER):
        bad, score = 0, 0
        for line in lines:
            try:
                score += _japanese_score(decode(line, name))
            except UnicodeDecodeError:
                bad += 1
        if bad == 0 and name == "utf-8":
            return name  # valid UTF-8 with non-ASCII text is practically never another encoding
        if bad < len(lines):
            fits.append((bad, -score, name if order else ""))
    if not fits:
        return None
    return min(fits)[2] or "utf-8"


def read_sample(path: Path) -> bytes:
    with open_binary(path) as handle:
        return handle.read(SAMPLE_BYTES)


def resolve_encoding(ctx: ReadContext, source: SourceFile, declared: str) -> str:
    """The codec to read ``source`` with: the declared one, or the detected one under ``auto``."""
    if declared != "auto":
        return declared
    found = detect_encoding(read_sample(source.path))
    if found is None:
        ctx.note(f"{source.name}: encoding not recognised (tried utf-8, cp932, euc-jp); reading as utf-8, "
                 "lines that do not decode are quarantined")
        return "utf-8"
    ctx.note(f"{source.name}: encoding detected as {found}")
    return found


def count_byte(data: bytes, byte: bytes, end: int | None = None) -> int:
    """How often ``byte`` occurs in ``data[:end]``: NumPy counts an 8 MB block in half the time of
    ``bytes.count``, and it is one of the few passes the reader makes over every byte."""
    view = np.frombuffer(data, dtype=np.uint8, count=len(data) if end is None else end)
    return int(np.count_nonzero(view == byte[0]))


def _balanced_cut(buffer: bytes, cut: int, quote: bytes | None, limit: int) -> int:
    """Move a cut (just after a newline) back so that the block before it has balanced quotes; 0 means
    "read more first".

    Well-formed CSV has an even number of quote characters before every record boundary (escaped quotes
    are doubled). When the block holds an odd number, the last newline is inside a quoted value: step back
    line by line until the count is even again. A broken file may never balance: past 1000 lines or
    ``limit`` bytes the cut stays, and the parser quarantines the damaged record."""
    if not quote or count_byte(buffer, quote, cut) % 2 == 0:
        return cut
    end = cut
    for _ in range(1000):
        previous = buffer.rfind(b"\n", 0, end - 1)
        if previous < 0:
            return 0 if len(buffer) < limit else cut
        if buffer.count(quote, previous + 1, end) % 2 == 1:
            return previous + 1
        end = previous + 1
    return cut


def blocks(handle: IO[bytes], quote: bytes | None = None, block_bytes: int | None = None,
           max_line_bytes: int = 64 << 20) -> Iterator[tuple[bytes, int]]:
    """(block, lines in the block) for a stream, each block whole lines ending in a newline.

    A line longer than ``max_line_bytes`` cannot be held; it comes as its own block of exactly
    ``max_line_bytes + 1`` bytes (its head) followed by a newline, and the rest of it is skipped, so that
    the reader quarantines it as too long and memory stays bounded."""
    block_bytes = block_bytes or BLOCK_BYTES
    rest = b""
    while True:
        chunk = handle.read(block_bytes)
        if not chunk:
            if rest:
                yield (rest if rest.endswith(b"\n") else rest + b"\n"), 1 + rest.count(b"\n", 0, len(rest) - 1)
            return
        buffer = rest + chunk if rest else chunk
        cut = buffer.rfind(b"\n") + 1
        if cut == 0:
            if len(buffer) > max_line_bytes:  # one line bigger than we can hold: keep its head, skip its tail
                head = buffer[: max_line_bytes + 1]
                while True:
                    more = handle.read(block_bytes)
                    if not more:
                        rest = b""
                        break
                    newline = more.find(b"\n")
                    if newline >= 0:
                        rest = more[newline + 1:]
                        break
                yield head + b"\n", 1
                continue
            rest = buffer
            continue
        # a quoted value may span as many bytes as the longest line held, whatever the block size: only past that
        # is the quote taken for broken (a record over four small blocks was cut inside its quotes)
        cut = _balanced_cut(buffer, cut, quote, max(4 * block_bytes, max_line_bytes))
        if cut == 0:
            rest = buffer
            continue
        block, rest = buffer[:cut], buffer[cut:]
        yield block, count_byte(block, b"\n")
