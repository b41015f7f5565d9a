"""Raw cases about request validation: X-Tahoe-Authorization secrets,
CBOR bodies, Content-Type and body size limits."""

from __future__ import annotations

import os

import cbor2

import gbs_wire as wire
from checks import check_no_secret_echo, check_status
from gbs_wire import CBOR, Secrets, secret_header
from gbs_ops import CBOR_HEADERS
from suite import Context, case


# --- X-Tahoe-Authorization -------------------------------------------------


@case
async def raw_secrets_missing_is_400(ctx: Context) -> None:
    si, s, rtw = ctx.new_si(), Secrets.for_allocate(), Secrets.for_rtw()
    allocate_cases = {
        "no secrets": Secrets(),
        "upload only": s.only("upload"),
        "no upload": s.only("renew", "cancel"),
        "no cancel": s.only("renew", "upload"),
    }
    for label, secrets in allocate_cases.items():
        check_status(ctx.raw.allocate(si, secrets, [0], 10), 400, "allocate, " + label)
    check_status(ctx.raw.lease(si, s.only("renew")), 400, "lease without cancel secret")
    check_status(ctx.raw.rtw(si, rtw.only("renew", "cancel")), 400, "RTW without write enabler")
    check_status(ctx.raw.rtw(si, rtw.only("write_enabler")), 400, "RTW without lease secrets")
    check_status(ctx.raw.client.request("PUT", wire.abort_path(si, 0)), 400, "abort without upload secret")
    patch = ctx.raw.client.request(
        "PATCH", wire.immutable_share_path(si, 0), [("Content-Range", "bytes 0-1/*")], b"ab"
    )
    check_status(patch, 400, "PATCH without upload secret")
    ctx.raw.check_untouched(si)


@case
async def raw_secrets_extra_is_400(ctx: Context) -> None:
    si, s = ctx.new_si(), Secrets.for_allocate()
    everything = Secrets(s.renew, s.cancel, s.upload, write_enabler=os.urandom(32))
    check_status(ctx.raw.allocate(si, everything, [0], 10), 400, "allocate with a write enabler too")
    check_status(ctx.raw.lease(si, s), 400, "lease with upload secret")
    check_status(ctx.raw.rtw(si, everything), 400, "RTW with upload secret")
    ctx.raw.check_untouched(si)


@case
async def raw_secret_on_secretless_endpoint_is_400(ctx: Context) -> None:
    si = ctx.new_si()
    ctx.raw.setup_immutable(si, {0: b"share data"})
    stray = [secret_header("upload-secret", os.urandom(20))]
    requests = [
        ("GET", wire.version_path(), None),
        ("GET", wire.immutable_shares_path(si), None),
        ("GET", wire.immutable_share_path(si, 0), None),
        ("GET", wire.mutable_shares_path(si), None),
        ("POST", wire.immutable_corrupt_path(si, 0), wire.corrupt_body("x")),
    ]
    for method, path, body in requests:
        response = ctx.raw.client.request(method, path, [*stray, *CBOR_HEADERS], body)
        check_status(response, 400, "{} {} with a secret".format(method, path))


@case
async def raw_secret_undecodable_is_400(ctx: Context) -> None:
    """Unknown names, missing values and bad base64 are all 400, and the
    error body must not repeat any secret the client sent."""
    si = ctx.new_si()
    lease = Secrets.for_lease()
    bad_values = {
        "base64 of wrong length": ("upload-secret", "YWJjZ"),
        "no value": ("upload-secret", ""),
        "decodes to nothing": ("upload-secret", "!!!!"),
        "unknown name": ("bogus-secret", "YWJjZGVm"),
    }
    for label, (name, value) in bad_values.items():
        line = ("X-Tahoe-Authorization", (name + " " + value).strip())
        headers = [*lease.header_lines(), line, *CBOR_HEADERS]
        response = ctx.raw.client.request("POST", wire.allocate_path(si), headers, wire.allocate_body([0], 10))
        check_status(response, 400, label)
        if ctx.is_stock:
            continue
        check_no_secret_echo(response, [*lease.encoded_values(), value], label)
    if ctx.is_stock:
        ctx.note("stock echoes the sent secrets in its 400 body; the no-echo check is skipped for --target stock")
    ctx.raw.check_untouched(si)


@case
async def raw_lease_secret_wrong_length_is_400(ctx: Context) -> None:
    si = ctx.new_si()
    ctx.raw.setup_immutable(si, {0: b"leased share"})
    for renew_len, cancel_len in [(31, 32), (33, 32), (32, 16), (32, 64)]:
        secrets = Secrets(os.urandom(renew_len), os.urandom(cancel_len))
        label = "renew {} B, cancel {} B".format(renew_len, cancel_len)
        check_status(ctx.raw.lease(si, secrets), 400, "lease with " + label)
        with_upload = Secrets(secrets.renew, secrets.cancel, upload=os.urandom(20))
        check_status(ctx.raw.allocate(si, with_upload, [1], 10), 400, "allocate with " + label)
        with_we = Secrets(secrets.renew, secrets.cancel, write_enabler=os.urandom(32))
        check_status(ctx.raw.rtw(ctx.new_si(), with_we), 400, "RTW with " + label)


# --- CBOR bodies -----------------------------------------------------------


def allocate_variant(**fields) -> bytes:
    """An allocate body with fields replaced (``None`` removes one)."""
    body = {"share-numbers": wire.cbor_set([0]), "allocated-size": 10}
    body.update(fields)
    return cbor2.dumps({k: v for k, v in body.items() if v is not None})


