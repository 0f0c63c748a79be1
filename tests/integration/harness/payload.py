"""Deterministic byte streams, so both ends of a transfer can check a SHA-256 without
holding the data in memory.

Block i of stream (seed) is a 1 MiB block derived from the seed with its first 8 bytes
replaced by i, so a reordered, dropped or repeated block changes the hash.
"""
import functools
import hashlib
import random
import struct

BLOCK = 1 << 20


@functools.lru_cache(maxsize=8)
def _base_block(seed: int) -> bytes:
    return random.Random(seed).randbytes(BLOCK)


def blocks(nbytes: int, seed: int = 0):
    """Yields the stream in blocks of at most 1 MiB."""
    base = _base_block(seed)
    i = 0
    left = nbytes
    while left > 0:
        b = bytearray(base)
        b[0:8] = struct.pack(">Q", i)
        if left < BLOCK:
            b = b[:left]
        left -= len(b)
        i += 1
        yield bytes(b)


@functools.lru_cache(maxsize=16)
def sha256_of(nbytes: int, seed: int = 0) -> str:
    h = hashlib.sha256()
    for b in blocks(nbytes, seed):
        h.update(b)
    return h.hexdigest()


def write_file(path, nbytes: int, seed: int = 0) -> str:
    """Writes the stream to path and returns its SHA-256."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for b in blocks(nbytes, seed):
            h.update(b)
            f.write(b)
    return h.hexdigest()


def chunked_body_parts():
    """The parts /chunked sends, one HTTP chunk each (sizes vary on purpose)."""
    return [b"first chunk\n", b"x" * 1000 + b"\n", b"y" * 70000 + b"\n", b"last chunk\n"]


def slow_stream_part(i: int, n: int) -> bytes:
    return b"slow-chunk %d/%d %s\n" % (i, n, b"." * 64)
