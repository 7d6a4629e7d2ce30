"""The SSH link cut for real, mid-reply: the box's sshd runs in its own network namespace, reached
over a veth pair (tests/rig/netns.py), and the link is taken down while the real LlamaFactory
streams a reply through `lfgate serve`. The stream must say the link was lost within the
keepalive window, keep what had arrived as `interrupted`, and once the link is back the next
request must reconnect by itself and answer."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from tests.conftest import PACED_BOX_ENV
from tests.gateway_process import GatewayProcess
from tests.rig.faults import SHORT, answer, cut_reply, stable, stored_reply
from tests.rig.netns import Link, NetnsUnavailable, cuttable_link
from tests.rig.sshd import TestSSHD
from tests.ui_rig import start_real_gateway

pytestmark = pytest.mark.box

KEEPALIVE_S, KEEPALIVE_COUNT = 1, 2
# Keepalives declare the link dead at the tick after the last unanswered one: (count + 1)
# intervals after the box's last byte (asyncssh as OpenSSH); the margin is for a busy CPU.
WINDOW_S = KEEPALIVE_S * (KEEPALIVE_COUNT + 1)
MARGIN_S = 2.0


@pytest.fixture
def link() -> Iterator[Link]:
    with contextlib.ExitStack() as stack:
        try:
            made = stack.enter_context(cuttable_link())
        except NetnsUnavailable as exc:
            pytest.skip(str(exc))
        yield made


@pytest.fixture
def box(link: Link, tmp_path, box_python) -> Iterator[TestSSHD]:
    """The box's sshd inside the namespace (stopped before the namespace goes)."""
    (tmp_path / "sshd").mkdir()
    server = TestSSHD(tmp_path / "sshd", PACED_BOX_ENV,
                      address=link.box_address, launcher=link.exec_prefix)
    yield server
    server.stop()


@pytest.fixture
def gateway(box: TestSSHD, box_python, tiny, tmp_path) -> Iterator[GatewayProcess]:
    process = start_real_gateway(box, box_python, tiny, tmp_path / "gateway", env={
        "SSH_KEEPALIVE_INTERVAL": str(KEEPALIVE_S),
        "SSH_KEEPALIVE_COUNT_MAX": str(KEEPALIVE_COUNT), "SSH_CONNECT_TIMEOUT": "5"})
    yield process
    assert process.stop(), process.log.read_text()[-3000:]


def test_the_link_cut_mid_reply_says_so_keeps_the_text_and_reconnects_by_itself(
        link, box, gateway, reliability):
    try:
        cut = cut_reply(gateway, link.down)  # the model loads, streams; then the cable goes
    finally:
        link.up()  # whatever happened, the next step needs the link
    assert cut.end == "error", (cut.end, cut.data)
    error = cut.data
    assert error["code"] == "box_unreachable", error
    assert "SSH link" in error["message"] and "was lost" in error["message"], error
    assert f"did not answer {KEEPALIVE_COUNT} keepalives" in error["message"], error
    assert "reconnects by itself" in error["hint"], error
    assert KEEPALIVE_S * KEEPALIVE_COUNT <= cut.seconds <= WINDOW_S + MARGIN_S, \
        f"the lost link was reported {cut.seconds:.1f} s after the cut"

    stored = stored_reply(gateway, cut)
    assert stored["content"] and stored["content"] == cut.text, (stored, cut.text)
    assert stored["status"] == "interrupted", stored

    # The link is back: the next request reconnects and loads the model again, unasked.
    answer(gateway, {"message": "Are you back?", "chat_id": cut.meta["chat_id"],
                     "params": SHORT})
    assert gateway.http.get("/api/health").json()["remote"]["connected"] is True
    reliability.record(
        "link", case="The SSH link cut mid-reply (the box's network interface taken down)",
        outcome=f"{cut.seconds:.0f} s after the cut (SSH_KEEPALIVE_INTERVAL={KEEPALIVE_S}, "
                f"SSH_KEEPALIVE_COUNT_MAX={KEEPALIVE_COUNT}) the stream ends with "
                f"{error['code']}: “{stable(error['message'], box)}”; the reply is stored as "
                f"{stored['status']} with the text that had streamed; with the link back, the "
                "next request reconnects by itself, loads the model again and answers")
