"""The Fleet front door's long poll, against a stand-in SuperLink on a loopback socket.

The stand-in answers ``pull-messages`` the way Flower's does (an empty ``PullMessagesResponse``
until a message is queued for the node, then that message once: it counts as delivered) and records
every request it sees. The real SuperLink and SuperNodes go through the same proxy in every e2e test.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from flwr.proto.fleet_pb2 import PullMessagesRequest, PullMessagesResponse
from flwr.proto.message_pb2 import Message, Metadata
from flwr.proto.node_pb2 import Node

from kosmos_fl.fl.flower_runtime.runtime import free_port
from kosmos_fl.security.fleet_proxy import start_fleet_proxy

PULL = "/v1/fleet/pull-messages"
PROTOBUF = {"content-type": "application/protobuf", "flwr-timestamp": "signed-by-node"}


@dataclass
class StandIn:
    """A SuperLink's Fleet API reduced to what the long poll touches."""

    queued: list[Message] = field(default_factory=list)
    pulls: list[dict[str, str]] = field(default_factory=list)
    status: int = 200

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.path != PULL:
            return web.Response(body=b"", content_type="application/protobuf")
        self.pulls.append(dict(request.headers))
        if self.status != 200:
            return web.json_response({"detail": "unauthorised"}, status=self.status)
        node = PullMessagesRequest.FromString(body).node.node_id
        mine = [m for m in self.queued if m.metadata.dst_node_id == node][:1]
        for m in mine:
            self.queued.remove(m)  # delivered: a second pull does not get it again
        reply = PullMessagesResponse(messages_list=mine)
        return web.Response(body=reply.SerializeToString(), content_type="application/protobuf")


@contextlib.asynccontextmanager
async def federation(
    hold: float, holding: Callable[[], bool] = lambda: True
) -> AsyncIterator[tuple[StandIn, str, list[str], web.AppRunner]]:
    link = StandIn()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", link.handle)
    upstream = web.AppRunner(app)
    await upstream.setup()
    up_port, port = free_port(), free_port()
    await web.TCPSite(upstream, "127.0.0.1", up_port).start()
    outcomes: list[str] = []
    proxy = await start_fleet_proxy(
        "127.0.0.1", port, f"http://127.0.0.1:{up_port}", None, None,
        hold=hold, holding=holding, on_held=outcomes.append,
    )  # fmt: skip
    try:
        yield link, f"http://127.0.0.1:{port}", outcomes, proxy
    finally:
        await proxy.cleanup()
        await upstream.cleanup()


def message_for(node: int) -> Message:
    return Message(metadata=Metadata(run_id=1, message_id=f"m{node}", dst_node_id=node, message_type="train"))


async def pull(base: str, node: int = 7) -> PullMessagesResponse:
    body = PullMessagesRequest(node=Node(node_id=node)).SerializeToString()
    async with aiohttp.ClientSession() as http, http.post(base + PULL, data=body, headers=PROTOBUF) as r:
        assert r.status == 200, await r.text()
        return PullMessagesResponse.FromString(await r.read())


def test_an_empty_pull_is_answered_with_the_message_that_arrives_during_the_hold() -> None:
    async def scenario() -> None:
        async with federation(hold=10) as (link, base, outcomes, _):
            waiting = asyncio.create_task(pull(base, node=7))
            await asyncio.sleep(0.3)
            assert not waiting.done(), "the empty pull was answered at once instead of held"
            link.queued += [message_for(8), message_for(7)]
            reply = await asyncio.wait_for(waiting, 5)
            assert [m.metadata.message_id for m in reply.messages_list] == ["m7"]
            assert [m.metadata.message_id for m in link.queued] == ["m8"]  # not node 7's
            # the node's own request was repeated, signature headers included
            assert len(link.pulls) > 1
            assert all(h.get("flwr-timestamp") == "signed-by-node" for h in link.pulls)
            assert outcomes == ["message"]

    asyncio.run(scenario())


