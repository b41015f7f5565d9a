"""Raw cases about getting in at all: Authorization, routing, methods,
content negotiation, oversized headers and path tricks."""

from __future__ import annotations

import os

import gbs_wire as wire
from checks import check, check_equal, check_status
from gbs_wire import CBOR, Secrets
from gbs_ops import CBOR_HEADERS
from raw_https import ConnectionClosed, RawClient
from suite import Context, case

# Where a path cannot match a route, 404 is the answer; 400 is also fine for
# paths a server refuses to parse at all.
UNROUTABLE = {400, 404}

# For requests a server may legitimately leave unanswered only by closing.
SHORT_TIMEOUT = 3.0


def every_endpoint(si: bytes) -> list[tuple[str, str, str, list, bytes | None]]:
    """One well-formed request per endpoint: (label, method, path, headers, body)."""
    allocate, rtw = Secrets.for_allocate(), Secrets.for_rtw()
    upload = allocate.only("upload").header_lines()
    return [
        ("version", "GET", wire.version_path(), [], None),
        ("allocate", "POST", wire.allocate_path(si), [*allocate.header_lines(), *CBOR_HEADERS],
         wire.allocate_body([0], 10)),
        ("patch", "PATCH", wire.immutable_share_path(si, 0), [*upload, ("Content-Range", "bytes 0-9/*")], b"0123456789"),
        ("abort", "PUT", wire.abort_path(si, 0), upload, None),
        ("immutable list", "GET", wire.immutable_shares_path(si), [], None),
        ("immutable read", "GET", wire.immutable_share_path(si, 0), [], None),
        ("immutable corrupt", "POST", wire.immutable_corrupt_path(si, 0), list(CBOR_HEADERS), wire.corrupt_body("x")),
        ("lease", "PUT", wire.lease_path(si), allocate.only("renew", "cancel").header_lines(), None),
        ("read-test-write", "POST", wire.rtw_path(si), [*rtw.header_lines(), *CBOR_HEADERS],
         wire.rtw_body({0: wire.test_write_vector(write=[(0, b"data")])})),
        ("mutable read", "GET", wire.mutable_share_path(si, 0), [], None),
        ("mutable list", "GET", wire.mutable_shares_path(si), [], None),
        ("mutable corrupt", "POST", wire.mutable_corrupt_path(si, 0), list(CBOR_HEADERS), wire.corrupt_body("x")),
    ]


# --- Authorization ---------------------------------------------------------


@case
async def raw_auth_missing_is_401_everywhere(ctx: Context) -> None:
    si = ctx.new_si()
    for label, method, path, headers, body in every_endpoint(si):
        response = ctx.raw.client.request(method, path, headers, body, authorization=None)
        check_status(response, 401, label + " without Authorization")
    ctx.raw.check_untouched(si)


@case
async def raw_auth_wrong_is_401(ctx: Context) -> None:
    good = ctx.nurl.authorization()
    scheme, token = good.split(" ", 1)
    wrong = {
        "other swissnum": "Tahoe-LAFS " + "QUJD" * 11,
        "lowercase scheme": "tahoe-lafs " + token,
        "no scheme": token,
        "two spaces": scheme + "  " + token,
        "unpadded base64": scheme + " " + token.rstrip("="),
        "swissnum not base64": scheme + " " + ctx.nurl.swissnum,
        "empty": "",
    }
    for label, value in wrong.items():
        check_status(ctx.raw.version(authorization=value), 401, label)
    check_status(ctx.raw.version(), 200, "correct Authorization")


@case
async def raw_auth_not_utf8(ctx: Context) -> None:
    response = ctx.raw.version(authorization=b"Tahoe-LAFS \xff\xfe")
    check_status(response, ctx.expect(stock=400, gbs={400, 401}), "non-UTF-8 Authorization")


# --- routing and methods ---------------------------------------------------


@case
async def raw_unknown_path_is_404(ctx: Context) -> None:
    si = wire.si_text(ctx.new_si())
    paths = [
        "/", "/storage", "/storage/v1", "/storage/v1/", "/storage/v1/nope", "/storage/v2/version",
        "/storage/v1/immutable", "/storage/v1/immutable/{}/0/nope".format(si),
        "/storage/v1/mutable/{}/0/abort".format(si), "/storage/v1/lease",
    ]
    for path in paths:
        check_status(ctx.raw.client.request("GET", path, [("Accept", CBOR)]), 404, "GET " + path)


