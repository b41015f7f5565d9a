"""Assertions for conformance cases. A failed check raises ``CaseFailure``."""

from __future__ import annotations

from typing import Iterable, Union

from raw_https import RawResponse

Statuses = Union[int, Iterable[int]]


class CaseFailure(Exception):
    """A case's expectation did not hold; the message says which."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CaseFailure(message)


def check_equal(actual, expected, what: str) -> None:
    if actual != expected:
        raise CaseFailure("{}: expected {}, got {}".format(what, short(expected), short(actual)))


def check_status(response: RawResponse, expected: Statuses, what: str) -> None:
    allowed = {expected} if isinstance(expected, int) else set(expected)
    if response.status not in allowed:
        raise CaseFailure(
            "{}: expected status {}, got {} (body {})".format(
                what, "/".join(map(str, sorted(allowed))), response.status, short(response.body)
            )
        )


def check_content_type(response: RawResponse, expected: str, what: str) -> None:
    check_equal(response.content_type, expected, what + ": Content-Type")


def check_no_secret_echo(response: RawResponse, secrets: Iterable[str], what: str) -> None:
    """Error bodies must not repeat secret material the client sent."""
    for secret in secrets:
        if secret and secret.encode() in response.body:
            raise CaseFailure("{}: response body echoes a secret ({!r})".format(what, secret))


def short(value, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...({} chars)".format(len(text))
