"""Errors of box access. Callers catch these, never asyncssh's or OSError:

    BoxError                      code
    ├── BoxUnreachable            box_unreachable     (connect failed, link dropped)
    │   ├── LinkLost              box_unreachable     (the link dropped under a session:
    │   │                                              keepalives unanswered, sshd gone)
    │   └── HostKeyRejected       host_key_rejected   (unknown or changed host key)
    ├── BoxAuthFailed             auth_failed         (key, agent or password refused)
    │   └── KeyUnreadable         auth_failed         (SSH_KEY_PATH encrypted: no or wrong
    │                                                  SSH_KEY_PASSPHRASE; nothing was sent)
    ├── WrapperUnavailable        wrapper_unavailable (upload failed, wrapper would not start)
    │   ├── BoxDiskFull           disk_full           (no space on the box for the upload)
    │   ├── ProtocolMismatch      protocol_mismatch   (stale or foreign wrapper)
    │   ├── CondaNotFound         conda_not_found     (CONDA_ENV set, no conda on the box)
    │   └── CondaEnvNotFound      conda_env_not_found (conda found, not that environment)
    ├── WrapperExited             wrapper_exited      (the wrapper died mid-session)
    ├── BoxTimeout                timeout
    └── RemoteError               <the wrapper's own code>  (an `error` event from the box)

Every error carries `code`, `message` and `hint`, which the API returns as they are; none of
them ever holds a secret (key contents, passphrases, SSH_PASSWORD): they name the method
and the setting (`password (SSH_PASSWORD)`), never its value.
"""

from __future__ import annotations


class BoxError(Exception):
    code = "box_error"
    hint = ""

    def __init__(self, message: str, *, hint: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint
        if code is not None:
            self.code = code

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "hint": self.hint}


class BoxUnreachable(BoxError):
    code = "box_unreachable"
    hint = "Check SSH_HOST / SSH_PORT and that the box is running; `ssh` to it by hand."


class LinkLost(BoxUnreachable):
    """The SSH connection dropped while it carried sessions (a reply, a loaded model)."""

    hint = "Check the network to the box and that the box is up. The next request " \
           "reconnects by itself and loads the model again; a reply that was cut off keeps " \
           "what had arrived."


class HostKeyRejected(BoxUnreachable):
    code = "host_key_rejected"


class BoxAuthFailed(BoxError):
    code = "auth_failed"
    hint = "Check SSH_USER and SSH_KEY_PATH (the key must be in the box's authorized_keys), " \
           "or SSH_PASSWORD if the box gave you a password (a key is safer)."


class KeyUnreadable(BoxAuthFailed):
    """SSH_KEY_PATH could not be read, so no login was tried: the box was not asked."""

    hint = "Set SSH_KEY_PASSPHRASE to the passphrase of the key at SSH_KEY_PATH."


class WrapperUnavailable(BoxError):
    code = "wrapper_unavailable"
    hint = "Check REMOTE_PYTHON / CONDA_ENV / REMOTE_WORK_DIR; the message has the box's stderr."


class BoxDiskFull(WrapperUnavailable):
    code = "disk_full"
    hint = "Free space on the box's disk (`df -h ~` there; old checkpoints under saves/ and " \
           "the Hugging Face cache are the usual culprits). The next request uploads the " \
           "wrapper again."


class ProtocolMismatch(WrapperUnavailable):
    code = "protocol_mismatch"
    hint = "CHAT_SCRIPT_PATH points at a wrapper of another version: unset it so the gateway " \
           "uploads its own, or deploy the wrapper from this version."


class CondaNotFound(WrapperUnavailable):
    code = "conda_not_found"


class CondaEnvNotFound(WrapperUnavailable):
    code = "conda_env_not_found"


class WrapperExited(BoxError):
    code = "wrapper_exited"
    hint = "The wrapper on the box stopped; the next request starts it again. The message " \
           "has the box's last stderr lines."


class BoxTimeout(BoxError):
    code = "timeout"
    hint = "Raise CHAT_TIMEOUT, or check the box's load."


class RemoteError(BoxError):
    """An error event from the wrapper, with the wrapper's code and hint."""

    code = "remote_error"
