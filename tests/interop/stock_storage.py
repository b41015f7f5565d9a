"""Write or verify a node storage directory with stock Tahoe 1.20's own code.

Usage:
  stock_storage.py write       NODE_STORAGE_DIR MANIFEST_OUT
  stock_storage.py read        NODE_STORAGE_DIR MANIFEST_IN
  stock_storage.py write-http  NURL MANIFEST_OUT
  stock_storage.py verify-http NURL MANIFEST_IN

``write`` fills NODE_STORAGE_DIR (the node's ``storage`` directory, which
holds ``shares/``) through ``allmydata.storage.server.StorageServer`` and
describes every share in a JSON manifest. ``read`` opens a directory that
another implementation wrote from the same kind of manifest and checks, with
stock code, that every listed share, lease and write enabler is there.
Neither involves the network.

``write-http`` stores the same set of shares through stock Tahoe's HTTP
storage client on the GBS server at NURL and writes the manifest, so that
``read`` can then check the server's directory. ``verify-http`` checks,
through the same client, that the server at NURL serves the shares of a
manifest (typically one ``write`` produced in the directory it serves).
The manifest format is in README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Optional, Protocol

from hyperlink import DecodedURL
from twisted.internet import task
from twisted.internet.defer import ensureDeferred

from allmydata.interfaces import BadWriteEnablerError
from allmydata.storage.common import si_a2b, si_b2a, storage_index_to_dir
from allmydata.storage.http_client import (
    ClientException,
    ReadVector,
    StorageClientFactory,
    StorageClientGeneral,
    StorageClientImmutables,
    StorageClientMutables,
    TestVector,
    TestWriteVectors,
    WriteVector,
)
from allmydata.storage.immutable import ShareFile
from allmydata.storage.mutable import MutableShareFile
from allmydata.storage.server import StorageServer

from nurl import Nurl

MANIFEST_VERSION = 1
# Share data up to this size goes into the manifest as hex; larger shares are
# described by sha256 + length to keep the manifest small.
INLINE_LIMIT = 64 * 1024
LEASE_SECONDS = 31 * 24 * 60 * 60
# A stuck server must fail one check (or the HTTP write), not hang the run.
CHECK_TIMEOUT_SECONDS = 60
WRITE_TIMEOUT_SECONDS = 300


@dataclass
class Lease:
    renew: bytes
    cancel: bytes

    @classmethod
    def new(cls) -> "Lease":
        return cls(os.urandom(32), os.urandom(32))

    def to_json(self) -> dict:
        return {"renew_secret_hex": self.renew.hex(), "cancel_secret_hex": self.cancel.hex()}


@dataclass
class ShareEntry:
    """One manifest entry; ``lease`` is the share's own, ``extra_leases``
    were added afterwards."""

    kind: str
    si: bytes
    shnum: int
    data: bytes
    lease: Lease
    write_enabler: Optional[bytes] = None
    extra_leases: list[Lease] = field(default_factory=list)

    def to_json(self) -> dict:
        si = si_b2a(self.si).decode("ascii")
        out = {"kind": self.kind, "si": si, "shnum": self.shnum, "length": len(self.data)}
        if len(self.data) <= INLINE_LIMIT:
            out["data_hex"] = self.data.hex()
        else:
            out["sha256"] = hashlib.sha256(self.data).hexdigest()
        out.update(self.lease.to_json())
        if self.write_enabler is not None:
            out["write_enabler_hex"] = self.write_enabler.hex()
        if self.extra_leases:
            out["extra_leases"] = [lease.to_json() for lease in self.extra_leases]
        return out


def open_server(storage_dir: str) -> StorageServer:
    # The node id only ends up in new mutable containers and lease records.
    return StorageServer(storage_dir, nodeid=os.urandom(20))


@dataclass
class Http:
    """Stock Tahoe's HTTP storage client for one GBS server, by endpoint group."""

    general: StorageClientGeneral
    immutables: StorageClientImmutables
    mutables: StorageClientMutables

    def reader(self, kind: str):
        """The endpoint group whose ``read_share_chunk`` serves ``kind``."""
        return self.immutables if kind == "immutable" else self.mutables


