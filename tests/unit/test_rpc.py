"""The JSON-RPC transport against local servers that misbehave like providers do."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from aiohttp import web
from eth_utils.crypto import keccak
from rpc_servers import closing_keepalive_server, error, jsonrpc_server, ok

from keeper.chain.eth import RpcEth
from keeper.chain.retry import RetryPolicy
from keeper.chain.rpc import RpcBroadcaster, RpcClient, RpcConfig, endpoint_name, endpoint_names
from keeper.errors import (
    ConfigError,
    KeeperError,
    NonceTooLow,
    RpcError,
    SimulationReverted,
)

T = TypeVar("T")
FAST = RetryPolicy(attempts=3, max_seconds=5, initial_wait=0.001, max_wait=0.002)


def client(*urls: str, **kwargs: Any) -> RpcClient:
    return RpcClient(
        RpcConfig(urls=urls, timeout_seconds=5, policy=FAST, broadcast_policy=FAST, **kwargs)
    )


def run(body: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(body())


class Node:
    """A scripted node: answers by method, counts what it was asked."""

    def __init__(self, head: int = 100, chain_id: int = 31337) -> None:
        self.head = head
        self.chain_id = chain_id
        self.asked: Counter[str] = Counter()
        self.refuse: dict[str, dict[str, Any]] = {}
        self.http_status: int | None = None

    def __call__(self, request: dict[str, Any]) -> dict[str, Any] | web.Response:
        method = request["method"]
        self.asked[method] += 1
        if self.http_status is not None:
            return web.Response(status=self.http_status, text="slow down")
        if method in self.refuse:
            spec = self.refuse[method]
            return error(request, spec["code"], spec["message"], spec.get("data"))
        if method == "eth_chainId":
            return ok(request, hex(self.chain_id))
        if method == "eth_blockNumber":
            return ok(request, hex(self.head))
        if method == "eth_getBlockByNumber":
            return ok(request, {"number": hex(self.head), "hash": "0x" + f"{self.head:064x}"})
        if method == "eth_sendRawTransaction":
            return ok(request, "0x" + keccak(bytes.fromhex(request["params"][0][2:])).hex())
        return ok(request, f"{method}:{request['params']}")


def test_endpoint_labels_never_carry_the_path_where_api_keys_live() -> None:
    assert endpoint_name("https://eth.example.com/v3/SECRETKEY") == "eth.example.com:443"
    assert endpoint_names(["http://a:1/x", "http://a:1/y", "http://b/"]) == [
        "a:1",
        "a:1#2",
        "b:80",
    ]


def test_http_429_fails_over_to_the_next_endpoint_at_once() -> None:
    limited, good = Node(), Node()
    limited.http_status = 429

    async def go() -> tuple[Any, str]:
        async with jsonrpc_server(limited) as a, jsonrpc_server(good) as b:
            rpc = client(a, b)
            try:
                answer = await rpc.call("eth_getBalance", ["0x00", "latest"])
                return answer, rpc.state(rpc.endpoints[0])
            finally:
                await rpc.close()

    answer, state = run(go)
    assert answer == "eth_getBalance:['0x00', 'latest']"
    assert limited.asked["eth_getBalance"] == 1 and good.asked["eth_getBalance"] == 1
    assert state == "down"  # left out of the next requests until its cool-down ends


def test_a_rate_limited_only_endpoint_is_retried_then_an_rpc_error() -> None:
    limited = Node()
    limited.http_status = 429

    async def go() -> None:
        async with jsonrpc_server(limited) as a:
            rpc = client(a)
            try:
                await rpc.call("eth_blockNumber", [])
            finally:
                await rpc.close()

    with pytest.raises(RpcError, match="429"):
        run(go)
    assert limited.asked["eth_blockNumber"] == FAST.attempts


def test_a_keepalive_connection_closed_by_the_server_is_resent_on_a_fresh_one() -> None:
    async def go() -> tuple[list[Any], list[int]]:
        async with closing_keepalive_server("0x2a") as (url, answered):
            rpc = client(url)
            try:
                answers = [await rpc.call("eth_blockNumber", []) for _ in range(5)]
            finally:
                await rpc.close()
            return answers, answered

    answers, answered = run(go)
    assert answers == ["0x2a"] * 5
    assert answered.count(1) >= 4  # every pooled connection was hung up on its second request


def test_a_revert_is_the_nodes_verdict_not_a_reason_to_fail_over() -> None:
    first, second = Node(), Node()
    # Error(string) "no" (Solidity ABI: selector 0x08c379a0, offset, length, bytes)
    data = "0x08c379a0" + f"{32:064x}" + f"{2:064x}" + "6e6f".ljust(64, "0")
    first.refuse["eth_call"] = {"code": 3, "message": "execution reverted", "data": data}

    async def go() -> None:
        async with jsonrpc_server(first) as a, jsonrpc_server(second) as b:
            rpc = client(a, b)
            try:
                await rpc.call("eth_call", [{"to": "0x00"}, "latest"])
            finally:
                await rpc.close()

    with pytest.raises(SimulationReverted) as raised:
        run(go)
    assert raised.value.reason == "no"
    assert first.asked["eth_call"] == 1 and second.asked["eth_call"] == 0


def test_a_batch_is_matched_by_id_and_carries_errors_per_call() -> None:
    node = Node()
    node.refuse["eth_estimateGas"] = {"code": -32000, "message": "invalid opcode"}

    async def go() -> list[Any]:
        async with jsonrpc_server(node) as a:  # replies come back in reverse order
            rpc = client(a)
            try:
                return await rpc.batch(
                    [("eth_blockNumber", []), ("eth_estimateGas", [{}]), ("eth_chainId", [])]
                )
            finally:
                await rpc.close()

    answers = run(go)
    assert answers[0] == "0x64" and answers[2] == hex(31337)
    assert isinstance(answers[1], KeeperError) and not isinstance(answers[1], RpcError)


def test_a_batch_an_endpoint_lacks_the_block_for_goes_to_the_next_endpoint() -> None:
    behind, ahead = Node(), Node()
    behind.refuse["eth_call"] = {"code": -32000, "message": "header not found"}

    async def go() -> list[Any]:
        async with jsonrpc_server(behind) as a, jsonrpc_server(ahead) as b:
            rpc = client(a, b, max_batch=2)
            try:
                return await rpc.batch([("eth_call", [i]) for i in range(5)])
            finally:
                await rpc.close()

    assert run(go) == [f"eth_call:[{i}]" for i in range(5)]
    assert ahead.asked["eth_call"] == 5


def recorded_posts(rpc: RpcClient) -> list[Any]:
    """Every HTTP body the client's first endpoint posts from now on (a batch is a list)."""
    bodies: list[Any] = []
    real_post = rpc.endpoints[0].post

    async def post(body: Any) -> Any:
        bodies.append(body)
        return await real_post(body)

    rpc.endpoints[0].post = post  # type: ignore[method-assign]
    return bodies


