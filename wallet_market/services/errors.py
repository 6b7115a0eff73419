"""Errors the use cases raise; the api layer turns them into 4xx JSON answers."""
from __future__ import annotations


class ServiceError(Exception):
    status = 400

    def __init__(self, message: str, errors: dict | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or {}


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class PreconditionFailed(ServiceError):
    """An ``If-Match`` that names an older state of the resource."""

    status = 412


class Invalid(ServiceError):
    """Input breaks a business rule or guard; ``errors`` maps each field to its messages."""

    status = 422


class Unavailable(ServiceError):
    status = 503