@case
async def raw_bad_storage_index_is_404(ctx: Context) -> None:
    good = wire.si_text(ctx.new_si())
    bad = {
        "uppercase": good.upper(),
        "25 chars": good[:25],
        "27 chars": good + "a",
        "non-canonical last char": good[:25] + "b",
        "padded": good + "======",
        "32-byte SI": wire.si_text(os.urandom(32)),
        "invalid char": good[:10] + "1" + good[11:],
    }
    # Stock's router checks the last character only after the path matched,
    # and then reports 405 whenever another method exists for that shape.
    quirky = ctx.expect(stock={404, 405}, gbs=404)
    for label, si in bad.items():
        expected = quirky if label == "non-canonical last char" else 404
        for path in ["/storage/v1/immutable/{}/shares", "/storage/v1/mutable/{}/shares", "/storage/v1/immutable/{}/0"]:
            response = ctx.raw.client.request("GET", path.format(si), [("Accept", CBOR)])
            check_status(response, expected, "{} in {}".format(label, path))


@case
async def raw_trailing_slash_is_404(ctx: Context) -> None:
    si = ctx.new_si()
    ctx.raw.setup_immutable(si, {0: b"share"})
    for path in [wire.version_path(), wire.immutable_shares_path(si), wire.immutable_share_path(si, 0)]:
        check_status(ctx.raw.client.request("GET", path + "/", [("Accept", CBOR)]), 404, path + "/")


@case
async def raw_bad_share_number_is_404(ctx: Context) -> None:
    """Share numbers are plain decimal digits. Share 1 exists, so a server
    that parsed "+1" or "1.0" leniently would answer 200."""
    si = ctx.new_si()
    ctx.raw.setup_immutable(si, {1: b"share one"})
    for shnum in ["-1", "x", "1.0", "+1", "0x1", "%201", "1%00"]:
        path = "/storage/v1/immutable/{}/{}".format(wire.si_text(si), shnum)
        check_status(ctx.raw.client.request("GET", path), 404, "share number {!r}".format(shnum))
    check_status(ctx.raw.read("immutable", si, 1), 200, "share 1 itself")


@case
async def raw_wrong_method_is_405(ctx: Context) -> None:
    si = ctx.new_si()
    attempts = [
        ("DELETE", wire.version_path()),
        ("POST", wire.version_path()),
        ("GET", wire.allocate_path(si)),
        ("PUT", wire.allocate_path(si)),
        ("POST", wire.lease_path(si)),
        ("GET", wire.lease_path(si)),
        ("GET", wire.rtw_path(si)),
        ("GET", wire.abort_path(si, 0)),
        ("GET", wire.immutable_corrupt_path(si, 0)),
        ("PATCH", wire.mutable_share_path(si, 0)),
        ("DELETE", wire.immutable_shares_path(si)),
    ]
    for method, path in attempts:
        check_status(ctx.raw.client.request(method, path, [("Accept", CBOR)]), 405, method + " " + path)


# --- content negotiation ---------------------------------------------------


@case
async def raw_accept_not_cbor_is_406(ctx: Context) -> None:
    for accept in ["*/*", "application/json", "text/html"]:
        check_status(ctx.raw.version([("Accept", accept)]), 406, "Accept: " + accept)
    for accept in [CBOR, "application/cbor, */*"]:
        check_status(ctx.raw.version([("Accept", accept)]), 200, "Accept: " + accept)
    check_status(ctx.raw.version([]), 200, "no Accept")


@case
async def raw_version_shape(ctx: Context) -> None:
    """Byte-string keys, exactly five keys, u64 values: stock clients reject
    anything else."""
    response = ctx.raw.version()
    check_status(response, 200, "version")
    check_equal(response.content_type, CBOR, "Content-Type")
    body = response.cbor()
    v1 = b"http://allmydata.org/tahoe/protocols/storage/v1"
    check_equal(set(body), {v1, b"application-version"}, "outer keys")
    inner_keys = {b"maximum-immutable-share-size", b"maximum-mutable-share-size", b"available-space"}
    check_equal(set(body[v1]), inner_keys, "inner keys")
    for key, value in body[v1].items():
        check(type(value) is int and 0 <= value < 2**64, "{!r} is not a u64: {!r}".format(key, value))
    check(isinstance(body[b"application-version"], bytes), "application-version is not a byte string")