def test_the_requests_of_a_batching_scope_go_as_one_batch_with_an_answer_each() -> None:
    """Reads started in a ``batching`` scope (in the tasks it starts, too) are one HTTP
    request; each caller gets its own answer or error; a later request goes alone."""
    node = Node()
    node.refuse["eth_estimateGas"] = {"code": -32000, "message": "invalid opcode"}
    bodies: list[Any] = []

    async def go() -> tuple[list[Any], Any]:
        nonlocal bodies
        async with jsonrpc_server(node) as a:
            rpc = client(a)
            bodies = recorded_posts(rpc)
            try:
                with rpc.batching():
                    tasks = [
                        asyncio.ensure_future(rpc.request("eth_blockNumber", [])),
                        asyncio.ensure_future(rpc.request("eth_estimateGas", [{}])),
                        asyncio.ensure_future(rpc.request("eth_getBalance", ["0xa", "latest"])),
                    ]
                answers = await asyncio.gather(*tasks, return_exceptions=True)
                alone = await rpc.request("eth_blockNumber", [])
                return answers, alone
            finally:
                await rpc.close()

    answers, alone = run(go)
    assert answers[0] == "0x64" and answers[2] == "eth_getBalance:['0xa', 'latest']"
    assert isinstance(answers[1], KeeperError) and "invalid opcode" in str(answers[1])
    assert [len(b) if isinstance(b, list) else 1 for b in bodies] == [3, 1]
    assert alone == "0x64"


