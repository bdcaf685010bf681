"""Delivery latency of server events fanned out to 100 websockets, and that none is lost.

The server (``create_app`` with the bundled plugins, SQLite, uvicorn with
uvloop and its default websocket settings, per-message deflate included) runs
in its own process. 100 ``/ws/chat/`` sockets connect from this process, each
with a ticket of its own, for 70 users: 50 with one socket (one tab), 15 with
two (a tab and a phone) and 5 with four (a power user's tabs and devices).
Events go only to the sockets of the event's user (the hub's per-user
fan-out), so one event reaches one, two or four sockets.

Inside the server's event loop, a publisher calls ``EventHub.publish`` for
users in turn, at a steady rate; every event carries its wall-clock send time
and a sequence number. Each socket records when its events arrive and counts
them against how many its user was sent. A first phase at a low rate is the
baseline of the same run (what one delivery costs on an idle server), then
the measured phase runs at 1,000 events/s for 10 s.

    .venv/bin/python benchmarks/ws_fanout.py [--rate 1000] [--seconds 10]

Target: p99 delivery latency under 50 ms at 1,000 events/s, no event lost.
Results: benchmarks/results/ws_fanout.*
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
import uvicorn
import uvloop
from common import machine_busy_seconds, summary_ms, table, write_results
from fastapi import FastAPI, Request
from pydantic import BaseModel
from server_overhead import (
    PASSWORD,
    BenchPlugin,
    InstantBackend,
    ServerProcess,
    chat_settings,
)
from websockets.asyncio.client import ClientConnection, connect

from mongars_core.plugins import build_plugin_manager

MIX = [(50, 1), (15, 2), (5, 4)]  # (users, sockets each): 70 users, 100 sockets
EVENT = "bench.tick"


# -- the server (``--serve fanout``) -------------------------------------------------


class FanoutPlan(BaseModel):
    users: list[str]
    rate: float
    seconds: float


async def publish(hub: Any, plan: FanoutPlan, stats: dict[str, Any]) -> None:
    """``plan.rate`` events a second, users in turn, on schedule however long a publish takes."""
    from mongars_server.events import make_event

    total = round(plan.rate * plan.seconds)
    started = time.perf_counter()
    sent = deliveries = 0
    while sent < total:
        due = min(total, int((time.perf_counter() - started) * plan.rate) + 1)
        stats["max_behind"] = max(stats["max_behind"], due - sent)
        while sent < due:
            user = plan.users[sent % len(plan.users)]
            event = make_event(EVENT, user, {"seq": sent, "sent": time.time()})
            deliveries += await hub.publish(event)
            sent += 1
        await asyncio.sleep(0.001)
    stats.update(
        published=sent,
        deliveries=deliveries,
        seconds=round(time.perf_counter() - started, 3),
        dropped_clients=hub.dropped_clients,
        connections=hub.connections,
        done=True,
    )


def serve(port: int, data_dir: Path) -> None:
    from mongars_server import create_app

    settings = chat_settings(data_dir, None)
    pm = build_plugin_manager(settings, plugins=[("bench", BenchPlugin(InstantBackend()))])
    app: FastAPI = create_app(settings, plugin_manager=pm)
    stats: dict[str, Any] = {}
    tasks: set[asyncio.Task[None]] = set()

    @app.post("/_bench/fanout")
    async def start(request: Request, plan: FanoutPlan) -> dict[str, Any]:
        hub = request.state.server.hub
        stats.clear()
        stats.update(done=False, max_behind=0, connections_at_start=hub.connections)
        task = asyncio.create_task(publish(hub, plan, stats))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return stats

    @app.get("/_bench/fanout")
    async def progress() -> dict[str, Any]:
        return stats

    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    uvicorn.Server(config).run()


# -- the clients ---------------------------------------------------------------------


@dataclass
class Socket:
    user_index: int
    user: str
    received: int = 0
    seen: set[int] = field(default_factory=set)
    duplicates: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    pings: int = 0
    close_code: int | None = None
    connection: ClientConnection | None = None

    def reset(self) -> None:
        self.received = self.duplicates = 0
        self.seen.clear()
        self.latencies_ms.clear()


async def listen(socket: Socket, url: str, connected: asyncio.Event) -> None:
    async with connect(url) as connection:
        socket.connection = connection
        kinds = [json.loads(await connection.recv())["type"] for _ in range(2)]
        assert kinds == ["ws.connected", "history.snapshot"], kinds
        connected.set()
        try:
            async for raw in connection:
                arrived = time.time()
                event = json.loads(raw)
                if event["type"] == EVENT:
                    data = event["data"]
                    socket.latencies_ms.append((arrived - data["sent"]) * 1000)
                    if data["seq"] in socket.seen:
                        socket.duplicates += 1
                    socket.seen.add(data["seq"])
                    socket.received += 1
                elif event["type"] == "ping":
                    socket.pings += 1
                    await connection.send(json.dumps({"type": "pong"}))
        finally:
            socket.close_code = connection.close_code


def expected(total: int, users: int, index: int) -> int:
    """Events a user got when ``total`` went to ``users`` users in turn."""
    return total // users + (1 if index < total % users else 0)


async def phase(
    server: ServerProcess,
    http: httpx.AsyncClient,
    sockets: list[Socket],
    users: list[str],
    rate: float,
    seconds: float,
) -> dict[str, Any]:
    for socket in sockets:
        socket.reset()
    client_cpu, machine_cpu = time.process_time(), machine_busy_seconds()
    server_cpu = server.cpu_seconds()
    started = time.perf_counter()
    plan = {"users": users, "rate": rate, "seconds": seconds}
    (await http.post("/_bench/fanout", json=plan)).raise_for_status()
    for _ in range(int(seconds * 10) + 300):
        stats = (await http.get("/_bench/fanout")).json()
        if stats["done"]:
            break
        await asyncio.sleep(0.1)
    else:
        raise RuntimeError(f"the publisher did not finish: {stats}")
    # Let the last events arrive: up to 5 s for every socket to reach its count.
    want = [expected(stats["published"], len(users), socket.user_index) for socket in sockets]
    for _ in range(50):
        if all(socket.received >= count for socket, count in zip(sockets, want, strict=True)):
            break
        await asyncio.sleep(0.1)
    elapsed = time.perf_counter() - started
    latencies = [value for socket in sockets for value in socket.latencies_ms]
    lost = sum(max(0, count - socket.received) for socket, count in zip(sockets, want, strict=True))
    return {
        "rate_per_s": rate,
        "seconds": seconds,
        "published": stats["published"],
        "publishing_seconds": stats["seconds"],
        "publisher_max_events_behind": stats["max_behind"],
        "expected_deliveries": sum(want),
        "server_counted_deliveries": stats["deliveries"],
        "received": sum(socket.received for socket in sockets),
        "lost": lost,
        "duplicates": sum(socket.duplicates for socket in sockets),
        "sockets_short": sum(
            1 for socket, count in zip(sockets, want, strict=True) if socket.received < count
        ),
        "clients_dropped_by_server": stats["dropped_clients"],
        "connections_at_end": stats["connections"],
        "latency": summary_ms(latencies) if latencies else None,
        "max_ms": round(max(latencies), 3) if latencies else None,
        "server_cpu_busy": round((server.cpu_seconds() - server_cpu) / elapsed, 2),
        "client_cpu_busy": round((time.process_time() - client_cpu) / elapsed, 2),
        "machine_cpu_busy": round((machine_busy_seconds() - machine_cpu) / elapsed, 2),
    }


async def tickets_for(http: httpx.AsyncClient, counts: list[tuple[str, int]]) -> list[str]:
    """Register every user (two at a time: argon2 is slow) and fetch a ticket per socket."""
    gate = asyncio.Semaphore(2)

    async def account(user: str, sockets: int) -> list[str]:
        async with gate:
            credentials = {"username": user, "password": PASSWORD}
            (await http.post("/api/v1/user/register", json=credentials)).raise_for_status()
            login = await http.post("/api/v1/auth/login", json=credentials)
            login.raise_for_status()
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        tickets = []
        for _ in range(sockets):
            issued = await http.post("/api/v1/auth/ws/ticket", headers=headers)
            issued.raise_for_status()
            tickets.append(issued.json()["ticket"])
        return tickets

    issued = await asyncio.gather(*(account(user, sockets) for user, sockets in counts))
    return [ticket for tickets in issued for ticket in tickets]


async def main(rate: float, seconds: float, baseline_rate: float) -> None:
    counts: list[tuple[str, int]] = []  # (user, sockets)
    for users_in_group, sockets_each in MIX:
        counts += [(f"fan{len(counts) + index}", sockets_each) for index in range(users_in_group)]
    users = [user for user, _ in counts]
    with tempfile.TemporaryDirectory() as workdir:
        server = ServerProcess("fanout", Path(workdir), script=__file__)
        await server.start()
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
                print(f"registering {len(users)} users...", flush=True)
                tickets = await tickets_for(http, counts)
                sockets = [
                    Socket(index, user)
                    for index, (user, count) in enumerate(counts)
                    for _ in range(count)
                ]
                ws_url = "ws" + server.url.removeprefix("http") + "/ws/chat/?t="
                listeners = []
                for socket, ticket in zip(sockets, tickets, strict=True):
                    connected = asyncio.Event()
                    listener = listen(socket, ws_url + ticket, connected)
                    listeners.append(asyncio.create_task(listener))
                    await asyncio.wait_for(connected.wait(), 10)
                print(f"{len(sockets)} sockets connected; baseline...", flush=True)
                baseline = await phase(server, http, sockets, users, baseline_rate, 3.0)
                print(f"{rate:g} events/s for {seconds:g} s...", flush=True)
                loaded = await phase(server, http, sockets, users, rate, seconds)
                for socket in sockets:
                    if socket.connection is not None:
                        await socket.connection.close()
                await asyncio.gather(*listeners, return_exceptions=True)
        finally:
            server.stop()

    mix = [{"users": users_in_group, "sockets_each": each} for users_in_group, each in MIX]
    p99 = loaded["latency"]["p99_ms"] if loaded["latency"] else float("inf")
    results = {
        "sockets": len(sockets),
        "users": len(users),
        "mix": mix,
        "cores": os.cpu_count(),
        "uvicorn": f"{uvicorn.__version__}, one worker, uvloop, default websocket settings",
        "baseline": baseline,
        "loaded": loaded,
        "p99_ratio_loaded_to_baseline": round(p99 / baseline["latency"]["p99_ms"], 2),
        "target": "p99 under 50 ms at 1,000 events/s, no event lost",
        "target_met": p99 < 50 and loaded["lost"] == 0 and loaded["duplicates"] == 0,
        "client_pings_answered": sum(socket.pings for socket in sockets),
    }
    path = write_results("ws_fanout", results, markdown(results))
    print(markdown(results))
    print(f"results written to {path}")


COLUMNS = [
    "phase",
    "events/s",
    "events",
    "expected deliveries",
    "received",
    "lost",
    "duplicates",
    "p50 ms",
    "p99 ms",
    "max ms",
    "server / clients / machine CPU busy (cores)",
]


def markdown(results: dict[str, Any]) -> str:
    rows = []
    for name, run in (("baseline", results["baseline"]), ("measured", results["loaded"])):
        latency = run["latency"] or {"p50_ms": "-", "p99_ms": "-"}
        rows.append(
            f"| {name} | {run['rate_per_s']:g} | {run['published']} | {run['expected_deliveries']} "
            f"| {run['received']} | {run['lost']} | {run['duplicates']} | {latency['p50_ms']} "
            f"| {latency['p99_ms']} | {run['max_ms']} | {run['server_cpu_busy']} / "
            f"{run['client_cpu_busy']} / {run['machine_cpu_busy']} |"
        )
    mix = ", ".join(
        f"{group['users']} with {group['sockets_each']} socket{'s' * (group['sockets_each'] > 1)}"
        for group in results["mix"]
    )
    loaded = results["loaded"]
    return f"""
# Websocket fan-out

{results["sockets"]} websockets for {results["users"]} users ({mix}), connected to one
server process ({results["uvicorn"]}); the clients run in another process on the
same {results["cores"]} cores. A publisher inside the server's event loop calls
`EventHub.publish` for users in turn; each event reaches every socket of its user.
Latency is from the publish call to the client's `recv` (wall clock, one machine).

{table(COLUMNS, rows)}

At the measured rate the p99 is {results["p99_ratio_loaded_to_baseline"]}x the baseline's.
Publisher at most {loaded["publisher_max_events_behind"]} events behind schedule;
{loaded["clients_dropped_by_server"]} sockets dropped by the server as too slow,
{loaded["connections_at_end"]} still connected at the end.

Target: {results["target"]} — {"met" if results["target_met"] else "NOT met"}.
"""


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="events published per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--baseline-rate", type=float, default=50.0)
    parser.add_argument("--serve", choices=["fanout"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        serve(arguments.port, arguments.data_dir)
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main(arguments.rate, arguments.seconds, arguments.baseline_rate))
