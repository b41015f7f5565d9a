"""Case registry and the context every conformance case receives."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterable, Union

from allmydata.storage.http_client import (
    StorageClient,
    StorageClientGeneral,
    StorageClientImmutables,
    StorageClientMutables,
)

from gbs_ops import RawGbs
from nurl import Nurl

TARGETS = ("gbs", "stock")


@dataclass
class Context:
    """What a case may use. ``target`` selects between stock Tahoe's known
    bugs and the clean behaviour required of gbs (see ``expect``)."""

    target: str
    nurl: Nurl
    raw: RawGbs
    client: StorageClient
    general: StorageClientGeneral
    immutables: StorageClientImmutables
    mutables: StorageClientMutables
    notes: list[str] = field(default_factory=list)

    @staticmethod
    def new_si() -> bytes:
        """A fresh storage index, so cases never see each other's shares.
        Deliberately unseeded: a rerun against the same server must not
        find the previous run's shares."""
        return os.urandom(16)

    @staticmethod
    def secret(length: int = 32) -> bytes:
        return os.urandom(length)

    def expect(self, stock: Union[int, Iterable[int]], gbs: Union[int, Iterable[int]]):
        """Expected status(es) where stock Tahoe has a known bug (mostly a
        500 for a client mistake) and gbs must give the clean answer."""
        return stock if self.target == "stock" else gbs

    @property
    def is_stock(self) -> bool:
        return self.target == "stock"

    def note(self, text: str) -> None:
        """Record something the reader should know (e.g. a skipped check)."""
        self.notes.append(text)


CaseFunc = Callable[[Context], Awaitable[None]]


@dataclass(frozen=True)
class Case:
    name: str
    run: CaseFunc


CASES: dict[str, Case] = {}


def case(func: CaseFunc) -> CaseFunc:
    """Register ``func`` as a case named after the function."""
    assert func.__name__ not in CASES, "duplicate case " + func.__name__
    CASES[func.__name__] = Case(func.__name__, func)
    return func