def test_a_node_that_refuses_batches_answers_a_batching_scope_call_by_call() -> None:
    node = Node()
    bodies: list[Any] = []

    async def go() -> list[Any]:
        nonlocal bodies
        async with jsonrpc_server(node, refuse_batches=True) as a:
            rpc = client(a)
            bodies = recorded_posts(rpc)
            answers = []
            try:
                for _ in range(2):  # refused once: the second block's reads are sent alone
                    with rpc.batching():
                        tasks = [
                            asyncio.ensure_future(rpc.request("eth_blockNumber", [])),
                            asyncio.ensure_future(rpc.request("eth_chainId", [])),
                        ]
                    answers.append(list(await asyncio.gather(*tasks)))
            finally:
                await rpc.close()
            return answers

    assert run(go) == [["0x64", hex(31337)]] * 2
    assert node.asked["eth_blockNumber"] == node.asked["eth_chainId"] == 2
    assert [isinstance(b, list) for b in bodies] == [True] + [False] * 4  # one batch, then none


def test_a_batching_scope_survives_a_caller_that_gave_up() -> None:
    node = Node()

    async def go() -> Any:
        async with jsonrpc_server(node) as a:
            rpc = client(a)
            try:
                with rpc.batching():
                    gone = asyncio.ensure_future(rpc.request("eth_blockNumber", []))
                    kept = asyncio.ensure_future(rpc.request("eth_chainId", []))
                await asyncio.sleep(0)
                gone.cancel()
                return await kept
            finally:
                await rpc.close()

    assert run(go) == hex(31337)


def test_broadcast_counts_as_sent_when_any_endpoint_accepts() -> None:
    refusing, accepting = Node(), Node()
    refusing.refuse["eth_sendRawTransaction"] = {"code": -32000, "message": "nonce too low"}
    raw = b"\x02signed"

    async def go() -> str:
        async with jsonrpc_server(refusing) as a, jsonrpc_server(accepting) as b:
            rpc = client(a, b)
            try:
                return await rpc.broadcast(raw)
            finally:
                await rpc.close()

    assert run(go) == "0x" + keccak(raw).hex()
    assert refusing.asked["eth_sendRawTransaction"] == 1
    assert accepting.asked["eth_sendRawTransaction"] == 1


def test_broadcast_raises_the_nodes_verdict_before_a_transport_error() -> None:
    refusing = Node()
    refusing.refuse["eth_sendRawTransaction"] = {"code": -32000, "message": "nonce too low"}

    async def go() -> None:
        async with jsonrpc_server(refusing) as a:
            rpc = client(a, "http://127.0.0.1:9/")  # nothing listens on the discard port
            try:
                await RpcBroadcaster(rpc).send_raw(b"\x02signed")
            finally:
                await rpc.close()

    with pytest.raises(NonceTooLow):
        run(go)
    assert refusing.asked["eth_sendRawTransaction"] == 1  # a verdict is not retried