def run_http(nurl: str, command) -> None:
    """Run ``await command(reactor, http)`` under the Twisted reactor and exit
    with the status it returns (1 if it raised)."""

    async def body(reactor) -> None:
        # Plain TCP, no Tor: the same settings a default stock node uses.
        factory = StorageClientFactory({"tcp": "tcp"}, None)
        client = await factory.create_storage_client(DecodedURL.from_text(nurl), reactor)
        http = Http(StorageClientGeneral(client), StorageClientImmutables(client), StorageClientMutables(client))
        try:
            status = await command(reactor, http)
        except Exception as e:
            # Twisted would log this where nobody looks; say it here.
            traceback.print_exc()
            print("FAIL {}".format(describe(e)), flush=True)
            status = 1
        finally:
            # Idle persistent connections would otherwise keep the reactor busy.
            await client.shutdown()
        raise SystemExit(status)

    task.react(lambda reactor: ensureDeferred(body(reactor)))


def describe(error: Exception) -> str:
    if isinstance(error, ClientException):
        if not error.body:  # most stock client calls keep no body
            return "HTTP {} from the server".format(error.code)
        body = error.body if len(error.body) <= 200 else error.body[:200] + b"..."
        return "HTTP {} from the server (body {!r})".format(error.code, body)
    return "".join(traceback.format_exception_only(type(error), error)).strip()


# --- write -----------------------------------------------------------------
#
# One plan of shares, stored either with StorageServer calls on a directory
# (``write``) or through the stock HTTP client (``write-http``), so that both
# directions are checked against the same variety of containers.


class WriteRefused(Exception):
    """The storage server did not take a write the plan needs."""


def require(condition: bool, message: str) -> None:
    if not condition:
        raise WriteRefused(message)


class Store(Protocol):
    """Where the plan's shares go."""

    async def upload_immutables(self, si: bytes, lease: Lease, shares: dict[int, bytes]) -> None: ...

    async def add_lease(self, si: bytes, lease: Lease) -> None: ...

    async def write_mutable(self, si: bytes, we: bytes, lease: Lease, shnum: int, writes, new_length) -> None: ...


def upload_pieces(data: bytes) -> list[tuple[int, bytes]]:
    """(offset, bytes) pieces of a share in upload order: the second half
    first, as uploads may arrive out of order. Empty pieces are left out
    (the stock writer rejects empty writes)."""
    half = len(data) // 2
    return [(offset, piece) for offset, piece in [(half, data[half:]), (0, data[:half])] if piece]


class DirectStore:
    """``StorageServer`` calls on a storage directory."""

    def __init__(self, ss: StorageServer):
        self.ss = ss

    async def upload_immutables(self, si: bytes, lease: Lease, shares: dict[int, bytes]) -> None:
        size = len(next(iter(shares.values())))
        _, writers = self.ss.allocate_buckets(si, lease.renew, lease.cancel, set(shares), size)
        require(set(writers) == set(shares), "allocation refused")
        for shnum, data in shares.items():
            for offset, piece in upload_pieces(data):
                writers[shnum].write(offset, piece)
            writers[shnum].close()

    async def add_lease(self, si: bytes, lease: Lease) -> None:
        self.ss.add_lease(si, lease.renew, lease.cancel)

    async def write_mutable(self, si: bytes, we: bytes, lease: Lease, shnum: int, writes, new_length) -> None:
        secrets = (we, lease.renew, lease.cancel)
        ok, _ = self.ss.slot_testv_and_readv_and_writev(si, secrets, {shnum: ([], writes, new_length)}, [])
        require(ok, "mutable write refused")