def test_a_pull_that_stays_empty_is_answered_empty_when_the_hold_ends() -> None:
    async def scenario() -> None:
        async with federation(hold=0.8) as (link, base, outcomes, _):
            reply = await asyncio.wait_for(pull(base), 5)
            assert not reply.messages_list
            assert len(link.pulls) > 2
            assert outcomes == ["empty"]

    asyncio.run(scenario())


def test_no_hold_without_a_session_or_when_switched_off() -> None:
    async def scenario(hold: float, holding: bool) -> None:
        async with federation(hold=hold, holding=lambda: holding) as (link, base, outcomes, _):
            reply = await asyncio.wait_for(pull(base), 5)
            assert not reply.messages_list
            assert len(link.pulls) == 1 and outcomes == []

    asyncio.run(scenario(hold=10, holding=False))
    asyncio.run(scenario(hold=0, holding=True))


def test_an_error_answer_is_passed_on_at_once() -> None:
    async def scenario() -> None:
        async with federation(hold=10) as (link, base, outcomes, _):
            link.status = 401
            body = PullMessagesRequest(node=Node(node_id=7)).SerializeToString()
            async with aiohttp.ClientSession() as http:
                async with http.post(base + PULL, data=body, headers=PROTOBUF) as r:
                    assert r.status == 401
                # other Fleet calls are forwarded as before, never held
                async with http.post(base + "/v1/fleet/push-messages", data=b"", headers=PROTOBUF) as r:
                    assert r.status == 200
            assert len(link.pulls) == 1 and outcomes == []

    asyncio.run(scenario())


def test_a_node_that_hangs_up_during_the_hold_gets_no_message_taken_for_it() -> None:
    async def scenario() -> None:
        async with federation(hold=10) as (link, base, _outcomes, _):
            waiting = asyncio.create_task(pull(base, node=7))
            await asyncio.sleep(0.3)
            waiting.cancel()  # the SuperNode goes away (its connection closes)
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
            await asyncio.sleep(0.5)
            seen = len(link.pulls)
            link.queued.append(message_for(7))
            await asyncio.sleep(0.8)
            assert len(link.pulls) == seen, "the proxy kept pulling for a node that had hung up"
            assert [m.metadata.message_id for m in link.queued] == ["m7"], "a message was lost"

    asyncio.run(scenario())


def test_shutting_down_answers_held_pulls_instead_of_waiting_them_out() -> None:
    async def scenario() -> None:
        async with federation(hold=20) as (_link, base, _outcomes, proxy):
            waiting = asyncio.create_task(pull(base))
            await asyncio.sleep(0.3)
            await asyncio.wait_for(proxy.cleanup(), 10)  # well before the 20 s hold ends
            reply = await asyncio.wait_for(waiting, 5)
            assert not reply.messages_list

    asyncio.run(scenario())


def test_fleet_calls_reach_a_superlink_behind_a_unix_socket(tmp_path: Path) -> None:
    """The SuperLink in its own network namespace is reached through its bridge's unix socket
    (issue 16 row 9): the proxy forwards there, still Fleet calls only."""

    async def scenario() -> None:
        link = StandIn()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", link.handle)
        upstream = web.AppRunner(app)
        await upstream.setup()
        sock = tmp_path / "control.sock"
        await web.UnixSite(upstream, str(sock)).start()
        port = free_port()
        proxy = await start_fleet_proxy(
            "127.0.0.1", port, "http://127.0.0.1:1", None, None, upstream_socket=sock
        )  # port 1: nothing listens there, so an answer came through the socket
        try:
            link.queued.append(message_for(7))
            reply = await pull(f"http://127.0.0.1:{port}", node=7)
            assert [m.metadata.message_id for m in reply.messages_list] == ["m7"]
            async with (
                aiohttp.ClientSession() as http,
                http.post(f"http://127.0.0.1:{port}/v1/control/list-runs", data=b"") as r,
            ):
                assert r.status == 404
        finally:
            await proxy.cleanup()
            await upstream.cleanup()

    asyncio.run(scenario())
