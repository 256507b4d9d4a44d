"""Errors a use case raises, each with a message an operator can act on."""

from __future__ import annotations


class UseCaseError(Exception):
    """Base of the errors below; `str(error)` is the message for the user."""


class NotFound(UseCaseError):
    pass


class Conflict(UseCaseError):
    pass


class InvalidInput(UseCaseError):
    """A value that cannot be accepted; `field` names it in domain words (`cml_url`, `since`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class UpstreamFailed(UseCaseError):
    """AWS (or another service we depend on) refused or failed."""