class HttpStore:
    """The stock HTTP client, used the way a stock Tahoe node uses it."""

    def __init__(self, http: Http):
        self.http = http

    async def upload_immutables(self, si: bytes, lease: Lease, shares: dict[int, bytes]) -> None:
        size = len(next(iter(shares.values())))
        # 20 random bytes per allocate call, shared by its shares, as stock does.
        secret = os.urandom(20)
        created = await self.http.immutables.create(si, set(shares), size, secret, lease.renew, lease.cancel)
        require(created.allocated == set(shares), "allocate answered {}".format(created))
        for shnum, data in shares.items():
            pieces = upload_pieces(data)
            for i, (offset, piece) in enumerate(pieces):
                progress = await self.http.immutables.write_share_chunk(si, shnum, secret, offset, piece)
                # Only the last piece completes the share (201 rather than 200).
                last = i == len(pieces) - 1
                message = "share {}: finished={} after piece {}".format(shnum, progress.finished, i)
                require(progress.finished == last, message)

    async def add_lease(self, si: bytes, lease: Lease) -> None:
        await self.http.general.add_or_renew_lease(si, lease.renew, lease.cancel)

    async def write_mutable(self, si: bytes, we: bytes, lease: Lease, shnum: int, writes, new_length) -> None:
        vectors = TestWriteVectors(write_vectors=[WriteVector(o, d) for o, d in writes], new_length=new_length)
        secrets = (we, lease.renew, lease.cancel)
        result = await self.http.mutables.read_test_write_chunks(si, *secrets, {shnum: vectors}, [])
        require(result.success, "mutable write refused")


async def write_immutables(store: Store, shares: dict[int, bytes], extra_leases: int = 0) -> list[ShareEntry]:
    """Upload complete immutable shares of one new SI (equal sizes) under one
    lease, then add ``extra_leases`` more."""
    si, lease = os.urandom(16), Lease.new()
    await store.upload_immutables(si, lease, shares)
    entries = [ShareEntry("immutable", si, n, d, lease) for n, d in shares.items()]
    await add_extra_leases(store, si, entries, extra_leases)
    return entries


async def write_mutable(store: Store, si: bytes, we: bytes, shnum: int, writes, new_length=None, lease=None) -> Lease:
    """Apply write vectors to one mutable share; the lease (fresh unless
    given) is added or renewed. Returns the lease."""
    lease = lease or Lease.new()
    await store.write_mutable(si, we, lease, shnum, writes, new_length)
    return lease


async def add_extra_leases(store: Store, si: bytes, entries: list[ShareEntry], count: int) -> None:
    """Add ``count`` more leases to every share of ``si``."""
    for _ in range(count):
        lease = Lease.new()
        await store.add_lease(si, lease)
        for entry in entries:
            entry.extra_leases.append(lease)


async def write_all(store: Store) -> list[ShareEntry]:
    r = os.urandom
    # Immutable: tiny, small, several per SI, above the inline limit, > 1 MiB.
    return [
        *await write_immutables(store, {0: r(1), 1: r(1), 2: r(1)}),
        *await write_immutables(store, {0: r(1000), 5: r(1000), 9: r(1000)}, extra_leases=2),
        *await write_immutables(store, {7: r(70_000)}),
        *await write_immutables(store, {3: r(1024 * 1024 + 12345), 4: r(1024 * 1024 + 12345)}),
        *await write_mutables(store),
    ]


async def write_mutables(store: Store) -> list[ShareEntry]:
    r, entries = os.urandom, []
    # Mutable SI with three shares written by separate requests (own leases):
    # plain, one with a zero-filled gap, one truncated by new-length.
    si, we = r(16), r(32)
    plain, tail, long_data = r(10), r(50), r(3000)
    entries.append(ShareEntry("mutable", si, 0, plain, await write_mutable(store, si, we, 0, [(0, plain)]), we))
    gap_lease = await write_mutable(store, si, we, 1, [(100, tail)])
    entries.append(ShareEntry("mutable", si, 1, b"\0" * 100 + tail, gap_lease, we))
    long_lease = await write_mutable(store, si, we, 2, [(0, long_data)])
    truncated = ShareEntry("mutable", si, 2, long_data[:2000], long_lease, we)
    truncated.extra_leases.append(await write_mutable(store, si, we, 2, [], new_length=2000))
    entries.append(truncated)

    # Mutable share with more leases than the four header slots, grown to over
    # 1 MiB afterwards, so the extra-lease block has to move.
    si, we, big = r(16), r(32), r(1024 * 1024 + 4321)
    entry = ShareEntry("mutable", si, 0, big, await write_mutable(store, si, we, 0, [(0, big[:100])]), we)
    await add_extra_leases(store, si, [entry], 5)
    await write_mutable(store, si, we, 0, [(100, big[100:])], lease=entry.lease)
    entries.append(entry)

    # An empty mutable share: named in a request without any writes.
    si, we = r(16), r(32)
    entries.append(ShareEntry("mutable", si, 4, b"", await write_mutable(store, si, we, 4, []), we))
    return entries