def test_the_highest_head_wins_and_a_lagging_endpoint_sits_out_until_it_catches_up() -> None:
    tip, behind = Node(head=100), Node(head=90)

    async def go() -> tuple[int, int | None, list[str], list[str]]:
        async with jsonrpc_server(tip) as a, jsonrpc_server(behind) as b:
            rpc = client(b, a, max_lag_blocks=3)
            try:
                latest = await rpc.latest_block()
                lagging = [rpc.state(e) for e in rpc.endpoints]
                for _ in range(4):
                    await rpc.call("eth_call", [])
                behind.head = 98
                await rpc.latest_block()
                caught_up = [rpc.state(e) for e in rpc.endpoints]
                return int(latest["number"], 16), rpc.best_head(), lagging, caught_up
            finally:
                await rpc.close()

    number, best, lagging, caught_up = run(go)
    assert number == 100 and best == 100
    assert lagging == ["lagging", "healthy"]
    assert behind.asked["eth_call"] == 0 and tip.asked["eth_call"] == 4
    assert caught_up == ["healthy", "healthy"]


def test_the_chain_id_is_asked_once_and_endpoints_must_agree() -> None:
    one, other = Node(chain_id=1), Node(chain_id=10)

    async def go() -> tuple[int, int]:
        async with jsonrpc_server(one) as a, jsonrpc_server(other) as b:
            rpc = client(a)
            mixed = client(a, b)
            try:
                first, second = await rpc.chain_id(), await rpc.chain_id()
                with pytest.raises(ConfigError, match=r"KEEPER_RPC_URLS.*disagree"):
                    await mixed.check_endpoints()
                return first, second
            finally:
                await rpc.close()
                await mixed.close()

    assert run(go) == (1, 1)
    assert one.asked["eth_chainId"] == 2  # once by rpc, once by the check of mixed


def test_every_endpoint_down_is_an_rpc_error_not_a_hang() -> None:
    async def go() -> None:
        rpc = client("http://127.0.0.1:9/", "http://127.0.0.1:9/x")
        try:
            await rpc.latest_block()
        finally:
            await rpc.close()

    with pytest.raises(RpcError):
        run(go)


def test_a_hung_endpoint_never_holds_up_the_head() -> None:
    """One endpoint accepts connections and never answers: the head poll returns the other
    endpoint's head while the hung probe is still waiting (it goes on in the background)."""
    good = Node(head=321)

    async def swallow(reader: asyncio.StreamReader, _: asyncio.StreamWriter) -> None:
        await reader.read(-1)

    async def go() -> tuple[int, bool]:
        server = await asyncio.start_server(swallow, "127.0.0.1", 0)
        hung = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        try:
            async with jsonrpc_server(good) as b:
                rpc = client(hung, b)
                try:
                    latest = await rpc.latest_block()
                    probe = rpc.endpoints[0].probe
                    return int(latest["number"], 16), probe is not None and not probe.done()
                finally:
                    await rpc.close()
        finally:
            server.close()

    assert run(go) == (321, True)


def test_a_receipt_comes_typed_and_its_logs_are_formatted_when_read() -> None:
    """``RpcEth``: quantities as ints, hashes as bytes; the logs (hundreds in a settlement's
    receipt) are counted without being formatted, and formatted once when read."""
    topic = "0x" + "ab" * 32
    log_item = {"address": "0x" + "11" * 20, "topics": [topic], "data": "0x01", "logIndex": "0x7"}
    receipt = {"blockNumber": "0x10", "blockHash": "0x" + "cd" * 32, "status": "0x1"}

    def node(request: dict[str, Any]) -> dict[str, Any]:
        return ok(request, {**receipt, "logs": [log_item, log_item]})

    async def go() -> Any:
        async with jsonrpc_server(node) as url:
            rpc = client(url)
            try:
                return await RpcEth(rpc).get_transaction_receipt("0x" + "ee" * 32)
            finally:
                await rpc.close()

    got = run(go)
    assert got["blockNumber"] == 16 and got["status"] == 1
    assert got["blockHash"] == bytes.fromhex("cd" * 32)
    logs = got["logs"]
    assert len(logs) == 2 and logs._done is None  # counted, not formatted
    assert logs[0]["topics"] == [bytes.fromhex("ab" * 32)] and logs[0]["logIndex"] == 7
    assert bytes(logs[1]["data"]) == b"\x01" and logs[0] is logs[0]  # formatted once
    assert [item["logIndex"] for item in logs] == [7, 7]
