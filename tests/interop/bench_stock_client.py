"""Stock Tahoe 1.20's own GBS client uploading and downloading one immutable
share, timed: the stock-client rows of ``gbs-bench``.

Usage: bench_stock_client.py NURL --size BYTES [--chunk BYTES] [--in-flight N]

The share is written in ``--chunk`` pieces with ``--in-flight`` PATCHes
outstanding, as Tahoe's uploader pipelines its writes, then read back in
pieces of the same size, as many at once, and compared byte for byte.

Prints one JSON line: ``{"upload_seconds": .., "download_seconds": ..}``;
exits 1 with a message on stderr when anything fails or differs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from hyperlink import DecodedURL
from twisted.internet import task
from twisted.internet.defer import ensureDeferred, gatherResults

from allmydata.storage.http_client import StorageClientFactory, StorageClientImmutables


async def pipelined(jobs, in_flight: int) -> None:
    """Runs the coroutine factories in ``jobs`` with ``in_flight`` at a time."""
    queue = list(reversed(jobs))

    async def worker() -> None:
        while queue:
            await queue.pop()()

    await gatherResults([ensureDeferred(worker()) for _ in range(in_flight)], consumeErrors=True)


async def run(reactor, nurl: str, size: int, chunk: int, in_flight: int) -> None:
    factory = StorageClientFactory({"tcp": "tcp"}, None)
    client = await factory.create_storage_client(DecodedURL.from_text(nurl), reactor)
    immutables = StorageClientImmutables(client)
    si, secret = os.urandom(16), os.urandom(20)
    data = os.urandom(size)
    offsets = range(0, size, chunk)
    try:
        started = time.perf_counter()
        await immutables.create(si, {0}, size, secret, os.urandom(32), os.urandom(32))

        def write(offset: int):
            return lambda: immutables.write_share_chunk(si, 0, secret, offset, data[offset : offset + chunk])

        await pipelined([write(o) for o in offsets], in_flight)
        uploaded = time.perf_counter()

        pieces = {}

        def read(offset: int):
            async def go() -> None:
                length = min(chunk, size - offset)
                pieces[offset] = await immutables.read_share_chunk(si, 0, offset, length)

            return go

        await pipelined([read(o) for o in offsets], in_flight)
        downloaded = time.perf_counter()
    finally:
        await client.shutdown()
    got = b"".join(pieces[o] for o in offsets)
    if got != data:
        print("read back {} bytes that differ from the {} written".format(len(got), size), file=sys.stderr)
        raise SystemExit(1)
    print(json.dumps({"upload_seconds": uploaded - started, "download_seconds": downloaded - uploaded}), flush=True)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("nurl", metavar="NURL")
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--chunk", type=int, default=128 * 1024)
    parser.add_argument("--in-flight", type=int, default=4)
    args = parser.parse_args(argv)
    if args.size < 1 or args.chunk < 1 or args.in_flight < 1:
        parser.error("--size, --chunk and --in-flight must be positive")
    task.react(lambda reactor: ensureDeferred(run(reactor, args.nurl, args.size, args.chunk, args.in_flight)))


if __name__ == "__main__":
    main(sys.argv[1:])