def save_manifest(path: str, entries: list[ShareEntry]) -> None:
    manifest = {"version": MANIFEST_VERSION, "shares": [e.to_json() for e in entries]}
    with open(path, "w") as f:
        json.dump(manifest, f, indent=1)
    print("wrote {} shares".format(len(entries)), flush=True)


def command_write(storage_dir: str, manifest_path: str) -> int:
    # Nothing in DirectStore really waits, so a plain event loop drives the plan.
    entries = asyncio.run(write_all(DirectStore(open_server(storage_dir))))
    save_manifest(manifest_path, entries)
    return 0


def command_write_http(nurl: str, manifest_path: str) -> None:
    async def write(reactor, http: Http) -> int:
        writing = ensureDeferred(write_all(HttpStore(http)))
        entries = await writing.addTimeout(WRITE_TIMEOUT_SECONDS, reactor)
        save_manifest(manifest_path, entries)
        return 0

    run_http(nurl, write)


# --- read ------------------------------------------------------------------


class Mismatch(Exception):
    """The directory does not hold what the manifest says."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Mismatch(message)


@dataclass
class Expected:
    """A manifest entry, parsed."""

    kind: str
    si: bytes
    shnum: int
    length: int
    data: Optional[bytes]
    sha256: Optional[str]
    leases: list[Lease]
    write_enabler: Optional[bytes]

    @classmethod
    def from_json(cls, entry: dict) -> "Expected":
        data = bytes.fromhex(entry["data_hex"]) if "data_hex" in entry else None
        length = entry["length"] if "length" in entry else len(data)
        leases = [lease_from_json(entry)] + [lease_from_json(e) for e in entry.get("extra_leases", [])]
        we = entry.get("write_enabler_hex")
        expect(entry["kind"] in ("immutable", "mutable"), "unknown kind {!r}".format(entry["kind"]))
        expect(data is not None or "sha256" in entry, "entry has neither data_hex nor sha256")
        return cls(entry["kind"], si_a2b(entry["si"].encode("ascii")), entry["shnum"], length, data,
                   entry.get("sha256"), leases, bytes.fromhex(we) if we else None)

    @property
    def label(self) -> str:
        return "{} {}/{}".format(self.kind, si_b2a(self.si).decode("ascii"), self.shnum)

    def check_data(self, data: bytes, what: str) -> None:
        expect(len(data) == self.length, "{}: {} bytes, manifest says {}".format(what, len(data), self.length))
        if self.data is not None:
            expect(data == self.data, what + ": data differs from the manifest")
        if self.sha256 is not None:
            expect(hashlib.sha256(data).hexdigest() == self.sha256, what + ": sha256 differs from the manifest")


def lease_from_json(entry: dict) -> Lease:
    return Lease(bytes.fromhex(entry["renew_secret_hex"]), bytes.fromhex(entry["cancel_secret_hex"]))


def share_path(ss: StorageServer, si: bytes, shnum: int) -> str:
    return os.path.join(ss.sharedir, storage_index_to_dir(si), str(shnum))


def verify_immutable(ss: StorageServer, exp: Expected) -> None:
    buckets = ss.get_buckets(exp.si)
    expect(exp.shnum in buckets, "not found by get_buckets")
    reader = buckets[exp.shnum]
    length = reader.get_length()
    expect(length == exp.length, "get_length() = {}, manifest says {}".format(length, exp.length))
    exp.check_data(reader.read(0, exp.length), "read()")
    expect(reader.read(exp.length, 10) == b"", "read past the end returned data")
    verify_leases(ShareFile(share_path(ss, exp.si, exp.shnum)), exp)
    exp.check_data(reader.read(0, exp.length + 100), "read() after lease renewal")


def verify_mutable(ss: StorageServer, exp: Expected) -> None:
    expect(exp.write_enabler is not None, "mutable entry lacks write_enabler_hex")
    length = ss.get_mutable_share_length(exp.si, exp.shnum)
    expect(length == exp.length, "get_mutable_share_length() = {}, manifest says {}".format(length, exp.length))
    read = ss.slot_readv(exp.si, [exp.shnum], [(0, exp.length + 100)])
    expect(exp.shnum in read, "not found by slot_readv")
    data = read[exp.shnum][0]
    exp.check_data(data, "slot_readv()")
    verify_leases(MutableShareFile(share_path(ss, exp.si, exp.shnum)), exp)
    verify_write_enabler(ss, exp, data[:32])
    again = ss.slot_readv(exp.si, [exp.shnum], [(0, exp.length)])[exp.shnum][0]
    exp.check_data(again, "slot_readv() after checks")


def verify_leases(share, exp: Expected) -> None:
    """Every manifest lease is on the share, unexpired, with its cancel
    secret; stock code can renew it and refuses an unknown renew secret."""
    now = time.time()
    leases = list(share.get_leases())
    for i, lease in enumerate(exp.leases):
        matching = [held for held in leases if held.is_renew_secret(lease.renew)]
        expect(len(matching) == 1, "lease {}: {} leases match its renew secret".format(i, len(matching)))
        expect(matching[0].is_cancel_secret(lease.cancel), "lease {}: cancel secret differs".format(i))
        expiry = matching[0].get_expiration_time()
        in_range = now < expiry <= now + LEASE_SECONDS + 60
        expect(in_range, "lease {}: expiry {} is not within the next 31 days".format(i, expiry))
        share.renew_lease(lease.renew, int(now) + LEASE_SECONDS)
    try:
        share.renew_lease(os.urandom(32), int(now) + LEASE_SECONDS)
    except IndexError:
        pass
    else:
        raise Mismatch("an unknown renew secret was accepted")


def verify_write_enabler(ss: StorageServer, exp: Expected, head: bytes) -> None:
    """A test-and-read with the manifest's write enabler passes (its test
    compares the share's first bytes); a different enabler is refused."""
    lease = exp.leases[0]
    vectors = {exp.shnum: ([(0, len(head), b"eq", head)], [], None)}
    try:
        ok, reads = ss.slot_testv_and_readv_and_writev(
            exp.si, (exp.write_enabler, lease.renew, lease.cancel), vectors, [(0, 8)], renew_leases=False
        )
    except BadWriteEnablerError:
        raise Mismatch("the manifest's write enabler was refused")
    expect(ok, "test vector on the first bytes failed with the manifest's write enabler")
    expect(exp.shnum in reads, "share missing from the read results")
    try:
        wrong = (os.urandom(32), lease.renew, lease.cancel)
        ss.slot_testv_and_readv_and_writev(exp.si, wrong, {}, [], renew_leases=False)
    except BadWriteEnablerError:
        pass
    else:
        raise Mismatch("a random write enabler was accepted")


