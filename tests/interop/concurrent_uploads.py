"""Stock Tahoe 1.20's client uploading one immutable share in 16 chunks with
4 PATCH requests in flight, as its uploader pipelines writes. Every PATCH must
succeed; exactly one reports the share finished (201), and the others (200)
report required ranges consistent with what had been written; the share then
reads back byte for byte and is listed.

Usage: concurrent_uploads.py NURL [--rounds N]

Each round uses a fresh random storage index. Rounds alternate between sending
the chunks in order and shuffled, for each chunk size in CHUNK_SIZES.

Prints ``PASS <name>`` or ``FAIL <name>: <reason>`` per round, then
``N passed, M failed``.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from collections import deque
from dataclasses import dataclass
from typing import Optional

from hyperlink import DecodedURL
from twisted.internet import task
from twisted.internet.defer import ensureDeferred, gatherResults

from allmydata.storage.http_client import (
    ClientException,
    StorageClientFactory,
    StorageClientImmutables,
)

from checks import CaseFailure, check, check_equal
from nurl import Nurl

CHUNKS = 16
IN_FLIGHT = 4
# Aligned sizes, one large enough that the server buffers bodies to disk, and
# an odd one so chunk boundaries fall anywhere.
CHUNK_SIZES = (64 * 1024, 1024 * 1024, 100_003)
# A stuck server fails its round rather than hanging the run.
ROUND_TIMEOUT_SECONDS = 60

Ranges = list[tuple[int, int]]


@dataclass
class Outcome:
    """What one PATCH came back with, and what the client knew around it."""

    chunk: int
    # Chunks whose PATCH had been answered before this one was sent.
    answered_before: frozenset[int]
    # Chunks not yet sent when this one was answered.
    unsent_after: frozenset[int] = frozenset()
    finished: Optional[bool] = None
    required: Optional[Ranges] = None
    error: Optional[str] = None


def merged(ranges: Ranges) -> Ranges:
    out: Ranges = []
    for start, end in sorted(r for r in ranges if r[0] < r[1]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def covers(outer: Ranges, inner: Ranges) -> bool:
    """Whether every byte of ``inner`` is in ``outer``."""
    spans = merged(outer)
    return all(any(s <= start and end <= e for s, e in spans) for start, end in merged(inner))


def complement(ranges: Ranges, size: int) -> Ranges:
    out, at = [], 0
    for start, end in merged(ranges):
        if at < start:
            out.append((at, start))
        at = end
    return out + [(at, size)] if at < size else out


class Round:
    def __init__(self, immutables: StorageClientImmutables, chunk_size: int, shuffled: bool):
        self.immutables = immutables
        self.chunk_size = chunk_size
        self.size = chunk_size * CHUNKS
        self.order = list(range(CHUNKS))
        if shuffled:
            random.shuffle(self.order)
        self.outcomes: list[Outcome] = []

    def span(self, chunk: int) -> tuple[int, int]:
        return chunk * self.chunk_size, (chunk + 1) * self.chunk_size

    async def run(self) -> None:
        si, secret = os.urandom(16), os.urandom(20)
        data = os.urandom(self.size)
        created = await self.immutables.create(si, {0}, self.size, secret, os.urandom(32), os.urandom(32))
        check_equal(created.allocated, {0}, "allocated")
        check_equal(created.already_have, set(), "already-have")

        queue, answered = deque(self.order), set()

        async def worker() -> None:
            # IN_FLIGHT of these keep exactly that many PATCHes outstanding
            # until the queue runs dry.
            while queue:
                chunk = queue.popleft()
                outcome = Outcome(chunk, frozenset(answered))
                self.outcomes.append(outcome)
                start, end = self.span(chunk)
                try:
                    progress = await self.immutables.write_share_chunk(si, 0, secret, start, data[start:end])
                except ClientException as e:
                    outcome.error = "HTTP {}".format(e.code)
                except Exception as e:  # e.g. a dropped connection
                    outcome.error = repr(e)
                else:
                    outcome.finished = progress.finished
                    outcome.required = [(s, e) for s, e, _ in progress.required.ranges()]
                outcome.unsent_after = frozenset(queue)
                answered.add(chunk)

        await gatherResults([ensureDeferred(worker()) for _ in range(IN_FLIGHT)], consumeErrors=True)
        problems = self.patch_problems()
        # Read back even after a bad PATCH: what the server kept is part of the report.
        try:
            got = await self.immutables.read_share_chunk(si, 0, 0, self.size)
            if got != data:
                diffs = (i for i, (a, b) in enumerate(zip(got, data)) if a != b)
                diff = next(diffs, min(len(got), len(data)))
                problems.append("read back {} bytes, first difference at {}".format(len(got), diff))
        except ClientException as e:
            problems.append("read back: HTTP {}".format(e.code))
        try:
            listed = await self.immutables.list_shares(si)
            if listed != {0}:
                problems.append("listed shares {}".format(sorted(listed)))
        except ClientException as e:
            problems.append("list shares: HTTP {}".format(e.code))
        check(not problems, "; ".join(problems))

    def patch_problems(self) -> list[str]:
        problems = []
        check_equal(sorted(o.chunk for o in self.outcomes), list(range(CHUNKS)), "chunks sent")
        for o in self.outcomes:
            where = "chunk {} ({} answered before it)".format(o.chunk, len(o.answered_before))
            if o.error is not None:
                problems.append("{}: {}".format(where, o.error))
                continue
            if o.finished:
                if o.required:
                    problems.append("{}: finished but still requires {}".format(where, o.required))
                continue
            if not o.required:
                problems.append("{}: not finished but requires nothing".format(where))
            # The server cannot need what the client knows it already holds...
            held = [self.span(c) for c in o.answered_before | {o.chunk}]
            if not covers(complement(held, self.size), o.required):
                problems.append("{}: requires {}, more than was missing".format(where, o.required))
            # ...and must still need what the client had not yet sent.
            unsent = [self.span(c) for c in o.unsent_after]
            if not covers(o.required, unsent):
                problems.append("{}: requires {}, not the unsent chunks".format(where, o.required))
        finishers = sorted(o.chunk for o in self.outcomes if o.finished)
        if len(finishers) != 1:
            problems.append("{} PATCHes finished the share (chunks {})".format(len(finishers), finishers))
        return problems


async def run(reactor, nurl: str, rounds: int) -> None:
    factory = StorageClientFactory({"tcp": "tcp"}, None)
    client = await factory.create_storage_client(DecodedURL.from_text(nurl), reactor)
    immutables = StorageClientImmutables(client)
    results = []
    try:
        for chunk_size in CHUNK_SIZES:
            for n in range(rounds):
                shuffled = n % 2 == 1
                name = "chunks-{}-{}-{}".format(chunk_size, "shuffled" if shuffled else "in-order", n)
                try:
                    await ensureDeferred(Round(immutables, chunk_size, shuffled).run()).addTimeout(
                        ROUND_TIMEOUT_SECONDS, reactor
                    )
                except CaseFailure as e:
                    results.append((name, str(e)))
                except Exception as e:  # the server misbehaved in a way no check anticipated
                    results.append((name, "unexpected {!r}".format(e)))
                else:
                    results.append((name, None))
                name, failure = results[-1]
                print("PASS " + name if failure is None else "FAIL {}: {}".format(name, failure), flush=True)
    finally:
        await client.shutdown()
    failed = sum(1 for _, failure in results if failure is not None)
    print("{} passed, {} failed".format(len(results) - failed, failed), flush=True)
    raise SystemExit(0 if failed == 0 else 1)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("nurl", metavar="NURL")
    parser.add_argument("--rounds", type=int, default=10, help="rounds per chunk size (default 10)")
    args = parser.parse_args(argv)
    try:
        Nurl.parse(args.nurl)
    except ValueError as e:
        parser.error(str(e))
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    task.react(lambda reactor: ensureDeferred(run(reactor, args.nurl, args.rounds)))


if __name__ == "__main__":
    main(sys.argv[1:])
