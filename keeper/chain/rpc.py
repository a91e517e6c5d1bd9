"""JSON-RPC over HTTP to one or several endpoints, without web3's request machinery.

* One keep-alive ``aiohttp`` session per endpoint; requests are truly concurrent (up to
  ``max_connections`` sockets per endpoint) and each HTTP request carries its own answer, so
  a cancelled request can never hand its reply to a later one or hold a socket (aiohttp
  closes a connection whose request was cancelled half-way).
* Several endpoints (``KEEPER_RPC_URLS``): each has a health score (an exponentially weighted
  success rate), a cool-down after consecutive failures, and its latest head. Reads go to the
  best healthy endpoint that is at most ``max_lag_blocks`` behind the highest head and fail
  over to the next one at once (no back-off between endpoints, so within one block); the
  retry policy backs off only after every endpoint failed. A lagging endpoint is left out of
  block-sensitive reads until it catches up; a failed one is probed again by the head poll.
* ``broadcast`` hands the same signed bytes to every healthy endpoint at once.
* Errors map into the ``KeeperError`` tree (``keeper.chain.retry.classify_message``): a
  transport failure, an HTTP 429 / 5xx or a node that lacks the block is ``RpcError``
  (fail over, retry); the node's verdict on the request itself (a revert, a refusal) is not
  retried and does not count against the endpoint.

JSON-RPC 2.0 batches: https://www.jsonrpc.org/specification#batch (replies may come in any
order; they are matched by ``id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from eth_utils.crypto import keccak

from keeper.chain.retry import BROADCAST_POLICY, READ_POLICY, RetryPolicy, classify_message
from keeper.chain.retry import _data_bytes as revert_data
from keeper.errors import AlreadyKnown, ConfigError, KeeperError, RpcError, RpcTimeout

log = logging.getLogger("keeper.rpc")

HEALTHY, LAGGING, DOWN = "healthy", "lagging", "down"


@dataclass(frozen=True)
class RpcConfig:
    urls: tuple[str, ...]
    timeout_seconds: float = 10.0
    max_lag_blocks: int = 3
    max_connections: int = 32  # sockets per endpoint
    max_batch: int = 100  # JSON-RPC calls per HTTP batch (providers cap it)
    probe_grace_seconds: float = 0.25  # a head poll waits this long for the slower endpoints
    cooldown_seconds: float = 1.0  # after a failure; doubles per consecutive one
    max_cooldown_seconds: float = 30.0
    policy: RetryPolicy = READ_POLICY
    broadcast_policy: RetryPolicy = BROADCAST_POLICY


class RpcObserver(Protocol):
    """Where per-endpoint numbers go (``keeper.metrics`` implements it)."""

    def rpc_request(self, endpoint: str, method: str, seconds: float, error: str | None) -> None:
        """One request answered (``error`` None) or failed (the error's class name)."""

    def rpc_endpoint(self, endpoint: str, head: int | None, state: str) -> None:
        """An endpoint's latest head and state (healthy / lagging / down)."""


class _Silent:
    def rpc_request(self, endpoint: str, method: str, seconds: float, error: str | None) -> None:
        pass

    def rpc_endpoint(self, endpoint: str, head: int | None, state: str) -> None:
        pass


def endpoint_name(url: str) -> str:
    """``host:port`` of ``url``: never its path or query, where providers put API keys."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
    return f"{parts.hostname}:{port}"


def endpoint_names(urls: Sequence[str]) -> list[str]:
    """Distinct metric labels for ``urls`` (``#2`` etc. when two share a host and port)."""
    names: list[str] = []
    for url in urls:
        base = endpoint_name(url)
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}#{n}"
        names.append(name)
    return names


class Endpoint:
    """One node: its session, head, health score and cool-down."""

    def __init__(self, url: str, name: str, config: RpcConfig, clock: Callable[[], float]) -> None:
        self.url = url
        self.name = name
        self._config = config
        self._clock = clock
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None
        self.head: int | None = None
        self.score = 1.0
        self.failures = 0  # consecutive
        self.down_until = 0.0
        self.probe: asyncio.Task[dict[str, Any]] | None = None

    def next_id(self) -> int:
        return next(self._ids)

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._config.max_connections, keepalive_timeout=15
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self._config.timeout_seconds),
            )
        return self._session

    @property
    def down(self) -> bool:
        return self._clock() < self.down_until

    def succeeded(self) -> None:
        self.score = 0.8 * self.score + 0.2
        self.failures = 0
        self.down_until = 0.0

    def failed(self) -> None:
        self.score = 0.8 * self.score
        self.failures += 1
        wait = self._config.cooldown_seconds * 2 ** (self.failures - 1)
        self.down_until = self._clock() + min(wait, self._config.max_cooldown_seconds)

    async def post(self, body: Any) -> Any:
        """POST one JSON-RPC body; the decoded reply. Transport trouble is ``RpcError``.

        A keep-alive connection the server closed while idle fails the first write: the
        request is sent once more on a fresh connection (JSON-RPC reads and a raw broadcast
        of the same bytes are safe to repeat)."""
        try:
            return await self._post_once(body)
        except _StaleConnection:
            pass
        try:
            return await self._post_once(body)
        except _StaleConnection as exc:
            raise RpcError(f"{self.name}: connection closed: {exc.__cause__}") from exc

    async def _post_once(self, body: Any) -> Any:
        try:
            async with self.session().post(self.url, json=body) as response:
                payload = await response.read()
                status = response.status
        except TimeoutError as exc:
            raise RpcTimeout(
                f"{self.name}: no answer in {self._config.timeout_seconds:g}s"
            ) from exc
        except aiohttp.ClientConnectorError as exc:  # refused, unreachable: not worth a resend
            raise RpcError(f"{self.name}: {type(exc).__name__}: {exc}") from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            raise _StaleConnection from exc
        except aiohttp.ClientError as exc:
            raise RpcError(f"{self.name}: {type(exc).__name__}: {exc}") from exc
        return _decode(self.name, status, payload)

    async def close(self) -> None:
        if self.probe is not None:
            self.probe.cancel()
            await asyncio.gather(self.probe, return_exceptions=True)
        if self._session is not None:
            await self._session.close()