def verify_header(ss: StorageServer, exp: Expected) -> None:
    path = share_path(ss, exp.si, exp.shnum)
    expect(os.path.isfile(path), "no file at " + path)
    with open(path, "rb") as f:
        header = f.read(32)
    mutable = MutableShareFile.is_valid_header(header)
    immutable = not mutable and ShareFile.is_valid_header(header)
    kind = "mutable" if mutable else "immutable" if immutable else "unknown"
    expect(kind == exp.kind, "container header says {}".format(kind))


def verify_share(ss: StorageServer, exp: Expected) -> None:
    verify_header(ss, exp)
    if exp.kind == "immutable":
        verify_immutable(ss, exp)
    else:
        verify_mutable(ss, exp)


def verify_share_sets(ss: StorageServer, expected: list[Expected]) -> dict[bytes, str]:
    """Per SI: the share numbers on disk equal the manifest's. Returns failures."""
    wanted: dict[bytes, set[int]] = {}
    for exp in expected:
        wanted.setdefault(exp.si, set()).add(exp.shnum)
    failures = {}
    for si, shnums in wanted.items():
        found = {shnum for shnum, _ in ss.get_shares(si)}
        if found != shnums:
            failures[si] = "shares on disk {}, manifest lists {}".format(sorted(found), sorted(shnums))
    return failures