@case
async def raw_allocate_bad_cbor_is_400(ctx: Context) -> None:
    si, secrets = ctx.new_si(), Secrets.for_allocate()
    bodies = {
        "not CBOR": b"this is not cbor",
        "truncated": wire.allocate_body([0], 10)[:-3],
        "empty": b"",
        "unknown key": allocate_variant(extra=1),
        "missing key": allocate_variant(**{"allocated-size": None}),
        "plain array instead of tag 258": allocate_variant(**{"share-numbers": [0, 1]}),
        "text size": allocate_variant(**{"allocated-size": "10"}),
        "negative share number": allocate_variant(**{"share-numbers": cbor2.CBORTag(258, [-1])}),
        "text keys replaced by bytes": cbor2.dumps({b"share-numbers": wire.cbor_set([0]), b"allocated-size": 10}),
        "array at top level": cbor2.dumps([wire.cbor_set([0]), 10]),
        "257 share numbers": allocate_variant(**{"share-numbers": wire.cbor_set(range(257))}),
    }
    for label, body in bodies.items():
        check_status(ctx.raw.allocate(si, secrets, body=body), 400, label)
    ctx.raw.check_untouched(si)


@case
async def raw_allocate_bignum_size(ctx: Context) -> None:
    """allocated-size of 2^64 needs a bignum (tag 2): invalid for a uint.
    Stock Tahoe crashes on it (500); gbs must say 400."""
    body = allocate_variant(**{"allocated-size": 2**64})
    response = ctx.raw.allocate(ctx.new_si(), Secrets.for_allocate(), body=body)
    check_status(response, ctx.expect(stock=500, gbs=400), "allocated-size 2^64")


@case
async def raw_rtw_bad_cbor_is_400(ctx: Context) -> None:
    si, secrets = ctx.new_si(), Secrets.for_rtw()
    vector = wire.test_write_vector(write=[(0, b"data")])
    bodies = {
        "not CBOR": b"\xff\xff\xff",
        "unknown top-level key": cbor2.dumps({"test-write-vectors": {0: vector}, "read-vector": [], "x": 1}),
        "unknown vector key": cbor2.dumps({"test-write-vectors": {0: {**vector, "x": 1}}, "read-vector": []}),
        "missing read-vector": cbor2.dumps({"test-write-vectors": {0: vector}}),
        "text specimen": wire.rtw_body({0: {**vector, "test": [{"offset": 0, "size": 1, "specimen": "a"}]}}),
        "text data": wire.rtw_body({0: {**vector, "write": [{"offset": 0, "data": "text"}]}}),
        "31 read vectors": wire.rtw_body({}, [(0, 1)] * 31),
    }
    for label, body in bodies.items():
        check_status(ctx.raw.rtw(si, secrets, body=body), 400, label)
    ctx.raw.check_untouched(si)


@case
async def raw_rtw_text_share_number(ctx: Context) -> None:
    """A text key in test-write-vectors: stock's validator lets it through
    and then crashes (500); gbs must say 400."""
    body = wire.rtw_body({"0": wire.test_write_vector(write=[(0, b"data")])})
    response = ctx.raw.rtw(ctx.new_si(), Secrets.for_rtw(), body=body)
    check_status(response, ctx.expect(stock=500, gbs=400), "text share number")


@case
async def raw_corrupt_body_checks(ctx: Context) -> None:
    si = ctx.new_si()
    ctx.raw.setup_immutable(si, {0: b"share data"})
    for label, body, status in [
        ("not CBOR", b"\x00garbage", 400),
        ("empty reason", wire.corrupt_body(""), 400),
        ("unknown key", cbor2.dumps({"reason": "x", "y": 1}), 400),
        # pycddl lets a byte string through as tstr; stock then crashes.
        ("bytes reason", cbor2.dumps({"reason": b"x"}), ctx.expect(stock=500, gbs=400)),
        ("longest reason that fits", wire.corrupt_body("r" * 32757), 200),
        ("body over 32768 bytes", wire.corrupt_body("r" * 40_000), 413),
    ]:
        check_status(ctx.raw.corrupt("immutable", si, 0, body=body), status, label)
    check_status(ctx.raw.read("immutable", si, 0), 200, "share still readable")


# --- Content-Type and size -------------------------------------------------


@case
async def raw_wrong_content_type_is_415(ctx: Context) -> None:
    si, corrupt_si = ctx.new_si(), ctx.new_si()
    ctx.raw.setup_immutable(corrupt_si, {0: b"for corrupt"})
    for content_type in ["application/json", "text/plain", "application/octet-stream"]:
        headers = [("Content-Type", content_type), ("Accept", CBOR)]
        allocate = ctx.raw.allocate(si, Secrets.for_allocate(), [0], 10, headers=headers)
        check_status(allocate, 415, "allocate as " + content_type)
        rtw = ctx.raw.client.request(
            "POST", wire.rtw_path(si), [*Secrets.for_rtw().header_lines(), *headers],
            wire.rtw_body({0: wire.test_write_vector(write=[(0, b"x")])}),
        )
        check_status(rtw, 415, "RTW as " + content_type)
        corrupt = ctx.raw.client.request(
            "POST", wire.immutable_corrupt_path(corrupt_si, 0), headers, wire.corrupt_body("x")
        )
        check_status(corrupt, 415, "corrupt as " + content_type)
    ctx.raw.check_untouched(si)


@case
async def raw_allocate_oversize_is_413(ctx: Context) -> None:
    si, body = ctx.new_si(), allocate_variant(padding=b"p" * 9000)
    check_status(ctx.raw.allocate(si, Secrets.for_allocate(), body=body), 413, "9 kB allocate body")
    ctx.raw.check_untouched(si)
