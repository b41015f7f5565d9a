"""A deliberately dumb HTTPS client for GBS: it sends exactly what it is told.

The stock Tahoe client always sends well-formed requests, so the error cases
go through this instead. Certificate checking is off in ``ssl`` (stock
certificates are self-signed X.509 v1 and often expired); instead every
connection pins the server's SPKI hash against the NURL, as Tahoe does.
"""

from __future__ import annotations

import http.client
import ssl
from dataclasses import dataclass
from email.message import Message
from typing import Iterable, Optional, Union

import cbor2

from nurl import Nurl

HeaderValue = Union[str, bytes]
Headers = Iterable[tuple[str, HeaderValue]]

# Sentinel: send the correct Authorization header.
DEFAULT_AUTH = object()


class PinningError(Exception):
    """The server certificate's SPKI hash differs from the NURL's."""


class ConnectionClosed(Exception):
    """The server closed or reset the connection instead of answering."""


@dataclass
class RawResponse:
    status: int
    headers: Message
    body: bytes

    @property
    def content_type(self) -> Optional[str]:
        """Media type without parameters, or None when the header is absent."""
        value = self.headers.get("Content-Type")
        return None if value is None else value.split(";")[0].strip()

    def cbor(self):
        return cbor2.loads(self.body)


class RawClient:
    """One TLS connection per request, so a failed request cannot leave a
    half-read response behind for the next case."""

    def __init__(self, nurl: Nurl, timeout: float = 15.0):
        self.nurl = nurl
        self.timeout = timeout
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self._tls.check_hostname = False
        self._tls.verify_mode = ssl.CERT_NONE

    def request(
        self,
        method: str,
        path: str,
        headers: Headers = (),
        body: Optional[bytes] = None,
        authorization=DEFAULT_AUTH,
    ) -> RawResponse:
        """Send one request. ``authorization=None`` omits the header; any
        other str/bytes value is sent verbatim."""
        conn = self._connect()
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            if authorization is DEFAULT_AUTH:
                authorization = self.nurl.authorization()
            if authorization is not None:
                conn.putheader("Authorization", authorization)
            for name, value in headers:
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            return RawResponse(response.status, response.msg, response.read())
        except (ConnectionError, ssl.SSLEOFError, ssl.SSLZeroReturnError) as e:
            raise ConnectionClosed(str(e) or type(e).__name__) from e
        finally:
            conn.close()

    def _connect(self) -> http.client.HTTPSConnection:
        conn = http.client.HTTPSConnection(
            self.nurl.host, self.nurl.port, context=self._tls, timeout=self.timeout
        )
        conn.connect()
        cert = conn.sock.getpeercert(binary_form=True)
        if cert is None or not self.nurl.matches_certificate(cert):
            conn.close()
            raise PinningError("server certificate does not match the NURL's SPKI hash")
        return conn