@dataclass
class Tally:
    """Prints ``PASS``/``FAIL`` lines and counts them."""

    passed: int = 0
    failed: int = 0

    def record(self, label: str, failure: Optional[str]) -> None:
        if failure is None:
            print("PASS " + label, flush=True)
            self.passed += 1
        else:
            # One line per check, whatever the message holds.
            print("FAIL {}: {}".format(label, failure.replace("\n", " | ")), flush=True)
            self.failed += 1

    def finish(self) -> int:
        """Prints the summary line; returns the exit status."""
        print("{} passed, {} failed".format(self.passed, self.failed), flush=True)
        return 0 if self.failed == 0 else 1


def load_manifest(path: str, tally: Tally) -> list[Expected]:
    """The manifest's entries, parsed; each malformed one (or a wrong
    version) is recorded as a failure."""
    with open(path) as f:
        manifest = json.load(f)
    if manifest.get("version") != MANIFEST_VERSION:
        tally.record("manifest", "version {!r}, expected {}".format(manifest.get("version"), MANIFEST_VERSION))
        return []
    parsed = []
    for i, entry in enumerate(manifest["shares"]):
        try:
            parsed.append(Expected.from_json(entry))
        except (Mismatch, KeyError, ValueError, TypeError) as e:
            tally.record("manifest entry {}".format(i), "{} {}".format(type(e).__name__, e))
    return parsed


def command_read(storage_dir: str, manifest_path: str) -> int:
    tally = Tally()
    expected = load_manifest(manifest_path, tally)
    if not expected:
        return tally.finish()
    ss = open_server(storage_dir)
    for exp in expected:
        try:
            verify_share(ss, exp)
        except Mismatch as e:
            tally.record(exp.label, str(e))
        except Exception as e:  # stock code choked on the container
            tally.record(exp.label, "stock code raised {}: {}".format(type(e).__name__, e))
        else:
            tally.record(exp.label, None)
    set_failures = verify_share_sets(ss, expected)
    for si in {exp.si for exp in expected}:
        tally.record("share set {}".format(si_b2a(si).decode("ascii")), set_failures.get(si))
    return tally.finish()


# --- verify-http -------------------------------------------------------------


