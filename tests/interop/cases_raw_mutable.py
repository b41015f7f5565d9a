"""Raw cases for mutable shares (read-test-write, reads) and leases."""

from __future__ import annotations

import os

import gbs_wire as wire
from checks import check, check_content_type, check_equal, check_status
from gbs_wire import CBOR, MAX_MUTABLE_SHARE_SIZE, OCTET_STREAM, Secrets
from suite import Context, case


@case
async def raw_rtw_response_shape(ctx: Context) -> None:
    si, we = ctx.new_si(), ctx.secret()
    vectors = {2: wire.test_write_vector(test=[(0, 1, b"")], write=[(0, b"hello")])}
    created = ctx.raw.rtw(si, Secrets.for_rtw(we), vectors, [(0, 5)])
    check_status(created, 200, "create")
    check_content_type(created, CBOR, "create")
    check_equal(created.cbor(), {"success": True, "data": {}}, "create response")
    again = ctx.raw.rtw(si, Secrets.for_rtw(we), vectors, [(1, 3)])
    check_equal(again.cbor(), {"success": False, "data": {2: [b"ell"]}}, "repeated create response")


@case
async def raw_rtw_write_enabler_mismatch_is_401(ctx: Context) -> None:
    si, we = ctx.new_si(), ctx.secret()
    original = os.urandom(40)
    ctx.raw.setup_mutable(si, {0: original, 1: b"second"}, we)
    evil = {0: wire.test_write_vector(write=[(0, b"EVIL")]), 5: wire.test_write_vector(write=[(0, b"new")])}
    for label, vectors in [("write", evil), ("read only", {}), ("delete", {1: wire.test_write_vector(new_length=0)})]:
        response = ctx.raw.rtw(si, Secrets.for_rtw(ctx.secret()), vectors, [(0, 40)])
        check_status(response, 401, label + " with another write enabler")
        check(original not in response.body, label + ": 401 body leaks share data")
    check_equal(ctx.raw.read_whole("mutable", si, 0), original, "share 0 afterwards")
    check_equal(ctx.raw.list_shares("mutable", si).cbor(), {0, 1}, "shares afterwards")


@case
async def raw_rtw_past_max_size(ctx: Context) -> None:
    """A write ending past the maximum mutable share size. Stock raises
    DataTooLarge (500); gbs must refuse it with 400 or 413."""
    si = ctx.new_si()
    vectors = {0: wire.test_write_vector(write=[(MAX_MUTABLE_SHARE_SIZE, b"x")])}
    response = ctx.raw.rtw(si, Secrets.for_rtw(ctx.secret()), vectors)
    check_status(response, ctx.expect(stock=500, gbs={400, 413}), "write at the maximum size")


@case
async def raw_mutable_reads(ctx: Context) -> None:
    si, data = ctx.new_si(), os.urandom(100)
    ctx.raw.setup_mutable(si, {7: data}, ctx.secret())
    whole = ctx.raw.read("mutable", si, 7)
    check_status(whole, 200, "read without Range")
    check_equal(whole.body, data, "whole share")
    check_content_type(whole, OCTET_STREAM, "read without Range")
    partial = ctx.raw.read("mutable", si, 7, "bytes=90-199")
    check_status(partial, 206, "read past end")
    check_equal(partial.body, data[90:], "truncated read")
    check_status(ctx.raw.read("mutable", si, 7, "bytes=100-109"), 204, "read starting at end")
    bad = ctx.raw.read("mutable", si, 7, "bytes=10-")
    check_status(bad, 416, "open-ended Range")
    check_content_type(bad, OCTET_STREAM, "open-ended Range")
    missing = ctx.raw.read("mutable", si, 8, "bytes=0-5")
    check_status(missing, 404, "missing share")
    check_content_type(missing, OCTET_STREAM, "missing share")


# --- leases ----------------------------------------------------------------


@case
async def raw_lease_states(ctx: Context) -> None:
    immutable_si, mutable_si, uploading = ctx.new_si(), ctx.new_si(), ctx.new_si()
    ctx.raw.setup_immutable(immutable_si, {0: b"immutable"})
    ctx.raw.setup_mutable(mutable_si, {0: b"mutable"}, ctx.secret())
    ctx.raw.setup_allocate(uploading, [0], 10)
    lease = Secrets.for_lease()
    for label, si in [("immutable", immutable_si), ("mutable", mutable_si)]:
        for attempt in ("add", "renew"):
            response = ctx.raw.lease(si, lease)
            check_status(response, 204, "{} lease {}".format(label, attempt))
            check_equal(response.body, b"", "{} lease {} body".format(label, attempt))
    check_status(ctx.raw.lease(ctx.new_si(), lease), 404, "lease on unknown SI")
    check_status(ctx.raw.lease(uploading, lease), 404, "lease on an SI that is only uploading")
    check_equal(ctx.raw.read_whole("immutable", immutable_si, 0), b"immutable", "immutable share afterwards")
    check_equal(ctx.raw.read_whole("mutable", mutable_si, 0), b"mutable", "mutable share afterwards")
