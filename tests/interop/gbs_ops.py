"""GBS endpoints as methods over ``RawClient``.

The plain methods return the ``RawResponse`` whatever the status, so cases can
assert on errors. The ``setup_*`` methods put state in place before the
interesting request, and ``read_whole``/``check_untouched`` inspect it
afterwards; these fail the case when the server does not answer with success.
"""

from __future__ import annotations

from typing import Optional

import gbs_wire as wire
from checks import check_equal, check_status
from gbs_wire import CBOR, Secrets
from raw_https import Headers, RawClient, RawResponse

CBOR_HEADERS = (("Content-Type", CBOR), ("Accept", CBOR))


class RawGbs:
    """The twelve endpoints, each with correct defaults that a case can
    override one at a time."""

    def __init__(self, client: RawClient):
        self.client = client

    # --- one request each ------------------------------------------------

    def version(self, headers: Headers = (("Accept", CBOR),), **kwargs) -> RawResponse:
        return self.client.request("GET", wire.version_path(), headers, **kwargs)

    def allocate(
        self,
        si: bytes,
        secrets: Secrets,
        share_numbers=(0,),
        allocated_size: int = 10,
        body: Optional[bytes] = None,
        headers: Headers = CBOR_HEADERS,
    ) -> RawResponse:
        if body is None:
            body = wire.allocate_body(share_numbers, allocated_size)
        return self.client.request(
            "POST", wire.allocate_path(si), [*secrets.header_lines(), *headers], body
        )

    def patch(
        self,
        si: bytes,
        shnum: int,
        upload_secret: bytes,
        offset: int,
        data: bytes,
        content_range: Optional[str] = None,
    ) -> RawResponse:
        """Upload ``data`` at ``offset``; ``content_range`` overrides the
        header (``""`` omits it)."""
        if content_range is None:
            content_range = "bytes {}-{}/*".format(offset, offset + len(data) - 1)
        headers = [*Secrets(upload=upload_secret).header_lines(), ("Accept", CBOR)]
        if content_range:
            headers.append(("Content-Range", content_range))
        return self.client.request("PATCH", wire.immutable_share_path(si, shnum), headers, data)

    def abort(self, si: bytes, shnum: int, upload_secret: bytes) -> RawResponse:
        headers = Secrets(upload=upload_secret).header_lines()
        return self.client.request("PUT", wire.abort_path(si, shnum), headers)

    def list_shares(self, kind: str, si: bytes) -> RawResponse:
        return self.client.request("GET", wire.shares_path(kind, si), [("Accept", CBOR)])

    def read(self, kind: str, si: bytes, shnum: int, range_header: Optional[str] = None) -> RawResponse:
        headers = [] if range_header is None else [("Range", range_header)]
        return self.client.request("GET", wire.share_path(kind, si, shnum), headers)

    def corrupt(self, kind: str, si: bytes, shnum: int, reason: str = "bad bits", body=None) -> RawResponse:
        if body is None:
            body = wire.corrupt_body(reason)
        return self.client.request("POST", wire.corrupt_path(kind, si, shnum), CBOR_HEADERS, body)

    def lease(self, si: bytes, secrets: Secrets) -> RawResponse:
        return self.client.request("PUT", wire.lease_path(si), secrets.header_lines())

    def rtw(
        self,
        si: bytes,
        secrets: Secrets,
        test_write_vectors: Optional[dict] = None,
        read_vector=(),
        body: Optional[bytes] = None,
    ) -> RawResponse:
        if body is None:
            body = wire.rtw_body(test_write_vectors or {}, read_vector)
        headers = [*secrets.header_lines(), *CBOR_HEADERS]
        return self.client.request("POST", wire.rtw_path(si), headers, body)

    # --- setup steps that must succeed ----------------------------------

    def setup_allocate(self, si: bytes, shares, size: int) -> Secrets:
        """Allocate ``shares`` of ``size`` bytes; returns the secrets used."""
        secrets = Secrets.for_allocate()
        response = self.allocate(si, secrets, shares, size)
        check_status(response, 200, "setup allocate")
        check_equal(response.cbor()["allocated"], set(shares), "setup allocate: allocated")
        return secrets

    def setup_immutable(self, si: bytes, shares: dict[int, bytes]) -> Secrets:
        """Upload complete immutable shares (all the same length)."""
        sizes = {len(data) for data in shares.values()}
        assert len(sizes) == 1, "one allocation has one size"
        secrets = self.setup_allocate(si, shares, sizes.pop())
        for shnum, data in shares.items():
            response = self.patch(si, shnum, secrets.upload, 0, data)
            check_status(response, 201, "setup upload of share {}".format(shnum))
        return secrets

    def setup_mutable(self, si: bytes, shares: dict[int, bytes], write_enabler: bytes) -> Secrets:
        """Create mutable shares holding exactly ``shares``."""
        secrets = Secrets.for_rtw(write_enabler)
        vectors = {
            shnum: wire.test_write_vector(write=[(0, data)], new_length=len(data))
            for shnum, data in shares.items()
        }
        response = self.rtw(si, secrets, vectors)
        check_status(response, 200, "setup mutable write")
        check_equal(response.cbor()["success"], True, "setup mutable write: success")
        return secrets

    def check_untouched(self, si: bytes) -> None:
        """Nothing exists under ``si`` (after rejected requests): no shares
        listed, and share 0 can still be allocated."""
        for kind in ("immutable", "mutable"):
            listing = self.list_shares(kind, si)
            check_status(listing, 200, kind + " list")
            check_equal(listing.cbor(), set(), kind + " shares after rejected requests")
        self.setup_allocate(si, [0], 10)

    def read_whole(self, kind: str, si: bytes, shnum: int) -> bytes:
        """The whole share, via a read without ``Range``."""
        response = self.read(kind, si, shnum)
        check_status(response, 200, "read {} share {}".format(kind, shnum))
        return response.body