def read_ranges(length: int) -> list[tuple[int, int]]:
    """(offset, size) reads besides the whole share: exactly the share, a
    middle piece, one that runs past the end (must be truncated) and one that
    starts at the end (must be empty). The stock client cannot ask for 0
    bytes (it would send ``bytes=0--1``)."""
    ranges = [(0, length), (length // 3, length // 3 + 1), (max(0, length - 3), 10), (length, 10)]
    return [(offset, size) for offset, size in ranges if size > 0]


async def verify_share_http(http: Http, exp: Expected) -> None:
    """Full and ranged reads equal the manifest; for mutables, the write
    enabler checks too, and the data is unchanged afterwards."""
    reader = http.reader(exp.kind)
    # The stock client always sends a Range; asking for more than the share
    # holds also checks that the server truncates rather than failing.
    data = await reader.read_share_chunk(exp.si, exp.shnum, 0, exp.length + 100)
    exp.check_data(data, "GET bytes=0-{}".format(exp.length + 99))
    for offset, size in read_ranges(exp.length):
        got = await reader.read_share_chunk(exp.si, exp.shnum, offset, size)
        want = data[offset : offset + size]
        what = "GET bytes={}-{}".format(offset, offset + size - 1)
        expect(got == want, "{}: {} bytes, expected {} bytes of the share".format(what, len(got), len(want)))
    if exp.kind == "mutable":
        await verify_write_enabler_http(http, exp, data)
        again = await reader.read_share_chunk(exp.si, exp.shnum, 0, exp.length + 100)
        exp.check_data(again, "GET after read-test-write")


async def verify_write_enabler_http(http: Http, exp: Expected, data: bytes) -> None:
    """A read-test-write with the manifest's write enabler whose test matches
    the share's first bytes succeeds and writes nothing; one with a random
    write enabler is refused with 401. Both present the share's own lease,
    so they at most renew it."""
    expect(exp.write_enabler is not None, "mutable entry lacks write_enabler_hex")
    lease, head = exp.leases[0], data[:32]
    vectors = {exp.shnum: TestWriteVectors(test_vectors=[TestVector(0, len(head), head)])}
    try:
        result = await http.mutables.read_test_write_chunks(
            exp.si, exp.write_enabler, lease.renew, lease.cancel, vectors, [ReadVector(0, 8)]
        )
    except ClientException as e:
        raise Mismatch("read-test-write with the manifest's write enabler: " + describe(e))
    expect(result.success, "test vector on the first bytes failed with the manifest's write enabler")
    got = result.reads.get(exp.shnum)
    expect(got == [data[:8]], "read-test-write read {!r}, expected {!r}".format(got, [data[:8]]))
    try:
        await http.mutables.read_test_write_chunks(exp.si, os.urandom(32), lease.renew, lease.cancel, vectors, [])
    except ClientException as e:
        expect(e.code == 401, "a random write enabler got HTTP {}, expected 401".format(e.code))
    else:
        raise Mismatch("a random write enabler was accepted")


async def verify_share_set_http(http: Http, kind: str, si: bytes, shnums: set[int]) -> None:
    listed = await http.reader(kind).list_shares(si)
    expect(set(listed) == shnums, "listed {}, manifest lists {}".format(sorted(listed), sorted(shnums)))


async def renew_lease_http(http: Http, si: bytes, lease: Lease) -> None:
    # The stock client raises ClientException unless the answer is 204.
    await http.general.add_or_renew_lease(si, lease.renew, lease.cancel)


def share_sets(expected: list[Expected]) -> dict[tuple[str, bytes], set[int]]:
    """Share numbers per (kind, SI): each kind has its own list endpoint."""
    sets: dict[tuple[str, bytes], set[int]] = {}
    for exp in expected:
        sets.setdefault((exp.kind, exp.si), set()).add(exp.shnum)
    return sets


def first_leases(expected: list[Expected]) -> dict[bytes, Lease]:
    """Per SI, the first listed share's own lease. A lease request covers
    every share of the SI, so one per SI is enough (shares of the SI that lack
    it get it added, as stock does)."""
    leases: dict[bytes, Lease] = {}
    for exp in expected:
        leases.setdefault(exp.si, exp.leases[0])
    return leases


async def check_http(reactor, tally: Tally, label: str, coroutine) -> None:
    try:
        await ensureDeferred(coroutine).addTimeout(CHECK_TIMEOUT_SECONDS, reactor)
    except Mismatch as e:
        tally.record(label, str(e))
    except Exception as e:  # the server misbehaved in a way no check anticipated
        tally.record(label, "unexpected " + describe(e))
    else:
        tally.record(label, None)


def command_verify_http(nurl: str, manifest_path: str) -> None:
    async def verify(reactor, http: Http) -> int:
        tally = Tally()
        expected = load_manifest(manifest_path, tally)
        for exp in expected:
            await check_http(reactor, tally, exp.label, verify_share_http(http, exp))
        for (kind, si), shnums in share_sets(expected).items():
            label = "{} share set {}".format(kind, si_b2a(si).decode("ascii"))
            await check_http(reactor, tally, label, verify_share_set_http(http, kind, si, shnums))
        for si, lease in first_leases(expected).items():
            label = "lease renewal {}".format(si_b2a(si).decode("ascii"))
            await check_http(reactor, tally, label, renew_lease_http(http, si, lease))
        return tally.finish()

    run_http(nurl, verify)


COMMANDS = {
    "write": command_write,
    "read": command_read,
    "write-http": command_write_http,
    "verify-http": command_verify_http,
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=list(COMMANDS))
    parser.add_argument(
        "where",
        metavar="NODE_STORAGE_DIR|NURL",
        help="the node's storage directory, which contains shares/ (write, read), "
        "or the GBS server's NURL (write-http, verify-http)",
    )
    parser.add_argument(
        "manifest", help="manifest to write (write, write-http) or to check against (read, verify-http)"
    )
    args = parser.parse_args(argv)
    if args.command.endswith("-http"):
        try:
            Nurl.parse(args.where)
        except ValueError as e:
            parser.error(str(e))
    # The -http commands exit from inside the Twisted reactor.
    return COMMANDS[args.command](args.where, args.manifest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
