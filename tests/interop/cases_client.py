"""Cases driven through the real stock Tahoe 1.20 HTTP storage client.

These prove that an unmodified Tahoe client can use the server for every
endpoint, and that what it reads back is what it wrote.
"""

from __future__ import annotations

import os

from allmydata.storage.http_client import (
    ClientException,
    ReadVector,
    TestVector,
    TestWriteVectors,
    WriteVector,
)

from checks import CaseFailure, check, check_equal
from suite import Context, case

V1 = b"http://allmydata.org/tahoe/protocols/storage/v1"
U64 = 2**64


async def expect_client_error(awaitable, code: int, what: str) -> None:
    """The stock client raises ``ClientException`` carrying the status."""
    try:
        await awaitable
    except ClientException as e:
        check_equal(e.code, code, what + ": status")
    else:
        raise CaseFailure("{}: expected HTTP {}, the call succeeded".format(what, code))


def ranges(progress) -> list[tuple[int, int]]:
    """Still-required byte ranges of an ``UploadProgress``, half-open."""
    return [(start, stop) for start, stop, _ in progress.required.ranges()]


async def upload(ctx: Context, si: bytes, shares: dict[int, bytes]):
    """Allocate and upload complete immutable shares (equal lengths)."""
    size = len(next(iter(shares.values())))
    upload_secret, renew, cancel = ctx.secret(20), ctx.secret(), ctx.secret()
    created = await ctx.immutables.create(si, set(shares), size, upload_secret, renew, cancel)
    check_equal(created.allocated, set(shares), "allocate: allocated")
    for shnum, data in shares.items():
        progress = await ctx.immutables.write_share_chunk(si, shnum, upload_secret, 0, data)
        check(progress.finished, "share {} not finished after a full write".format(shnum))
    return renew, cancel


async def rtw(ctx: Context, si: bytes, write_enabler: bytes, vectors: dict, reads=()):
    """One read-test-write with fresh lease secrets (as a second client
    would send); ``reads`` is a list of (offset, size)."""
    return await ctx.mutables.read_test_write_chunks(
        si, write_enabler, ctx.secret(), ctx.secret(), vectors, [ReadVector(o, s) for o, s in reads]
    )


def write(data: bytes, offset: int = 0, new_length=None, tests=()) -> TestWriteVectors:
    """One share's vectors: optional (offset, size, specimen) tests, then
    ``data`` at ``offset`` (nothing if empty), then ``new_length``."""
    return TestWriteVectors(
        test_vectors=[TestVector(o, s, spec) for o, s, spec in tests],
        write_vectors=[WriteVector(offset, data)] if data else [],
        new_length=new_length,
    )


async def create_mutable(ctx: Context, si: bytes, shares: dict[int, bytes], write_enabler: bytes):
    result = await rtw(ctx, si, write_enabler, {n: write(d) for n, d in shares.items()})
    check(result.success, "creating mutable shares failed")


# --- general ---------------------------------------------------------------


@case
async def client_version(ctx: Context) -> None:
    version = await ctx.general.get_version()
    inner = version[V1]
    for key in (b"maximum-immutable-share-size", b"maximum-mutable-share-size", b"available-space"):
        value = inner[key]
        check(isinstance(value, int) and 0 <= value < U64, "{!r} = {!r} is not a u64".format(key, value))
    check(inner[b"maximum-mutable-share-size"] > 0, "maximum-mutable-share-size is 0")
    app = version[b"application-version"]
    check(isinstance(app, bytes) and app, "application-version empty")
    if ctx.is_stock:
        check(app.startswith(b"tahoe-lafs/1.20"), "unexpected stock version {!r}".format(app))


# --- immutable -------------------------------------------------------------


