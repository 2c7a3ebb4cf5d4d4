"""What the team that runs the API sees of it: request ids, request metrics, JSON log lines, and the
metrics of several server processes added up."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from common.rooms.codes import generate_room_code
from tests.support.faultproxy import FaultProxy, Mode, postgres_url_via
from tests.support.metrics import metric_value
from tests.support.processes import ROOMSERVICE, environment, free_port, wait_until_ready

GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")
# A code no test has made: the suite's Redis may be one it was given, with rooms of earlier runs in it.
UNKNOWN = generate_room_code()
ROOM_ROUTE = "/rooms/{room_id}"


async def test_every_answer_carries_a_request_id(client, host) -> None:
    answers = [
        await client.get("/health/live"),  # 200
        await client.get("/nope"),  # 404, no route at all
        await client.delete("/health/live"),  # 405
        await client.get("/rooms/not-a-code"),  # 400
        await client.post("/rooms"),  # 401, no X-User-Id
        await client.get(f"/rooms/{UNKNOWN}", headers=host),  # 404 from the service
    ]
    assert [a.status_code for a in answers] == [200, 404, 405, 400, 401, 404]
    ids = [a.headers["x-request-id"] for a in answers]
    assert all(GENERATED_ID.match(i) for i in ids), ids
    assert len(set(ids)) == len(ids)


@pytest.mark.one_topology
@pytest.mark.parametrize("given", ["gw-7f3a:req/42", "x" * 128, "~!#$%&'*+-.^_`|"])
async def test_a_callers_request_id_is_kept(client, host, given) -> None:
    # An unknown code, asked as a user of its own: anonymous misses of the whole suite share one allowance.
    response = await client.get(f"/rooms/{UNKNOWN}", headers={"X-Request-Id": given, **host})
    assert response.headers["x-request-id"] == given


@pytest.mark.one_topology
@pytest.mark.parametrize("given", ["x" * 129, "has space", "tab\there", ""])
async def test_an_unacceptable_request_id_is_replaced(client, given) -> None:
    response = await client.get("/health/live", headers={"X-Request-Id": given})
    assert response.status_code == 200
    assert GENERATED_ID.match(response.headers["x-request-id"])


async def test_requests_are_counted_by_route_template_and_status(client, host) -> None:
    created = await client.post("/rooms", headers=host)
    code = created.json()["roomId"]
    for _ in range(3):
        assert (await client.get(f"/rooms/{code}")).status_code == 200
    assert (await client.get(f"/rooms/{UNKNOWN}", headers=host)).status_code == 404
    assert (await client.get("/no/such/path")).status_code == 404
    text = (await client.get("/metrics")).text

    requests = "roomservice_http_requests_total"
    assert metric_value(text, requests, method="POST", route="/rooms", status="201") == 1
    assert metric_value(text, requests, method="GET", route=ROOM_ROUTE, status="200") == 3
    assert metric_value(text, requests, method="GET", route=ROOM_ROUTE, status="404") == 1
    assert metric_value(text, requests, method="GET", route="unmatched", status="404") == 1
    latency = "roomservice_http_request_duration_seconds"
    assert metric_value(text, f"{latency}_count", method="GET", route=ROOM_ROUTE) == 4
    assert 0 < (metric_value(text, f"{latency}_sum", method="GET", route=ROOM_ROUTE) or 0) < 4 * 1.5
    assert metric_value(text, f"{latency}_bucket", method="GET", route=ROOM_ROUTE, le="+Inf") == 4
    # Never the raw code: a series per room would grow without end.
    assert code not in text
    assert UNKNOWN not in text
    assert metric_value(text, "roomservice_process_resident_memory_bytes") is not None


@pytest.mark.one_topology
async def test_made_up_methods_share_one_label(client) -> None:
    for method in ("XYZ1", "XYZ2", "BREW"):
        assert (await client.request(method, f"/rooms/{UNKNOWN}")).status_code in (400, 405)
    text = (await client.get("/metrics")).text
    assert metric_value(text, "roomservice_http_requests_total", method="other") == 3
    assert "XYZ1" not in text


@pytest.mark.one_topology
async def test_request_metrics_can_be_switched_off(settings_with, host) -> None:
    async with AsyncTestClient(app=create_app(settings_with(http_metrics=False))) as client:
        await client.post("/rooms", headers=host)
        response = await client.get("/metrics")
    assert metric_value(response.text, "roomservice_http_requests_total") is None
    assert metric_value(response.text, "roomservice_rooms_created_total") == 1  # the service's own counters stay
    assert GENERATED_ID.match(response.headers["x-request-id"])  # and every answer its id


# -- real server processes ----------------------------------------------------------------------


class Served:
    """`roomservice serve` as an operator runs it, its stderr kept in a file."""

    def __init__(self, log: Path, more_env: dict[str, str] | None = None, **settings: str) -> None:
        self.port = free_port()
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [*ROOMSERVICE, "serve"],
                env={**environment(port=str(self.port), **settings), **(more_env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)
        try:
            wait_until_ready(self.port, self.process)
        except BaseException:
            self.stop()  # a server that never became ready is not left running
            raise

    def lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]

    def stop(self) -> None:
        self.http.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.mark.one_topology
def test_log_lines_are_json_and_carry_the_request_id(tmp_path, database_url, redis_url, postgres_proxy: FaultProxy):
    served = Served(
        tmp_path / "serve.log",
        database_url=postgres_url_via(database_url, postgres_proxy),
        redis_url=redis_url,
        access_log="all",
    )
    try:
        assert served.http.get("/health/live", headers={"X-Request-Id": "probe-1"}).status_code == 200
        postgres_proxy.set_mode(Mode.REFUSE)  # the next lookup that misses Redis answers 503, and says why
        answer = served.http.get("/rooms/qqq-wwww-eee", headers={"X-Request-Id": "lost-room-7"})
        assert answer.status_code == 503
        assert answer.headers["x-request-id"] == "lost-room-7"
    finally:
        postgres_proxy.set_mode(Mode.PASS)
        served.stop()

    lines = served.lines()
    assert lines, "no JSON log line at all"
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line), line
    probe = [line for line in lines if line.get("request_id") == "probe-1"]
    assert probe == [probe[0]]
    assert probe[0]["status"] == 200
    assert probe[0]["method"] == "GET"
    assert probe[0]["route"] == "/health/live"
    assert isinstance(probe[0]["duration_ms"], float)
    of_the_503 = [line for line in lines if line.get("request_id") == "lost-room-7"]
    # The service's own warning and the request's line, both with the id, the method and the route.
    assert len(of_the_503) >= 2, of_the_503
    assert any("503" in str(line["message"]) and line["logger"] != "roomservice.access" for line in of_the_503)
    assert all(line["route"] == ROOM_ROUTE and line["method"] == "GET" for line in of_the_503)
    assert [line["status"] for line in of_the_503 if line["logger"] == "roomservice.access"] == [503]


@pytest.mark.one_topology
def test_several_processes_report_their_requests_together(tmp_path, database_url, redis_url) -> None:
    served = Served(
        tmp_path / "serve.log", database_url=database_url, redis_url=redis_url, workers="2", create_limit_per_minute="0"
    )
    host = {"X-User-Id": "6f1c1a3e-9a53-4c1e-8a53-1b2c3d4e5f60"}
    url = f"http://127.0.0.1:{served.port}"
    try:
        for _ in range(40):  # a new connection each time, so that both processes answer some
            assert httpx.post(f"{url}/rooms", headers=host, timeout=10).status_code == 201
        [said] = [line for line in served.lines() if "metrics of the 2 API processes" in str(line["message"])]
        directory = Path(str(said["message"]).rsplit(" ", 1)[-1])
        # Each process keeps its values in files of its own pid: both took requests.
        assert len({path.stem.rsplit("_", 1)[-1] for path in directory.glob("counter_*.db")}) == 2
        deadline = time.monotonic() + 10  # each process writes its request figures down every second
        while time.monotonic() < deadline:
            scraped = httpx.get(f"{url}/metrics", timeout=10).text
            if metric_value(scraped, "roomservice_http_requests_total", route="/rooms", status="201") == 40:
                break
            time.sleep(0.2)
        scrapes = [httpx.get(f"{url}/metrics", timeout=10).text for _ in range(6)]
    finally:
        served.stop()
    for text in scrapes:  # whichever process answered, it counts both
        assert metric_value(text, "roomservice_rooms_created_total") == 40
        assert metric_value(text, "roomservice_http_requests_total", route="/rooms", status="201") == 40
        assert metric_value(text, "roomservice_http_request_duration_seconds_count", route="/rooms") == 40
    assert not directory.exists()  # the directory the service made for itself goes with it


@pytest.mark.one_topology
def test_the_operators_metrics_directory_is_emptied_at_start(tmp_path, database_url, redis_url) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    stale = metrics_dir / "counter_999999.db"
    stale.write_bytes(b"left by an earlier run")
    served = Served(
        tmp_path / "serve.log",
        more_env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
        database_url=database_url,
        redis_url=redis_url,
        workers="2",
    )
    try:
        text = served.http.get("/metrics").text
        assert metric_value(text, "roomservice_rooms_created_total") == 0
        assert not stale.exists()
        assert any(metrics_dir.glob("*.db"))  # the processes keep their values there
    finally:
        served.stop()
    assert metrics_dir.exists()  # the operator's directory stays


@pytest.mark.one_topology
def test_a_metrics_port_of_its_own_serves_every_process_and_the_public_port_none(
    tmp_path, database_url, redis_url
) -> None:
    metrics_port = free_port()
    served = Served(
        tmp_path / "serve.log",
        database_url=database_url,
        redis_url=redis_url,
        workers="2",
        metrics_port=str(metrics_port),
        create_limit_per_minute="0",
    )
    host = {"X-User-Id": "6f1c1a3e-9a53-4c1e-8a53-1b2c3d4e5f60"}
    url = f"http://127.0.0.1:{served.port}"
    try:
        for _ in range(20):  # a new connection each time, so that both processes answer some
            assert httpx.post(f"{url}/rooms", headers=host, timeout=10).status_code == 201
        assert served.http.get("/metrics").status_code == 404
        assert "/metrics" not in served.http.get("/schema/openapi.json").json()["paths"]
        deadline = time.monotonic() + 10  # each process writes its request figures down every second
        while time.monotonic() < deadline:
            scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
            if metric_value(scraped.text, "roomservice_http_requests_total", route="/rooms", status="201") == 20:
                break
            time.sleep(0.2)
        scrapes = [httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) for _ in range(6)]
    finally:
        served.stop()
    for scrape in scrapes:  # whichever process answered, it counts both
        assert scrape.status_code == 200
        assert metric_value(scrape.text, "roomservice_rooms_created_total") == 20
        assert metric_value(scrape.text, "roomservice_http_requests_total", route="/rooms", status="201") == 20
    # Both processes bound the port: each says so in its log.
    assert len([line for line in served.lines() if f":{metrics_port}" in str(line["message"])]) == 2


async def test_without_a_metrics_port_the_public_port_serves_metrics(client, host) -> None:
    await client.post("/rooms", headers=host)
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert metric_value(response.text, "roomservice_rooms_created_total") == 1
    assert "/metrics" in (await client.get("/schema/openapi.json")).json()["paths"]
