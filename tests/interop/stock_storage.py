"""Write or verify a node storage directory with stock Tahoe 1.20's own code.

Usage:
  stock_storage.py write NODE_STORAGE_DIR MANIFEST_OUT
  stock_storage.py read  NODE_STORAGE_DIR MANIFEST_IN

``write`` fills NODE_STORAGE_DIR (the node's ``storage`` directory, which
holds ``shares/``) through ``allmydata.storage.server.StorageServer`` and
describes every share in a JSON manifest. ``read`` opens a directory that
another implementation wrote from the same kind of manifest and checks, with
stock code, that every listed share, lease and write enabler is there.
No network is involved. The manifest format is in README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Optional

from allmydata.interfaces import BadWriteEnablerError
from allmydata.storage.common import si_a2b, si_b2a, storage_index_to_dir
from allmydata.storage.immutable import ShareFile
from allmydata.storage.mutable import MutableShareFile
from allmydata.storage.server import StorageServer

MANIFEST_VERSION = 1
# Share data up to this size goes into the manifest as hex; larger shares are
# described by sha256 + length to keep the manifest small.
INLINE_LIMIT = 64 * 1024
LEASE_SECONDS = 31 * 24 * 60 * 60


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


# --- write -----------------------------------------------------------------


def write_immutables(ss: StorageServer, shares: dict[int, bytes], extra_leases: int = 0) -> list[ShareEntry]:
    """Upload complete immutable shares of one new SI (equal sizes), the way
    an HTTP upload would: allocate, write out of order, close."""
    si, lease = os.urandom(16), Lease.new()
    size = len(next(iter(shares.values())))
    _, writers = ss.allocate_buckets(si, lease.renew, lease.cancel, set(shares), size)
    assert set(writers) == set(shares), "allocation refused"
    for shnum, data in shares.items():
        half = len(data) // 2
        for offset, piece in [(half, data[half:]), (0, data[:half])]:
            if piece:  # the writer rejects empty writes
                writers[shnum].write(offset, piece)
        writers[shnum].close()
    entries = [ShareEntry("immutable", si, n, d, lease) for n, d in shares.items()]
    add_extra_leases(ss, si, entries, extra_leases)
    return entries


def write_mutable(
    ss: StorageServer, si: bytes, we: bytes, shnum: int, writes, new_length=None, lease=None
) -> Lease:
    """Apply write vectors to one mutable share; the lease (fresh unless
    given) is added or renewed. Returns the lease."""
    lease = lease or Lease.new()
    secrets = (we, lease.renew, lease.cancel)
    ok, _ = ss.slot_testv_and_readv_and_writev(si, secrets, {shnum: ([], writes, new_length)}, [])
    assert ok, "mutable write refused"
    return lease


def add_extra_leases(ss: StorageServer, si: bytes, entries: list[ShareEntry], count: int) -> None:
    """Add ``count`` more leases to every share of ``si``."""
    for _ in range(count):
        lease = Lease.new()
        ss.add_lease(si, lease.renew, lease.cancel)
        for entry in entries:
            entry.extra_leases.append(lease)


def write_all(ss: StorageServer) -> list[ShareEntry]:
    r = os.urandom
    # Immutable: tiny, small, several per SI, above the inline limit, > 1 MiB.
    return [
        *write_immutables(ss, {0: r(1), 1: r(1), 2: r(1)}),
        *write_immutables(ss, {0: r(1000), 5: r(1000), 9: r(1000)}, extra_leases=2),
        *write_immutables(ss, {7: r(70_000)}),
        *write_immutables(ss, {3: r(1024 * 1024 + 12345), 4: r(1024 * 1024 + 12345)}),
        *write_mutables(ss),
    ]


def write_mutables(ss: StorageServer) -> list[ShareEntry]:
    r, entries = os.urandom, []
    # Mutable SI with three shares written by separate requests (own leases):
    # plain, one with a zero-filled gap, one truncated by new-length.
    si, we = r(16), r(32)
    plain, tail, long_data = r(10), r(50), r(3000)
    entries.append(ShareEntry("mutable", si, 0, plain, write_mutable(ss, si, we, 0, [(0, plain)]), we))
    entries.append(ShareEntry("mutable", si, 1, b"\0" * 100 + tail, write_mutable(ss, si, we, 1, [(100, tail)]), we))
    truncated = ShareEntry("mutable", si, 2, long_data[:2000], write_mutable(ss, si, we, 2, [(0, long_data)]), we)
    truncated.extra_leases.append(write_mutable(ss, si, we, 2, [], new_length=2000))
    entries.append(truncated)

    # Mutable share with more leases than the four header slots, grown to over
    # 1 MiB afterwards, so the extra-lease block has to move.
    si, we, big = r(16), r(32), r(1024 * 1024 + 4321)
    entry = ShareEntry("mutable", si, 0, big, write_mutable(ss, si, we, 0, [(0, big[:100])]), we)
    add_extra_leases(ss, si, [entry], 5)
    write_mutable(ss, si, we, 0, [(100, big[100:])], lease=entry.lease)
    entries.append(entry)

    # An empty mutable share: named in a request without any writes.
    si, we = r(16), r(32)
    entries.append(ShareEntry("mutable", si, 4, b"", write_mutable(ss, si, we, 4, []), we))
    return entries


def command_write(storage_dir: str, manifest_path: str) -> int:
    ss = open_server(storage_dir)
    entries = write_all(ss)
    manifest = {"version": MANIFEST_VERSION, "shares": [e.to_json() for e in entries]}
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1)
    print("wrote {} shares".format(len(entries)))
    return 0


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


def parse_entries(entries: list[dict]) -> tuple[list[Expected], int]:
    """Parsed entries, and how many were malformed (each printed as FAIL)."""
    parsed, bad = [], 0
    for i, entry in enumerate(entries):
        try:
            parsed.append(Expected.from_json(entry))
        except (Mismatch, KeyError, ValueError, TypeError) as e:
            print("FAIL manifest entry {}: {} {}".format(i, type(e).__name__, e))
            bad += 1
    return parsed, bad


def command_read(storage_dir: str, manifest_path: str) -> int:
    with open(manifest_path) as f:
        manifest = json.load(f)
    if manifest.get("version") != MANIFEST_VERSION:
        print("FAIL manifest: version {!r}, expected {}".format(manifest.get("version"), MANIFEST_VERSION))
        print("0 passed, 1 failed")
        return 1
    ss = open_server(storage_dir)
    expected, failed = parse_entries(manifest["shares"])
    passed = 0
    for exp in expected:
        try:
            verify_share(ss, exp)
        except Mismatch as e:
            print("FAIL {}: {}".format(exp.label, e))
            failed += 1
        except Exception as e:  # stock code choked on the container
            print("FAIL {}: stock code raised {}: {}".format(exp.label, type(e).__name__, e))
            failed += 1
        else:
            print("PASS " + exp.label)
            passed += 1
    set_failures = verify_share_sets(ss, expected)
    for si in {exp.si for exp in expected}:
        label = "share set {}".format(si_b2a(si).decode("ascii"))
        if si in set_failures:
            print("FAIL {}: {}".format(label, set_failures[si]))
            failed += 1
        else:
            print("PASS " + label)
            passed += 1
    print("{} passed, {} failed".format(passed, failed))
    return 0 if failed == 0 else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["write", "read"])
    parser.add_argument("storage_dir", help="the node's storage directory (contains shares/)")
    parser.add_argument("manifest", help="manifest to write (write) or to check against (read)")
    args = parser.parse_args(argv)
    if args.command == "write":
        return command_write(args.storage_dir, args.manifest)
    return command_read(args.storage_dir, args.manifest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
