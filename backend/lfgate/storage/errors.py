"""Errors of storage. Storage sits below the services and depends on nothing above it, so it
has errors of its own; the app maps them to HTTP statuses beside the services' errors.

    StorageError
    ├── UnknownChat       unknown_chat     (no chat with that id)
    ├── UnknownMessage    unknown_message  (a message id that is not in the chat named with it)
    ├── UnknownPromptSet  unknown_prompt_set
    ├── UnknownRun        unknown_run      (no run of a prompt set with that id)
    └── (lfgate.storage.faults: the database locked, full or out of reach, 503)
"""

from __future__ import annotations


class StorageError(Exception):
    code = "storage_error"
    status_code = 404  # the ids below; lfgate.storage.faults has the database's own states

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownChat(StorageError):
    code = "unknown_chat"


class UnknownMessage(StorageError):
    code = "unknown_message"


class UnknownPromptSet(StorageError):
    code = "unknown_prompt_set"


class UnknownRun(StorageError):
    code = "unknown_run"