# --- abuse of the HTTP layer -----------------------------------------------


def check_rejected_then_alive(ctx: Context, send, what: str, silence_ok: bool = False) -> None:
    """``send`` must get a 4xx or a closed connection, never a success or a
    5xx, and the server must keep serving. ``silence_ok`` tolerates no
    answer at all (a timeout), which is what stock does for some inputs."""
    try:
        response = send()
    except ConnectionClosed:
        pass
    except TimeoutError:
        check(silence_ok, "{}: no answer within {} s".format(what, SHORT_TIMEOUT))
        ctx.note("stock neither answers nor closes on " + what)
    else:
        check(400 <= response.status < 500, "{}: expected 4xx, got {}".format(what, response.status))
    check_status(ctx.raw.version(), 200, "version after " + what)


@case
async def raw_huge_headers_rejected(ctx: Context) -> None:
    """Oversized header blocks get a 4xx or a closed connection. The sizes
    are far beyond any sane request (stock's limit is 16 kB and 500 headers)
    so that a server with ordinary, larger limits must still refuse them."""
    client = RawClient(ctx.nurl, timeout=SHORT_TIMEOUT)
    accept = ("Accept", CBOR)

    def version_with(headers):
        return lambda: client.request("GET", wire.version_path(), [accept, *headers])

    requests = {
        # Stock stops reading at a line over 16 kB and answers nothing.
        "a 1 MB header line": (version_with([("X-Filler", "a" * 1_000_000)]), ctx.is_stock),
        "1 MB in 250 headers": (version_with(filler(250, 4000)), False),
        "1000 headers": (version_with(filler(1000, 1)), False),
    }
    for what, (send, silence_ok) in requests.items():
        check_rejected_then_alive(ctx, send, what, silence_ok)

    # A big but not absurd secret value must be a 4xx (the upload is unknown
    # anyway), not a crash.
    big_secret = [("X-Tahoe-Authorization", "upload-secret " + "QUFB" * 6000)]
    abort = lambda: client.request("PUT", wire.abort_path(ctx.new_si(), 0), big_secret)
    check_rejected_then_alive(ctx, abort, "a 24 kB secret", silence_ok=ctx.is_stock)


def filler(count: int, size: int) -> list[tuple[str, str]]:
    return [("X-Filler-{}".format(i), "v" * size) for i in range(count)]


@case
async def raw_path_dot_segments_change_nothing(ctx: Context) -> None:
    """Dot segments must not be resolved into another route. The requests
    carry valid credentials for the resource they try to reach."""
    imm_si, mut_si, other = ctx.new_si(), ctx.new_si(), ctx.new_si()
    imm_data, mut_data, we = os.urandom(32), os.urandom(32), ctx.secret()
    imm_secrets = ctx.raw.setup_allocate(imm_si, [0, 1], 32)
    check_status(ctx.raw.patch(imm_si, 0, imm_secrets.upload, 0, imm_data), 201, "upload share 0")
    mut_secrets = ctx.raw.setup_mutable(mut_si, {0: mut_data}, we)
    imm, mut, oth = (wire.si_text(s) for s in (imm_si, mut_si, other))

    for path in [
        "/storage/v1/immutable/../version",
        "/storage/v1/./version",
        "/storage/v1/immutable/{}/../../version".format(imm),
        "/storage/v1/%2e%2e/v1/version",
    ]:
        check_status(ctx.raw.client.request("GET", path, [("Accept", CBOR)]), UNROUTABLE, "GET " + path)

    evil = wire.rtw_body({0: wire.test_write_vector(write=[(0, b"EVIL")])})
    for path in [
        "/storage/v1/mutable/{}/../{}/read-test-write".format(oth, mut),
        "/storage/v1/mutable/{}/read-test-write/../read-test-write".format(mut),
    ]:
        response = ctx.raw.client.request("POST", path, [*mut_secrets.header_lines(), *CBOR_HEADERS], evil)
        check_status(response, UNROUTABLE, "POST " + path)
    upload = imm_secrets.only("upload").header_lines()
    patch = ctx.raw.client.request(
        "PATCH", "/storage/v1/immutable/{}/0/../1".format(imm),
        [*upload, ("Content-Range", "bytes 0-31/*")], os.urandom(32),
    )
    check_status(patch, UNROUTABLE, "PATCH .../0/../1")
    abort = ctx.raw.client.request("PUT", "/storage/v1/immutable/{}/1/abort/../abort".format(imm), upload)
    check_status(abort, UNROUTABLE, "PUT .../abort/../abort")

    check_equal(ctx.raw.read_whole("immutable", imm_si, 0), imm_data, "immutable share afterwards")
    check_equal(ctx.raw.read_whole("mutable", mut_si, 0), mut_data, "mutable share afterwards")
    check_equal(ctx.raw.list_shares("mutable", other).cbor(), set(), "no shares appeared elsewhere")
    # Share 1 must still be uploading: neither written by the PATCH nor aborted.
    check_status(ctx.raw.patch(imm_si, 1, imm_secrets.upload, 0, imm_data), 201, "share 1 still open")


