"""Raw cases for immutable shares: allocate, PATCH, abort, read, corrupt."""

from __future__ import annotations

import os
import re

from checks import check, check_content_type, check_equal, check_status
from gbs_wire import CBOR, OCTET_STREAM, Secrets
from suite import Context, case

CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\*|\d+)$")


@case
async def raw_allocate_response_shape(ctx: Context) -> None:
    si = ctx.new_si()
    ctx.raw.setup_immutable(si, {0: b"have it"})
    response = ctx.raw.allocate(si, Secrets.for_allocate(), [0, 1, 2], 7)
    check_status(response, 200, "allocate")
    check_content_type(response, CBOR, "allocate")
    body = response.cbor()
    check_equal(body, {"already-have": {0}, "allocated": {1, 2}}, "allocate response")
    check(response.body.count(bytes.fromhex("d90102")) == 2, "sets are not both tagged 258")


@case
async def raw_patch_response_shape(ctx: Context) -> None:
    """200 plus the still-required ranges while incomplete; 201 with an empty
    list once the last byte arrives."""
    si, data = ctx.new_si(), os.urandom(48)
    secrets = ctx.raw.setup_allocate(si, [0], 48)
    partial = ctx.raw.patch(si, 0, secrets.upload, 0, data[:16])
    check_status(partial, 200, "partial PATCH")
    check_content_type(partial, CBOR, "partial PATCH")
    check_equal(partial.cbor(), {"required": [{"begin": 16, "end": 48}]}, "partial PATCH body")
    middle = ctx.raw.patch(si, 0, secrets.upload, 30, data[30:40])
    check_equal(middle.cbor(), {"required": [{"begin": 16, "end": 30}, {"begin": 40, "end": 48}]}, "two holes")
    done = ctx.raw.patch(si, 0, secrets.upload, 0, data)
    check_status(done, 201, "completing PATCH")
    check_equal(done.cbor(), {"required": []}, "completing PATCH body")
    check_equal(ctx.raw.read_whole("immutable", si, 0), data, "share read back")


@case
async def raw_patch_content_range_invalid_is_416(ctx: Context) -> None:
    si, data = ctx.new_si(), os.urandom(10)
    secrets = ctx.raw.setup_allocate(si, [0], 10)
    for content_range in ["", "bytes 5-2/*", "items 0-9/*", "bytes=0-9", "bytes 0-9", "garbage", "bytes 9-10/5"]:
        response = ctx.raw.patch(si, 0, secrets.upload, 0, data, content_range=content_range)
        check_status(response, 416, "Content-Range {!r}".format(content_range))
    check_status(ctx.raw.patch(si, 0, secrets.upload, 0, data), 201, "valid PATCH afterwards")
    check_equal(ctx.raw.read_whole("immutable", si, 0), data, "share read back")


@case
async def raw_patch_unsatisfied_range_form(ctx: Context) -> None:
    """``bytes */N`` names no range at all. Stock crashes (500); gbs: 416."""
    si = ctx.new_si()
    secrets = ctx.raw.setup_allocate(si, [0], 10)
    response = ctx.raw.patch(si, 0, secrets.upload, 0, b"0123456789", content_range="bytes */10")
    check_status(response, ctx.expect(stock=500, gbs=416), "Content-Range bytes */10")


@case
async def raw_patch_wrong_upload_secret_is_401(ctx: Context) -> None:
    si, data = ctx.new_si(), os.urandom(10)
    secrets = ctx.raw.setup_allocate(si, [0], 10)
    check_status(ctx.raw.patch(si, 0, os.urandom(20), 0, data), 401, "PATCH with another secret")
    check_status(ctx.raw.abort(si, 0, os.urandom(20)), 401, "abort with another secret")
    check_status(ctx.raw.patch(si, 0, secrets.upload, 0, data), 201, "PATCH with the right secret")
    check_equal(ctx.raw.read_whole("immutable", si, 0), data, "share read back")


