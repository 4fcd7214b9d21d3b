"""Errors the domain raises. Each names what was wrong so a caller can tell a person."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class GradesyncError(Exception):
    """Base of every error gradesync raises on purpose."""


@dataclass(frozen=True, slots=True)
class FieldProblem:
    field: str  # a dotted path: "attempts[3].score_given"
    rule: str  # a short machine-readable rule: "not_negative", "required", ...
    message: str  # a sentence for a person


class InvalidInput(GradesyncError):
    """Input broke one or more rules; nothing was changed."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p.field}: {p.message} [{p.rule}]" for p in problems))

    @classmethod
    def one(cls, field: str, rule: str, message: str) -> InvalidInput:
        return cls([FieldProblem(field, rule, message)])


class Problems:
    """Runs several checks and keeps every problem they find, so that input is refused with
    all of them at once rather than one per attempt."""

    def __init__(self) -> None:
        self.items: list[FieldProblem] = []

    def check(self, fn: Callable[[], T]) -> T | None:
        """`fn()`, or None when it raised InvalidInput (its problems are kept)."""
        try:
            return fn()
        except InvalidInput as exc:
            self.items.extend(exc.problems)
            return None

    def add(self, field: str, rule: str, message: str) -> None:
        self.items.append(FieldProblem(field, rule, message))

    def raise_any(self) -> None:
        if self.items:
            raise InvalidInput(self.items)


class NotFound(GradesyncError):
    def __init__(self, what: str, ident: str) -> None:
        self.what = what
        self.ident = ident
        super().__init__(f"{what} {ident!r} not found")


class Conflict(GradesyncError):
    """The request contradicts stored state (e.g. a run already finished). `field` and
    `rule`, when given, name the value at fault as a FieldProblem does (a key already taken:
    `consumer_key`, `taken`)."""

    def __init__(self, message: str, *, field: str | None = None, rule: str = "conflict") -> None:
        super().__init__(message)
        self.field = field
        self.rule = rule