@case
async def client_immutable_upload_out_of_order(ctx: Context) -> None:
    """Chunks in any order, overlapping ones included; the required ranges
    shrink as expected and only the last chunk completes the share. Large
    enough that the server buffers bodies to disk."""
    si, size = ctx.new_si(), 1_200_123
    data = os.urandom(size)
    secret = ctx.secret(20)
    created = await ctx.immutables.create(si, {0, 1, 2}, size, secret, ctx.secret(), ctx.secret())
    check_equal(created.allocated, {0, 1, 2}, "allocated")
    check_equal(created.already_have, set(), "already-have")

    steps = [
        (800_000, size, [(0, 800_000)]),
        (0, 300_000, [(300_000, 800_000)]),
        (250_000, 500_000, [(500_000, 800_000)]),  # overlaps what is there
        (450_000, 850_000, []),  # overlaps both neighbours, fills the hole
    ]
    for start, end, still_required in steps:
        progress = await ctx.immutables.write_share_chunk(si, 0, secret, start, data[start:end])
        check_equal(ranges(progress), still_required, "required after writing {}-{}".format(start, end))
        check_equal(progress.finished, not still_required, "finished after writing {}-{}".format(start, end))

    others = {1: os.urandom(size), 2: os.urandom(size)}
    for shnum, share in others.items():
        progress = await ctx.immutables.write_share_chunk(si, shnum, secret, 0, share)
        check(progress.finished, "share {} not finished".format(shnum))

    check_equal(await ctx.immutables.list_shares(si), {0, 1, 2}, "listed shares")
    for shnum, expected in {0: data, **others}.items():
        got = await ctx.immutables.read_share_chunk(si, shnum, 0, size)
        check(got == expected, "share {} read back differs ({} bytes)".format(shnum, len(got)))


@case
async def client_immutable_ranged_reads(ctx: Context) -> None:
    si, data = ctx.new_si(), os.urandom(1000)
    await upload(ctx, si, {3: data})
    for offset, length in [(0, 1000), (100, 50), (999, 1), (990, 100), (1000, 5), (5000, 5)]:
        got = await ctx.immutables.read_share_chunk(si, 3, offset, length)
        check_equal(got, data[offset : offset + length], "read {}+{}".format(offset, length))


@case
async def client_immutable_allocate_existing_and_in_progress(ctx: Context) -> None:
    """Completed shares come back as already-have (even unrequested ones);
    a share someone else is uploading is neither allocated nor had."""
    si, data = ctx.new_si(), os.urandom(64)
    await upload(ctx, si, {0: data})

    first = ctx.secret(20)
    created = await ctx.immutables.create(si, {0, 1}, 64, first, ctx.secret(), ctx.secret())
    check_equal(created.already_have, {0}, "already-have")
    check_equal(created.allocated, {1}, "allocated")

    second = ctx.secret(20)
    created = await ctx.immutables.create(si, {1, 2}, 64, second, ctx.secret(), ctx.secret())
    check_equal(created.already_have, {0}, "already-have while 1 is in progress")
    check_equal(created.allocated, {2}, "allocated while 1 is in progress")

    await expect_client_error(
        ctx.immutables.write_share_chunk(si, 1, second, 0, data), 401, "write share 1 with the other upload's secret"
    )
    check_equal(await ctx.immutables.list_shares(si), {0}, "in-progress shares are not listed")


@case
async def client_immutable_abort(ctx: Context) -> None:
    si, secret = ctx.new_si(), ctx.secret(20)
    await ctx.immutables.create(si, {0}, 100, secret, ctx.secret(), ctx.secret())
    await ctx.immutables.write_share_chunk(si, 0, secret, 0, b"x" * 50)
    await ctx.immutables.abort_upload(si, 0, secret)
    check_equal(await ctx.immutables.list_shares(si), set(), "shares after abort")
    await expect_client_error(ctx.immutables.read_share_chunk(si, 0, 0, 10), 404, "read aborted share")

    # The share number is free again, and nothing of the aborted data is left.
    data = os.urandom(100)
    await upload(ctx, si, {0: data})
    check_equal(await ctx.immutables.read_share_chunk(si, 0, 0, 100), data, "re-uploaded share")


@case
async def client_immutable_conflicting_write(ctx: Context) -> None:
    si, secret, data = ctx.new_si(), ctx.secret(20), os.urandom(20)
    await ctx.immutables.create(si, {0}, 20, secret, ctx.secret(), ctx.secret())
    await ctx.immutables.write_share_chunk(si, 0, secret, 0, data[:10])
    clash = bytes(b ^ 0xFF for b in data[5:10]) + data[10:15]
    await expect_client_error(ctx.immutables.write_share_chunk(si, 0, secret, 5, clash), 409, "conflicting write")
    progress = await ctx.immutables.write_share_chunk(si, 0, secret, 10, data[10:])
    check(progress.finished, "upload not finished")
    check_equal(await ctx.immutables.read_share_chunk(si, 0, 0, 20), data, "share after conflict")


