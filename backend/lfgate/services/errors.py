"""Errors of the services, mapped to HTTP statuses in one place (lfgate.app), beside
storage's own (lfgate.storage.errors: unknown chat or message, 404)."""

from __future__ import annotations


class ServiceError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownModel(ServiceError):
    status_code = 404
    code = "unknown_model"


class UnknownTurn(ServiceError):
    status_code = 404
    code = "unknown_turn"


class ChatBusy(ServiceError):
    status_code = 409
    code = "chat_busy"


class BadTurnRequest(ServiceError):
    status_code = 422
    code = "bad_turn_request"


class ModelUnusable(ServiceError):
    """A model that is listed (so users see it and why) but cannot be chosen."""

    status_code = 409
    code = "model_unusable"
