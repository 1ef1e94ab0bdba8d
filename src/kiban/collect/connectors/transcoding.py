"""CP932 and EUC-JP blocks transcoded to UTF-8 by the C library's iconv, without holding the GIL.

Python's codecs hold the GIL while they decode (about 0.3 s of CPU per 100 MB of CP932, and half that again
to encode the text as UTF-8), so the CSV reader's two threads took turns instead of working side by side. iconv,
called through ctypes, transcodes in one pass with the GIL released: while one thread transcodes a block,
the other parses the previous one.

Python's codec stays the judge of what the bytes mean. iconv is used for an encoding only when, checked once
per process, it agrees with Python's codec on every character of the encoding (every single byte, every
two-byte sequence with a high first byte, and EUC-JP's three-byte ones): the same output for each sequence
Python decodes, an error for each it refuses. Where the C library has no such converter, or it disagrees
(another libc, other tables), :func:`to_utf8` answers None and the caller decodes with Python as before.
A block iconv cannot transcode is also None: the caller's careful path finds and quarantines the bad line.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections.abc import Iterator

import numpy as np

from kiban.collect.connectors import textfile

# Python's codec name → iconv's name of the same table (Microsoft's CP932, plain EUC-JP)
ICONV_NAMES = {"cp932": b"CP932", "euc_jp": b"EUC-JP"}

_ERROR = ctypes.c_size_t(-1).value
_lock = threading.Lock()
_agrees: dict[str, bool] = {}
_libc: ctypes.CDLL | None = None


def _library() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        if name is None:
            return None
        libc = ctypes.CDLL(name, use_errno=True)
        libc.iconv_open.restype = ctypes.c_void_p
        libc.iconv_open.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        libc.iconv.restype = ctypes.c_size_t
        libc.iconv.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_size_t),
                               ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)]
        libc.iconv_close.restype = ctypes.c_int
        libc.iconv_close.argtypes = [ctypes.c_void_p]
        _libc = libc
    return _libc


class _Converter:
    """One iconv descriptor (not shareable between threads: each call opens its own)."""

    def __init__(self, libc: ctypes.CDLL, source: bytes) -> None:
        self.libc = libc
        handle = libc.iconv_open(b"UTF-8", source)
        if handle is None or handle == _ERROR:
            raise OSError(f"iconv has no converter from {source.decode()}")
        self.handle: int = handle

    def convert(self, data: bytes) -> bytes | None:
        """``data`` in UTF-8, or None when iconv stops at a byte it cannot convert (or an incomplete end)."""
        self.libc.iconv(self.handle, None, None, None, None)  # back to the initial state
        # the most UTF-8 takes: 3 bytes for a 1-byte half-width katakana; CP932/EUC-JP need no more than 3×
        # (NumPy's empty array: unlike a ctypes buffer it is not zeroed, so the pages iconv never writes are never
        # touched)
        out = np.empty(3 * len(data) + 16, dtype=np.uint8)
        in_pointer, in_left = ctypes.c_char_p(data), ctypes.c_size_t(len(data))
        out_pointer, out_left = ctypes.c_void_p(out.ctypes.data), ctypes.c_size_t(len(out))
        # ctypes releases the GIL for the call: the other reader thread parses meanwhile
        result = self.libc.iconv(self.handle, ctypes.byref(in_pointer), ctypes.byref(in_left),
                                 ctypes.byref(out_pointer), ctypes.byref(out_left))
        if result == _ERROR or in_left.value:
            return None
        return out[: len(out) - out_left.value].tobytes()

    def close(self) -> None:
        self.libc.iconv_close(self.handle)


def _sequences(encoding: str) -> Iterator[bytes]:
    """Every character-sized sequence worth comparing: all single bytes, every pair with a high first byte,
    and for EUC-JP the three-byte JIS X 0212 sequences."""
    for first in range(256):
        if first != 0x0A:
            yield bytes([first])
    for first in range(0x80, 0x100):
        for second in range(256):
            yield bytes([first, second])
    if encoding == "euc_jp":
        for second in range(0xA1, 0xFF):
            for third in range(0xA1, 0xFF):
                yield bytes([0x8F, second, third])


def _python(sequence: bytes, encoding: str) -> bytes | None:
    """What kiban makes of ``sequence``: Python's codec, less the single bytes kiban refuses (textfile.decode:
    0x80, 0xA0 and 0xFD-0xFF, which Python's cp932 maps to U+0080 and private-use characters; glibc refuses
    them too)."""
    try:
        return textfile.decode(sequence, encoding).encode("utf-8")
    except UnicodeDecodeError:
        return None


def agrees(encoding: str) -> bool:
    """Whether iconv and Python's codec give the same answer for every character of ``encoding`` (checked
    once per process; about 0.1 s)."""
    with _lock:
        if encoding not in _agrees:
            _agrees[encoding] = _check(encoding)
        return _agrees[encoding]


def _check(encoding: str) -> bool:
    libc = _library()
    if libc is None or encoding not in ICONV_NAMES:
        return False
    try:
        converter = _Converter(libc, ICONV_NAMES[encoding])
    except OSError:
        return False
    try:
        return all(converter.convert(sequence) == _python(sequence, encoding) for sequence in _sequences(encoding))
    finally:
        converter.close()


def to_utf8(block: bytes, encoding: str) -> bytes | None:
    """``block`` (whole lines in ``encoding``) as UTF-8 by iconv, or None: iconv is not to be used for this
    encoding here, or the block holds bytes it cannot convert (the caller decodes with Python then)."""
    if encoding not in ICONV_NAMES or not agrees(encoding):
        return None
    libc = _library()
    assert libc is not None  # agrees() found it
    converter = _Converter(libc, ICONV_NAMES[encoding])
    try:
        return converter.convert(block)
    finally:
        converter.close()