@case
async def client_immutable_advise_corrupt(ctx: Context) -> None:
    si, data = ctx.new_si(), os.urandom(40)
    await upload(ctx, si, {1: data})
    await ctx.immutables.advise_corrupt_share(si, 1, "checksum mismatch in block 0")
    check_equal(await ctx.immutables.read_share_chunk(si, 1, 0, 40), data, "share after advisory")
    await expect_client_error(ctx.immutables.advise_corrupt_share(si, 2, "nope"), 404, "advise missing share")


# --- leases ----------------------------------------------------------------


@case
async def client_lease_add_and_renew(ctx: Context) -> None:
    immutable_si, mutable_si = ctx.new_si(), ctx.new_si()
    renew, cancel = await upload(ctx, immutable_si, {0: b"leased"})
    await create_mutable(ctx, mutable_si, {0: b"leased too"}, ctx.secret())
    for si in (immutable_si, mutable_si):
        renew2, cancel2 = ctx.secret(), ctx.secret()
        await ctx.general.add_or_renew_lease(si, renew2, cancel2)  # adds
        await ctx.general.add_or_renew_lease(si, renew2, cancel2)  # renews
    await ctx.general.add_or_renew_lease(immutable_si, renew, cancel)  # the allocate's lease
    await expect_client_error(
        ctx.general.add_or_renew_lease(ctx.new_si(), ctx.secret(), ctx.secret()), 404, "lease on unknown SI"
    )
    check_equal(await ctx.immutables.read_share_chunk(immutable_si, 0, 0, 100), b"leased", "data after leases")


# --- mutable ---------------------------------------------------------------


@case
async def client_mutable_create_if_new(ctx: Context) -> None:
    """The "write only if the share is still empty" idiom: a test of
    (0, 1, b"") passes only while the share is absent or empty."""
    si, we = ctx.new_si(), ctx.secret()
    if_new = [(0, 1, b"")]
    first = await rtw(ctx, si, we, {0: write(b"first", tests=if_new)}, reads=[(0, 5)])
    check_equal(first.success, True, "first create")
    check_equal(dict(first.reads), {}, "reads of an empty slot")

    second = await rtw(ctx, si, we, {0: write(b"second", tests=if_new)}, reads=[(0, 5)])
    check_equal(second.success, False, "second create")
    check_equal(dict(second.reads), {0: [b"first"]}, "reads returned by the failed test")
    check_equal(await ctx.mutables.read_share_chunk(si, 0, 0, 100), b"first", "share after failed test")


@case
async def client_mutable_test_failure_returns_all_reads(ctx: Context) -> None:
    """Reads cover every existing share (named or not) and are returned
    whether or not the tests pass; a passing specimen test lets writes in."""
    si, we = ctx.new_si(), ctx.secret()
    shares = {0: b"zero-zero", 1: b"one-one-one", 4: b"four"}
    await create_mutable(ctx, si, shares, we)
    reads = [(0, 3), (5, 100)]
    expected_reads = {n: [d[0:3], d[5:105]] for n, d in shares.items()}

    failed = await rtw(ctx, si, we, {0: write(b"XX", tests=[(0, 4, b"nope")])}, reads)
    check_equal(failed.success, False, "mismatching test")
    check_equal(dict(failed.reads), expected_reads, "reads on failure")

    passed = await rtw(ctx, si, we, {0: write(b"ZE", tests=[(0, 4, b"zero")])}, reads)
    check_equal(passed.success, True, "matching test")
    check_equal(dict(passed.reads), expected_reads, "reads are taken before writing")
    check_equal(await ctx.mutables.read_share_chunk(si, 0, 0, 100), b"ZEro-zero", "share 0 after write")
    check_equal(await ctx.mutables.read_share_chunk(si, 1, 0, 100), shares[1], "untouched share 1")