@case
async def raw_patch_conflict_is_409(ctx: Context) -> None:
    si, data = ctx.new_si(), os.urandom(20)
    secrets = ctx.raw.setup_allocate(si, [0], 20)
    check_status(ctx.raw.patch(si, 0, secrets.upload, 0, data[:10]), 200, "first half")
    clash = data[5:9] + bytes([data[9] ^ 1]) + data[10:15]
    check_status(ctx.raw.patch(si, 0, secrets.upload, 5, clash), 409, "overlap with one differing byte")
    check_status(ctx.raw.patch(si, 0, secrets.upload, 5, data[5:20]), 201, "matching overlap completes")
    check_equal(ctx.raw.read_whole("immutable", si, 0), data, "share read back")


@case
async def raw_patch_unallocated_is_404(ctx: Context) -> None:
    si = ctx.new_si()
    check_status(ctx.raw.patch(si, 0, os.urandom(20), 0, b"data"), 404, "PATCH never allocated")
    done_si = ctx.new_si()
    secrets = ctx.raw.setup_immutable(done_si, {0: b"done"})
    check_status(ctx.raw.patch(done_si, 0, secrets.upload, 0, b"done"), 404, "PATCH completed share")
    check_equal(ctx.raw.read_whole("immutable", done_si, 0), b"done", "completed share unchanged")


@case
async def raw_patch_short_body(ctx: Context) -> None:
    """Content-Range promises 100 bytes, the body has 50. Stock: 500; gbs: 400."""
    si = ctx.new_si()
    secrets = ctx.raw.setup_allocate(si, [0], 100)
    response = ctx.raw.patch(si, 0, secrets.upload, 0, b"x" * 50, content_range="bytes 0-99/*")
    check_status(response, ctx.expect(stock=500, gbs=400), "short PATCH body")


@case
async def raw_patch_beyond_allocation(ctx: Context) -> None:
    """Bytes 5-14 of a 10-byte share. Stock: 500; gbs: a 4xx (400/413/416)."""
    si = ctx.new_si()
    secrets = ctx.raw.setup_allocate(si, [0], 10)
    response = ctx.raw.patch(si, 0, secrets.upload, 5, b"y" * 10)
    check_status(response, ctx.expect(stock=500, gbs={400, 413, 416}), "PATCH past allocated size")
    check_status(ctx.raw.read("immutable", si, 0), 404, "share still incomplete")


@case
async def raw_abort_states(ctx: Context) -> None:
    si = ctx.new_si()
    check_status(ctx.raw.abort(si, 0, os.urandom(20)), 404, "abort never allocated")
    secrets = ctx.raw.setup_allocate(si, [0, 1], 10)
    check_status(ctx.raw.patch(si, 1, secrets.upload, 0, b"0123456789"), 201, "complete share 1")
    check_status(ctx.raw.abort(si, 1, secrets.upload), 405, "abort completed share")
    check_status(ctx.raw.abort(si, 0, secrets.upload), 200, "abort in-progress share")
    check_status(ctx.raw.abort(si, 0, secrets.upload), 404, "abort twice")
    check_equal(ctx.raw.list_shares("immutable", si).cbor(), {1}, "shares after abort")
    again = ctx.raw.setup_allocate(si, [0], 10)
    check_status(ctx.raw.patch(si, 0, again.upload, 0, b"abcdefghij"), 201, "re-upload aborted share")
    check_equal(ctx.raw.read_whole("immutable", si, 1), b"0123456789", "completed share intact")


@case
async def raw_read_ranges(ctx: Context) -> None:
    si, data = ctx.new_si(), os.urandom(26)
    ctx.raw.setup_immutable(si, {0: data})
    whole = ctx.raw.read("immutable", si, 0)
    check_status(whole, 200, "read without Range")
    check_equal(whole.body, data, "whole share")
    check_content_type(whole, OCTET_STREAM, "read without Range")
    for first, last in [(0, 25), (10, 100), (0, 0), (25, 25), (3, 7)]:
        response = ctx.raw.read("immutable", si, 0, "bytes={}-{}".format(first, last))
        check_partial(response, data, first, last)