class _Batcher:
    """The requests of one :meth:`RpcClient.batching` scope, sent as one batch per turn of
    the event loop (the first request of a turn schedules the send)."""

    def __init__(self, client: RpcClient) -> None:
        self.client = client
        self._pending: list[tuple[str, list[Any], asyncio.Future[Any]]] = []

    def add(self, method: str, params: list[Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((method, params, answer))
        return answer

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        task = asyncio.ensure_future(self._send(pending))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _send(self, pending: list[tuple[str, list[Any], asyncio.Future[Any]]]) -> None:
        live = [p for p in pending if not p[2].done()]  # a cancelled caller is not asked for
        if not live:
            return
        calls = [(method, params) for method, params, _ in live]
        answers: list[Any] | None = None
        try:
            answers = await self._answers(calls)
        finally:
            if answers is None:  # cancelled (shutdown): no caller is left waiting
                for _, _, answer in live:
                    answer.cancel()
        for (_, _, answer), result in zip(live, answers, strict=True):
            if answer.done():
                continue
            if isinstance(result, BaseException):
                answer.set_exception(result)
            else:
                answer.set_result(result)

    async def _answers(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """One answer or error per call: in batches of at most ``max_batch``; a batch that
        failed as a whole (some providers refuse batches) asked again call by call."""
        client = self.client
        if len(calls) > 1:
            try:
                return await client._in_batches(calls, True, client._batch_round)
            except RpcError:  # transport trouble: each call tries again alone
                pass
            except KeeperError as exc:  # the node's verdict on batches: not asked again
                log.warning("the node refuses JSON-RPC batches: asking call by call (%s)", exc)
                client.batches_refused = True
        return await asyncio.gather(
            *(client._call_round(method, params, True) for method, params in calls),
            return_exceptions=True,
        )


_BATCHING: contextvars.ContextVar[_Batcher | None] = contextvars.ContextVar(
    "rpc_batching", default=None
)


class _StaleConnection(Exception):
    """The server closed the connection under the request (resent once by ``post``)."""


def _decode(name: str, status: int, payload: bytes) -> Any:
    if status == 429:
        raise RpcError(f"{name}: HTTP 429 too many requests")
    try:
        return json.loads(payload)
    except ValueError:
        raise RpcError(f"{name}: HTTP {status}, not JSON: {payload[:120]!r}") from None


def _result(reply: Any, prefix: str) -> Any:
    """The ``result`` of one JSON-RPC reply, or its ``error`` as a ``KeeperError``."""
    if not isinstance(reply, dict):
        raise RpcError(f"{prefix}malformed reply: {str(reply)[:120]}")
    error = reply.get("error")
    if error is not None:
        if not isinstance(error, dict):
            raise RpcError(f"{prefix}malformed error: {str(error)[:120]}")
        code = error.get("code")
        raise classify_message(
            str(error.get("message", "")),
            code if isinstance(code, int) else None,
            revert_data(error.get("data")),
            prefix,
        )
    if "result" not in reply:
        raise RpcError(f"{prefix}reply without result: {str(reply)[:120]}")
    return reply["result"]


class RpcClient:
    """JSON-RPC to every configured endpoint (see the module docstring)."""

    def __init__(
        self,
        config: RpcConfig,
        observer: RpcObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not config.urls:
            raise ConfigError("KEEPER_RPC_URLS: no endpoint configured")
        self._config = config
        self._observer: RpcObserver = observer or _Silent()
        self._clock = clock
        self.endpoints = [
            Endpoint(url, name, config, clock)
            for url, name in zip(config.urls, endpoint_names(config.urls), strict=True)
        ]
        # Only transport trouble is retried: a node's verdict will not change on a resend.
        self._policy = dataclasses.replace(config.policy, retry_on=(RpcError,))
        self._broadcast_policy = dataclasses.replace(config.broadcast_policy, retry_on=(RpcError,))
        self._chain_id: int | None = None
        self.batches_refused = False  # the node answered a batch with an error: none sent again

    # --- the interface --------------------------------------------------------------

    async def call(self, method: str, params: list[Any], *, block_sensitive: bool = True) -> Any:
        """One request to the best endpoint, failing over to the others (``KeeperError``).

        ``block_sensitive``: the answer depends on the chain's tip (a read at ``latest`` or at
        a recent block), so endpoints behind the highest head are left out."""
        return await self._policy.call(
            lambda: self._call_round(method, params, block_sensitive), method
        )

    async def request(self, method: str, params: list[Any], *, block_sensitive: bool = True) -> Any:
        """Like :meth:`call`, without retrying: one round over the endpoints (failing over at
        once). For callers that hold their own retry policy (``keeper.chain.eth``). Under
        :meth:`batching`, a block-sensitive request joins the scope's next JSON-RPC batch."""
        batcher = _BATCHING.get()
        if (
            batcher is None
            or batcher.client is not self
            or self.batches_refused
            or not block_sensitive
        ):
            return await self._call_round(method, params, block_sensitive)
        return await batcher.add(method, params)

    @contextlib.contextmanager
    def batching(self) -> Iterator[None]:
        """The requests (``request``) made in this scope and in the tasks it starts, in one
        turn of the event loop, go to the node as one JSON-RPC batch (one HTTP request): the
        journal's reads ahead of a block. Each caller gets its own answer or error."""
        token = _BATCHING.set(_Batcher(self))
        try:
            yield
        finally:
            _BATCHING.reset(token)

    async def batch(
        self, calls: Sequence[tuple[str, list[Any]]], *, block_sensitive: bool = True
    ) -> list[Any | KeeperError]:
        """Many requests in JSON-RPC batches of at most ``max_batch`` (sent concurrently);
        one result or ``KeeperError`` per call, in order. A batch whose endpoint failed, or
        lacked the data for any of its calls, is sent to the next endpoint."""
        return await self._in_batches(calls, block_sensitive, self._batch)

    async def _in_batches(
        self,
        calls: Sequence[tuple[str, list[Any]]],
        block_sensitive: bool,
        send: Callable[[Sequence[tuple[str, list[Any]]], bool], Awaitable[list[Any]]],
    ) -> list[Any]:
        """``calls`` in batches of at most ``max_batch``, each sent with ``send`` (all at
        once); the answers in order."""
        size = self._config.max_batch
        chunks = [list(calls[i : i + size]) for i in range(0, len(calls), size)]
        parts = await asyncio.gather(*(send(chunk, block_sensitive) for chunk in chunks))
        return [item for part in parts for item in part]

    async def _batch(
        self, calls: Sequence[tuple[str, list[Any]]], block_sensitive: bool
    ) -> list[Any | KeeperError]:
        return await self._policy.call(lambda: self._batch_round(calls, block_sensitive), "batch")

    async def broadcast(self, raw: bytes) -> str:
        """Send signed bytes to every healthy endpoint at once; the transaction hash.

        Accepted (or already known) by any endpoint counts as sent. Otherwise the node's
        verdict (nonce too low, underpriced, insufficient funds) is raised before a
        transport error; only the latter is retried."""
        tx_hash = "0x" + keccak(raw).hex()
        await self._broadcast_policy.call(
            lambda: self._broadcast_round(raw, tx_hash), "eth_sendRawTransaction"
        )
        return tx_hash

    def best_head(self) -> int | None:
        """The highest head of the endpoints not in cool-down (of all, when every one is)."""
        heads = [e.head for e in self.endpoints if e.head is not None and not e.down]
        heads = heads or [e.head for e in self.endpoints if e.head is not None]
        return max(heads) if heads else None

    async def chain_id(self) -> int:
        """The chain id, asked once; every endpoint must agree (``check_endpoints``)."""
        if self._chain_id is None:
            self._chain_id = int(await self.call("eth_chainId", [], block_sensitive=False), 16)
        return self._chain_id

    async def check_endpoints(self) -> int:
        """Ask every endpoint its chain id: ``ConfigError`` naming the one on another chain;
        an unreachable one is only logged (it is probed again by the head poll)."""
        ids = await asyncio.gather(
            *(self._request(e, "eth_chainId", []) for e in self.endpoints),
            return_exceptions=True,
        )
        seen: dict[int, str] = {}
        for endpoint, answer in zip(self.endpoints, ids, strict=True):
            if isinstance(answer, BaseException):
                if not isinstance(answer, KeeperError):
                    raise answer
                log.warning("endpoint %s unreachable at start: %s", endpoint.name, answer)
                continue
            seen.setdefault(int(answer, 16), endpoint.name)
        if not seen:
            raise RpcError("no RPC endpoint answered eth_chainId")
        if len(seen) > 1:
            listed = ", ".join(f"{name} is on chain {cid}" for cid, name in seen.items())
            raise ConfigError(f"KEEPER_RPC_URLS: the endpoints disagree: {listed}")
        self._chain_id = next(iter(seen))
        return self._chain_id

    async def latest_block(self) -> dict[str, Any]:
        """Every endpoint's latest block, asked at once; the highest one wins.

        Returns once one endpoint answered and the others had ``probe_grace_seconds`` more
        (a slow endpoint's probe goes on and updates its head when it answers, so a hung
        node never delays the head); ``RpcError`` when none answered."""
        tasks = [self._probe_task(e) for e in self.endpoints]
        pending: set[asyncio.Task[dict[str, Any]]] = set(tasks)
        while pending and not any(_answered(t) for t in tasks):
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if pending:
            await asyncio.wait(pending, timeout=self._config.probe_grace_seconds)
        self._publish_states()
        answered = [t.result() for t in tasks if _answered(t)]
        if not answered:
            errors = [t.exception() for t in tasks if t.done() and not t.cancelled()]
            raise next((e for e in errors if isinstance(e, KeeperError)), RpcError("no head"))
        return max(answered, key=lambda block: int(block["number"], 16))

    def state(self, endpoint: Endpoint) -> str:
        if endpoint.down:
            return DOWN
        return LAGGING if self._lagging(endpoint) else HEALTHY

    async def close(self) -> None:
        await asyncio.gather(*(e.close() for e in self.endpoints))

    # --- internals ------------------------------------------------------------------

    def _lagging(self, endpoint: Endpoint) -> bool:
        best = self.best_head()
        if endpoint.head is None or best is None:
            return False
        return endpoint.head < best - self._config.max_lag_blocks

    def _candidates(self, block_sensitive: bool) -> list[Endpoint]:
        """Healthy endpoints, best score first (lagging ones left out of block-sensitive
        reads); when none is healthy, every endpoint, so a request is always tried."""
        usable = [e for e in self.endpoints if not e.down]
        if block_sensitive:
            usable = [e for e in usable if not self._lagging(e)]
        return sorted(usable or self.endpoints, key=lambda e: -e.score)

    async def _call_round(self, method: str, params: list[Any], block_sensitive: bool) -> Any:
        last: RpcError | None = None
        for endpoint in self._candidates(block_sensitive):
            try:
                return await self._request(endpoint, method, params)
            except RpcError as exc:
                last = exc
        assert last is not None
        raise last

    async def _request(self, endpoint: Endpoint, method: str, params: list[Any]) -> Any:
        body = {"jsonrpc": "2.0", "id": endpoint.next_id(), "method": method, "params": params}
        started = time.perf_counter()
        try:
            result = _result(await endpoint.post(body), f"{method} at {endpoint.name}: ")
        except KeeperError as exc:
            self._observe(endpoint, method, started, exc)
            raise
        self._observe(endpoint, method, started, None)
        return result

    def _observe(
        self, endpoint: Endpoint, method: str, started: float, error: KeeperError | None
    ) -> None:
        if isinstance(error, RpcError):
            was_down = endpoint.down
            endpoint.failed()
            if not was_down:
                log.warning("endpoint %s failing over: %s", endpoint.name, error)
                self._observer.rpc_endpoint(endpoint.name, endpoint.head, DOWN)
        else:
            endpoint.succeeded()
        seconds = time.perf_counter() - started
        self._observer.rpc_request(
            endpoint.name, method, seconds, None if error is None else type(error).__name__
        )

    async def _batch_round(
        self, calls: Sequence[tuple[str, list[Any]]], block_sensitive: bool
    ) -> list[Any | KeeperError]:
        candidates = self._candidates(block_sensitive)
        last: RpcError | None = None
        for n, endpoint in enumerate(candidates):
            try:
                items = await self._batch_at(endpoint, calls)
            except RpcError as exc:
                last = exc
                continue
            transient = [i for i in items if isinstance(i, RpcError)]
            if not transient or n == len(candidates) - 1:
                return items
            last = transient[0]
        assert last is not None
        raise last

    async def _batch_at(
        self, endpoint: Endpoint, calls: Sequence[tuple[str, list[Any]]]
    ) -> list[Any | KeeperError]:
        first = endpoint.next_id()
        body = [
            {"jsonrpc": "2.0", "id": first + i, "method": method, "params": params}
            for i, (method, params) in enumerate(calls)
        ]
        for _ in range(len(calls) - 1):
            endpoint.next_id()
        started = time.perf_counter()
        try:
            reply = await endpoint.post(body)
            if not isinstance(reply, list):  # the whole batch refused
                _result(reply, f"batch at {endpoint.name}: ")
                raise RpcError(f"batch at {endpoint.name}: not a list: {str(reply)[:120]}")
            by_id = {r.get("id"): r for r in reply if isinstance(r, dict)}
            missing = [first + i for i in range(len(calls)) if first + i not in by_id]
            if missing:
                raise RpcError(f"batch at {endpoint.name}: {len(missing)} replies missing")
        except KeeperError as exc:
            self._observe(endpoint, "batch", started, exc)
            raise
        self._observe(endpoint, "batch", started, None)
        return [_item(by_id[first + i], method, endpoint) for i, (method, _) in enumerate(calls)]

    async def _broadcast_round(self, raw: bytes, tx_hash: str) -> None:
        targets = [e for e in self.endpoints if not e.down] or self.endpoints
        params = ["0x" + raw.hex()]
        answers = await asyncio.gather(
            *(self._request(e, "eth_sendRawTransaction", params) for e in targets),
            return_exceptions=True,
        )
        errors: list[KeeperError] = []
        for endpoint, answer in zip(targets, answers, strict=True):
            if isinstance(answer, AlreadyKnown):
                return
            if isinstance(answer, KeeperError):
                errors.append(answer)
            elif isinstance(answer, BaseException):
                raise answer
            else:
                if str(answer).lower() != tx_hash:
                    log.warning(
                        "endpoint %s returned hash %s for %s", endpoint.name, answer, tx_hash
                    )
                return
        verdicts = [e for e in errors if not isinstance(e, RpcError)]
        raise verdicts[0] if verdicts else errors[0]

    def _probe_task(self, endpoint: Endpoint) -> asyncio.Task[dict[str, Any]]:
        previous = endpoint.probe
        if previous is not None and previous.done() and not previous.cancelled():
            previous.exception()  # retrieved: its failure was counted when it happened
        if previous is not None and not previous.done():
            return previous  # still waiting for a slow endpoint: no second probe
        probe = asyncio.create_task(self._probe(endpoint), name=f"probe {endpoint.name}")
        endpoint.probe = probe
        return probe

    async def _probe(self, endpoint: Endpoint) -> dict[str, Any]:
        block = await self._request(endpoint, "eth_getBlockByNumber", ["latest", False])
        if not isinstance(block, dict) or "number" not in block:
            raise RpcError(f"{endpoint.name}: latest block malformed: {str(block)[:120]}")
        endpoint.head = int(block["number"], 16)
        return block

    def _publish_states(self) -> None:
        for endpoint in self.endpoints:
            self._observer.rpc_endpoint(endpoint.name, endpoint.head, self.state(endpoint))


def _answered(task: asyncio.Task[dict[str, Any]]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is None


def _item(reply: dict[str, Any], method: str, endpoint: Endpoint) -> Any | KeeperError:
    try:
        return _result(reply, f"{method} at {endpoint.name}: ")
    except KeeperError as exc:
        return exc


class RpcBroadcaster:
    """``keeper.tx.sender.Broadcaster`` over ``RpcClient.broadcast``: every healthy
    endpoint gets the bytes.

    ``fence`` (e.g. ``Store.check_lease``) is called first and raises when this instance
    no longer holds the leader lease: a leader paused past its lease does not broadcast."""

    def __init__(
        self, client: RpcClient, name: str = "rpc", fence: Callable[[], None] | None = None
    ) -> None:
        self._client = client
        self.name = name
        self._fence = fence

    async def send_raw(self, raw: bytes) -> None:
        if self._fence is not None:
            self._fence()
        await self._client.broadcast(raw)