@case
async def client_mutable_wrong_write_enabler(ctx: Context) -> None:
    si, we = ctx.new_si(), ctx.secret()
    await create_mutable(ctx, si, {0: b"owned"}, we)
    await expect_client_error(rtw(ctx, si, ctx.secret(), {0: write(b"EVIL")}), 401, "write with wrong enabler")
    await expect_client_error(rtw(ctx, si, ctx.secret(), {}, reads=[(0, 5)]), 401, "read-only RTW with wrong enabler")
    check_equal(await ctx.mutables.read_share_chunk(si, 0, 0, 100), b"owned", "share after rejected write")


@case
async def client_mutable_new_length_zero_deletes(ctx: Context) -> None:
    si, we = ctx.new_si(), ctx.secret()
    await create_mutable(ctx, si, {0: b"keep", 1: b"drop"}, we)
    result = await rtw(ctx, si, we, {1: write(b"ignored", new_length=0)})
    check(result.success, "delete share 1 failed")
    check_equal(await ctx.mutables.list_shares(si), {0}, "shares after deleting 1")
    await expect_client_error(ctx.mutables.read_share_chunk(si, 1, 0, 4), 404, "read deleted share")

    result = await rtw(ctx, si, we, {0: write(b"", new_length=0)})
    check(result.success, "delete share 0 failed")
    check_equal(await ctx.mutables.list_shares(si), set(), "shares after deleting all")
    # With no shares left nothing binds the old write enabler any more.
    await create_mutable(ctx, si, {2: b"fresh"}, ctx.secret())
    check_equal(await ctx.mutables.read_share_chunk(si, 2, 0, 10), b"fresh", "share created after deletion")


@case
async def client_mutable_gap_zero_fill(ctx: Context) -> None:
    si, we = ctx.new_si(), ctx.secret()
    check((await rtw(ctx, si, we, {0: write(b"abc", offset=10)})).success, "write past end")
    check_equal(await ctx.mutables.read_share_chunk(si, 0, 0, 100), b"\0" * 10 + b"abc", "gap is zero-filled")


@case
async def client_mutable_truncate_then_extend(ctx: Context) -> None:
    """Bytes cut off by new-length never come back when the share grows
    again; a larger new-length does not extend."""
    si, we = ctx.new_si(), ctx.secret()
    await create_mutable(ctx, si, {0: b"0123456789"}, we)
    check((await rtw(ctx, si, we, {0: write(b"", new_length=4)})).success, "truncate")
    check_equal(await ctx.mutables.read_share_chunk(si, 0, 0, 100), b"0123", "after truncate")
    check((await rtw(ctx, si, we, {0: write(b"X", offset=8)})).success, "write past end")
    check_equal(await ctx.mutables.read_share_chunk(si, 0, 0, 100), b"0123\0\0\0\0X", "after regrowing")
    check((await rtw(ctx, si, we, {0: write(b"", new_length=50)})).success, "larger new-length")
    check_equal(await ctx.mutables.read_share_chunk(si, 0, 0, 100), b"0123\0\0\0\0X", "larger new-length ignored")


@case
async def client_mutable_read_list_corrupt(ctx: Context) -> None:
    si, we = ctx.new_si(), ctx.secret()
    shares = {0: os.urandom(300), 3: os.urandom(70_000)}
    await create_mutable(ctx, si, shares, we)
    check_equal(await ctx.mutables.list_shares(si), {0, 3}, "listed shares")
    share = shares[3]
    for offset, length in [(0, len(share)), (2, 5), (len(share) - 2, 10), (len(share), 4)]:
        got = await ctx.mutables.read_share_chunk(si, 3, offset, length)
        check_equal(got, share[offset : offset + length], "read {}+{}".format(offset, length))
    await ctx.mutables.advise_corrupt_share(si, 3, "bad signature")
    await expect_client_error(ctx.mutables.advise_corrupt_share(si, 5, "nope"), 404, "advise missing share")
    await expect_client_error(ctx.mutables.read_share_chunk(si, 5, 0, 4), 404, "read missing share")
    check_equal(await ctx.mutables.read_share_chunk(si, 0, 0, 300), shares[0], "share 0 after advisory")


@case
async def client_unknown_storage_index_lists_empty(ctx: Context) -> None:
    si = ctx.new_si()
    check_equal(await ctx.immutables.list_shares(si), set(), "immutable listing")
    check_equal(await ctx.mutables.list_shares(si), set(), "mutable listing")
