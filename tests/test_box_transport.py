"""Box access over the real sshd with stand-in wrappers (tests/rig/fake_wrappers): stderr
draining, protocol checks, the channel bound. The real wrappers are covered end to end in
test_gateway_e2e.py; these need a wrapper that misbehaves on purpose."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lfgate.box.errors import ProtocolMismatch, WrapperExited, WrapperUnavailable
from lfgate.box.ssh_box import SSHBox
from lfgate.config import load_settings

FAKES = Path(__file__).resolve().parent / "rig" / "fake_wrappers"


def box_for(sshd, script: str, **overrides) -> SSHBox:
    env = {k.lower(): v for k, v in sshd.settings_env().items()}
    return SSHBox(load_settings(base_model_path="/m", chat_script_path=str(FAKES / script),
                                **{**env, **overrides}))


async def test_a_wrapper_flooding_stderr_does_not_stall(sshd):
    box = box_for(sshd, "noisy_wrapper.py")
    try:
        session = await asyncio.wait_for(box.start_wrapper(), 60)
        await session.load({"base_model_path": "/m"}, {}, 30)
        events = [e async for e in session.chat("t1", [{"role": "user", "content": "hi"}], {})]
        assert [e["event"] for e in events] == ["delta", "done"]
        assert session.stderr_tail.endswith("y" * 100)  # kept, but bounded
        assert len(session.stderr_tail) < 50_000
        await session.close()
    finally:
        await box.close()


async def test_a_json_line_that_is_no_event_ends_the_wrapper_with_a_clear_error(sshd,
                                                                                 reliability):
    """Issue 24, finding 17: the reader died on `[1, 2, 3]` and every later request waited
    the whole CHAT_TIMEOUT while the model said ready. Now the turn fails at once naming the
    line, the session is gone, and the next chat is refused at once too."""
    box = box_for(sshd, "off_protocol_wrapper.py")
    try:
        session = await asyncio.wait_for(box.start_wrapper(), 60)
        await session.load({"base_model_path": "/m"}, {}, 30)
        events = await asyncio.wait_for(_all(session.chat(
            "t1", [{"role": "user", "content": "hi"}], {}, idle_timeout_s=600)), 30)
        assert [e["event"] for e in events] == ["error"]
        assert events[0]["code"] == "protocol_mismatch" and "[1, 2, 3]" in events[0]["message"]
        assert not session.alive
        with pytest.raises(ProtocolMismatch):
            await _all(session.chat("t2", [{"role": "user", "content": "hi"}], {}))
    finally:
        await box.close()
    reliability.record(
        "box", "A custom wrapper writes a JSON line that is no event object ([1, 2, 3])",
        "the reply ends at once with protocol_mismatch naming the line; the wrapper is "
        "ended, and the next request is refused at once, not after CHAT_TIMEOUT")


async def _all(events):
    return [event async for event in events]


async def test_a_wrapper_of_another_protocol_is_refused(sshd):
    box = box_for(sshd, "stale_wrapper.py")
    try:
        with pytest.raises(ProtocolMismatch) as error:
            await box.start_wrapper()
        assert "999" in error.value.message
        assert box.status().error == error.value.message
    finally:
        await box.close()


async def test_a_wrapper_that_cannot_start_says_why(sshd):
    box = box_for(sshd, "no_such_wrapper.py")
    try:
        with pytest.raises(WrapperExited) as error:
            await box.start_wrapper()
        assert "no_such_wrapper.py" in error.value.message  # python's own complaint, via stderr
    finally:
        await box.close()


async def test_channels_are_bounded(sshd):
    box = box_for(sshd, "noisy_wrapper.py", ssh_max_channels=2)
    try:
        first = await box.start_wrapper()
        second = await box.start_wrapper()
        third = asyncio.create_task(box.start_wrapper())
        await asyncio.sleep(1.5)
        assert not third.done(), "a third channel must wait for a free slot"
        await first.close()
        third_session = await asyncio.wait_for(third, 30)
        await asyncio.gather(second.close(), third_session.close())
    finally:
        await box.close()


async def test_conda_env_on_a_box_without_it_is_explained(sshd):
    """Over the real sshd: CONDA_ENV names an env this box cannot activate."""
    box = box_for(sshd, "noisy_wrapper.py", conda_env="lfgate-test-no-such-env")
    try:
        with pytest.raises(WrapperUnavailable) as refused:
            await asyncio.wait_for(box.start_wrapper(), 60)
    finally:
        await box.close()
    error = refused.value
    # This rig's box has no conda; a machine with one installed gets the env's error instead.
    assert error.code in ("conda_not_found", "conda_env_not_found"), error.as_dict()
    if error.code == "conda_not_found":
        assert "not on the PATH that a non-interactive SSH login sees" in error.message
    else:
        assert "has no environment 'lfgate-test-no-such-env'" in error.message
    assert "REMOTE_PYTHON" in error.hint
    assert box.status().error == error.message