def check_partial(response, data: bytes, first: int, last: int) -> None:
    what = "Range bytes={}-{}".format(first, last)
    check_status(response, 206, what)
    check_content_type(response, OCTET_STREAM, what)
    end = min(last + 1, len(data))
    match = CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    check(match is not None, "{}: bad Content-Range {!r}".format(what, response.headers.get("Content-Range")))
    check_equal((int(match[1]), int(match[2])), (first, end - 1), what + ": Content-Range")
    check(match[3] in ("*", str(len(data))), "{}: Content-Range total {}".format(what, match[3]))
    check_equal(response.body, data[first:end], what + ": body")


@case
async def raw_read_past_end_is_204(ctx: Context) -> None:
    si = ctx.new_si()
    ctx.raw.setup_immutable(si, {0: os.urandom(26)})
    for header in ["bytes=26-30", "bytes=26-26", "bytes=100-200"]:
        response = ctx.raw.read("immutable", si, 0, header)
        check_status(response, 204, header)
        check_equal(response.body, b"", header + ": body")


@case
async def raw_read_bad_range_is_416(ctx: Context) -> None:
    si = ctx.new_si()
    ctx.raw.setup_immutable(si, {0: os.urandom(26)})
    for header in ["bytes=-5", "bytes=5-", "bytes=0-1,3-4", "items=0-5", "bytes=5-2", "garbage"]:
        response = ctx.raw.read("immutable", si, 0, header)
        check_status(response, 416, "Range " + header)
        check_content_type(response, OCTET_STREAM, "Range " + header)


@case
async def raw_read_missing_share_is_404(ctx: Context) -> None:
    si, in_progress = ctx.new_si(), ctx.new_si()
    ctx.raw.setup_immutable(si, {0: b"present"})
    ctx.raw.setup_allocate(in_progress, [0], 10)
    for kind, what_si, shnum, label in [
        ("immutable", si, 3, "missing share of a known SI"),
        ("immutable", ctx.new_si(), 0, "unknown SI"),
        ("immutable", in_progress, 0, "share still uploading"),
        ("mutable", ctx.new_si(), 0, "unknown mutable SI"),
    ]:
        response = ctx.raw.read(kind, what_si, shnum, "bytes=0-5")
        check_status(response, 404, label)
        # The stock client checks Content-Type before the status code.
        check_content_type(response, OCTET_STREAM, label)


@case
async def raw_corrupt_missing_share_is_404(ctx: Context) -> None:
    si, in_progress = ctx.new_si(), ctx.new_si()
    ctx.raw.setup_immutable(si, {0: b"present"})
    ctx.raw.setup_allocate(in_progress, [0], 10)
    check_status(ctx.raw.corrupt("immutable", si, 3), 404, "missing immutable share")
    check_status(ctx.raw.corrupt("immutable", in_progress, 0), 404, "share still uploading")
    check_status(ctx.raw.corrupt("mutable", ctx.new_si(), 0), 404, "missing mutable share")
    response = ctx.raw.corrupt("immutable", si, 0)
    check_status(response, 200, "existing share")
    check_equal(response.body, b"", "advisory response body")
    check_equal(ctx.raw.read_whole("immutable", si, 0), b"present", "share after advisory")


@case
async def raw_list_unknown_is_empty_set(ctx: Context) -> None:
    si = ctx.new_si()
    for kind in ("immutable", "mutable"):
        response = ctx.raw.list_shares(kind, si)
        check_status(response, 200, kind + " list")
        check_content_type(response, CBOR, kind + " list")
        check_equal(response.body, bytes.fromhex("d9010280"), kind + " empty set encoding")