@case
async def raw_path_encoded_slash(ctx: Context) -> None:
    """``%2F`` is data inside a segment, not a separator: gbs must not route
    it (404/400) and nothing may change. Stock's router decodes the path
    first, so there these requests reach the decoded route."""
    si, we = ctx.new_si(), ctx.secret()
    data = os.urandom(16)
    secrets = ctx.raw.setup_mutable(si, {0: data}, we)
    text = wire.si_text(si)

    listing = ctx.raw.client.request("GET", "/storage/v1/mutable%2F{}%2Fshares".format(text), [("Accept", CBOR)])
    write = ctx.raw.client.request(
        "POST", "/storage/v1/mutable/{}%2Fread-test-write".format(text), [*secrets.header_lines(), *CBOR_HEADERS],
        wire.rtw_body({0: wire.test_write_vector(write=[(0, b"EVIL")])}),
    )
    after = ctx.raw.read_whole("mutable", si, 0)
    if ctx.is_stock:
        ctx.note("stock decodes %2F before routing, so encoded slashes act as real ones")
        check_status(listing, 200, "stock: encoded-slash listing")
        check_status(write, 200, "stock: encoded-slash RTW")
        check_equal(after, b"EVIL" + data[4:], "stock: share after encoded-slash RTW")
    else:
        check_status(listing, UNROUTABLE, "encoded-slash listing")
        check_status(write, UNROUTABLE, "encoded-slash RTW")
        check_equal(after, data, "share after encoded-slash RTW")


@case
async def raw_refusals_mid_body_reach_the_client(ctx: Context) -> None:
    """Requests refused on their headers while a 16 MB body follows: the
    client sends the whole body, as Python's http.client and Twisted do, and
    must then read the status. A server that answers and closes at once makes
    the kernel reset the connection under the client's write, and the answer
    is lost."""
    big = os.urandom(16 << 20)
    si = ctx.new_si()
    allocate = Secrets.for_allocate()
    check_status(ctx.raw.allocate(si, allocate, share_numbers=(0,), allocated_size=len(big)), 200, "allocate")
    share = wire.immutable_share_path(si, 0)
    content_range = ("Content-Range", "bytes 0-{}/*".format(len(big) - 1))
    upload = allocate.only("upload").header_lines()
    requests = [
        ("PATCH with a wrong swissnum", "PATCH", share, [*upload, content_range], "Tahoe-LAFS d3Jvbmc=", 401),
        ("PATCH without the upload secret", "PATCH", share, [content_range], None, 400),
        ("PATCH of a share not allocated", "PATCH", wire.immutable_share_path(si, 7), [*upload, content_range],
         None, 404),
        ("allocate without the upload secret", "POST", wire.allocate_path(ctx.new_si()),
         [*allocate.only("renew", "cancel").header_lines(), *CBOR_HEADERS], None, 400),
    ]
    for what, method, path, headers, authorization, status in requests:
        kwargs = {} if authorization is None else {"authorization": authorization}
        try:
            response = ctx.raw.client.request(method, path, headers, big, **kwargs)
        except ConnectionClosed as e:
            check(False, "{}: connection closed instead of an answer ({})".format(what, e))
        else:
            check_status(response, status, what)
    check_status(ctx.raw.read("immutable", si, 0), 404, "nothing was written")
