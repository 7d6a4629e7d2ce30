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
    """A model that is listed (so users see it and why) but cannot be chosen. /v1 answers
    it with a 400: OpenAI's SDKs retry a 409, and this does not clear by retrying."""

    status_code = 409
    v1_status_code = 400
    code = "model_unusable"

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(f"{message} ({hint})" if hint else message)


class TooManyTurns(ServiceError):
    """More replies at once than MAX_CONCURRENT_TURNS: refused at once, to be retried."""

    status_code = 429
    code = "too_many_turns"
    retry_after_s = 2


class BadParameter(ServiceError):
    """A request parameter we cannot take, named (OpenAI's `param`), so a client can say
    which of its settings to change."""

    code = "invalid_parameter"

    def __init__(self, message: str, *, param: str | None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        if code is not None:
            self.code = code


class BadPromptSet(ServiceError):
    """A prompt-set file we cannot take: the message names the line, nothing is stored."""

    code = "bad_prompt_set"

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class RunBusy(ServiceError):
    status_code = 409
    code = "run_busy"


class UnknownBox(ServiceError):
    status_code = 404
    code = "unknown_box"
