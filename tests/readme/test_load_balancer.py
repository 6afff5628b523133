"""The README's load-balancer recipe with Debian's nginx and two local "hosts" on PostgreSQL.

The backends run the README's commands as written, on 127.0.0.1 and ports the
OS picked instead of 10.0.0.x:8080/8081; nginx runs the README's config with
those addresses, this test's certificate, and a port of its own.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import ADMIN_TOKEN
from tests.readme.nginx import NGINX, Nginx, Stream, buf_curl
from tests.readme.readme import Block, Foreground, assert_shows, free_port, localize, run
from tests.support.data import isbn13
from tests.support.postgres import PostgresCluster
from tests.support.server import wait_until

pytestmark = pytest.mark.postgres
LIBRARY = "/library.v1.LibraryService/"
LIBRARIAN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
EVENT_TIMEOUT = 10.0


@dataclass
class Host:
    """One "host": the README's two server commands, on ports of its own."""

    http1: Foreground
    http2: Foreground
    http1_command: str
    http1_port: int
    env: dict[str, str]
    top: Path

    def restart_http1(self) -> None:
        """Start the HTTP/1.1 server again, as it was, after a stop."""
        self.http1 = Foreground(
            self.http1_command, self.top, self.env, self.top / f"http1-{self.http1_port}.log"
        )
        self.http1.wait_serving(f"http://127.0.0.1:{self.http1_port}")


@dataclass
class Balanced:
    """Two hosts behind nginx, and how to reach nginx."""

    hosts: tuple[Host, Host]
    url: str
    cacert: Path
    site: str
    nginx: Nginx


def _start_host(
    readme: dict[str, Block], top: Path, env: dict[str, str], name: str
) -> tuple[Host, int, int]:
    http1_line, http2_line = readme["lb-backends"].text.splitlines()
    http1_port, http2_port = free_port(), free_port()
    local = {"--host 0.0.0.0": "--host 127.0.0.1"}
    http1_command = localize(http1_line, {**local, "--port 8080": f"--port {http1_port}"})
    http2_command = localize(http2_line, {**local, "--port 8081": f"--port {http2_port}"})
    http1 = Foreground(http1_command, top, env, top / f"{name}-http1.log")
    http2 = Foreground(http2_command, top, env, top / f"{name}-http2.log")
    host = Host(http1, http2, http1_command, http1_port, env, top)
    return host, http1_port, http2_port


@pytest.fixture(scope="module")
def balanced(
    readme: dict[str, Block],
    postgres_cluster: PostgresCluster,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Balanced]:
    """Hosts A and B on one PostgreSQL database, and nginx in front with the README's config."""
    if not NGINX.exists():
        pytest.skip(f"{NGINX} is missing: apt-get install -y nginx")
    top = tmp_path_factory.mktemp("balanced")
    (top / "proto").symlink_to(Path(__file__).resolve().parents[2] / "proto")
    run(readme["tls-cert"].text, top, {})
    env = {"LIBRARY_DATABASE_URL": postgres_cluster.create_database()}
    env["LIBRARY_ADMIN_TOKEN"] = ADMIN_TOKEN
    (top / ".venv").symlink_to(Path(__file__).resolve().parents[2] / ".venv")
    a, a1, a2 = _start_host(readme, top, env, "a")
    b, b1, b2 = _start_host(readme, top, env, "b")
    port = free_port()
    site = localize(
        readme["nginx-conf"].text,
        {
            "10.0.0.11:8080": f"127.0.0.1:{a1}",
            "10.0.0.12:8080": f"127.0.0.1:{b1}",
            "10.0.0.11:8081": f"127.0.0.1:{a2}",
            "10.0.0.12:8081": f"127.0.0.1:{b2}",
            "listen 443 ": f"listen 127.0.0.1:{port} ",
            "/etc/ssl/library.pem": str(top / "cert.pem"),
            "/etc/ssl/library.key": str(top / "key.pem"),
        },
    )
    nginx = Nginx(site)
    try:
        for host, ports in ((a, (a1, a2)), (b, (b1, b2))):
            host.http1.wait_serving(f"http://127.0.0.1:{ports[0]}")
            host.http2.wait_serving(f"http://127.0.0.1:{ports[1]}")
            # What the README says each command prints, on the README's address.
            http1_says = host.http1.output().replace(f"127.0.0.1:{ports[0]}", "0.0.0.0:8080")
            assert "Uvicorn running on http://0.0.0.0:8080 (Press CTRL+C to quit)" in http1_says
            http2_says = host.http2.output().replace(f"127.0.0.1:{ports[1]}", "0.0.0.0:8081")
            assert "library serving HTTP/2 on http://0.0.0.0:8081" in http2_says
        checked = nginx.check()
        assert "syntax is ok" in checked
        assert "test is successful" in checked
        nginx.start(port)
        yield Balanced((a, b), f"https://localhost:{port}", top / "cert.pem", site, nginx)
    finally:
        nginx.stop()
        for host in (a, b):
            host.http1.stop()
            host.http2.stop()


def call(balanced: Balanced, method: str, message: object, *args: str) -> dict[str, object]:
    """One call through nginx with ``buf curl`` as the librarian; the answer as JSON."""
    output = buf_curl(
        balanced.url + LIBRARY + method,
        "-d",
        json.dumps(message),
        *args,
        cacert=balanced.cacert,
        headers=LIBRARIAN,
    )
    answer = json.loads(output)
    assert isinstance(answer, dict)
    return answer


def add_book(balanced: Balanced, title: str, *args: str) -> dict[str, object]:
    """CreateBook through nginx; the new book."""
    message = {"title": title, "author": "Nginx", "isbn": isbn13(), "publishedYear": 2001}
    book = call(balanced, "CreateBook", message, *args)["book"]
    assert isinstance(book, dict)
    return book


def add_book_directly(host: Host, title: str) -> None:
    """CreateBook on a host's HTTP/1.1 server itself, quickly: to time the event alone."""
    message = {"title": title, "author": "Timer", "isbn": isbn13(), "publishedYear": 2001}
    request = urllib.request.Request(
        f"http://127.0.0.1:{host.http1_port}{LIBRARY}CreateBook",
        json.dumps(message).encode(),
        {"content-type": "application/json", **LIBRARIAN},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_readme_calls_through_nginx(balanced: Balanced, readme: dict[str, Block]) -> None:
    block = readme["lb-calls"]
    text = localize(
        block.text,
        {"https://library.example": balanced.url, "/etc/ssl/library.pem": str(balanced.cacert)},
    )
    assert_shows(block, run(text, balanced.cacert.parent, {}))


def test_connect_and_grpc_through_nginx(balanced: Balanced) -> None:
    book = add_book(balanced, "Through nginx over Connect")
    over_grpc = call(balanced, "GetBook", {"id": book["id"]}, "--protocol", "grpc")
    assert over_grpc["book"] == book
    over_grpc_web = call(balanced, "GetBook", {"id": book["id"]}, "--protocol", "grpcweb")
    assert over_grpc_web["book"] == book


def test_import_books_streams_through_nginx(balanced: Balanced) -> None:
    for protocol in ("connect", "grpc"):
        items = "".join(
            json.dumps({"title": f"Imported over {protocol}", "author": "Bulk", "isbn": isbn13()})
            for _ in range(50)
        )
        result = buf_curl(
            balanced.url + LIBRARY + "ImportBooks",
            "--protocol",
            protocol,
            "-d",
            "@-",
            cacert=balanced.cacert,
            stdin=items,
            headers=LIBRARIAN,
        )
        assert json.loads(result) == {"createdCount": 50}


def test_watch_books_event_through_nginx(balanced: Balanced) -> None:
    for protocol in ("connect", "grpc"):
        watch = Stream(
            balanced.url + LIBRARY + "WatchBooks",
            '{"sinceRevision": "0"}',
            cacert=balanced.cacert,
            extra=("--protocol", protocol),
        )
        try:
            title = f"Watched over {protocol} {uuid.uuid4().hex[:8]}"
            add_book(balanced, title)
            wait_until(lambda: title in watch.text, EVENT_TIMEOUT, f"the event for {title}")  # noqa: B023
        finally:
            watch.close()


def test_page_stays_live_while_each_backend_stops(balanced: Balanced) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_context(ignore_https_errors=True).new_page()
            page.goto(balanced.url)
            live = page.locator("#live")
            expect(live).to_have_attribute("data-state", "live", timeout=10_000)
            # A search on a fresh word: new books land on the page's only page.
            tag = f"failover{uuid.uuid4().hex[:8]}"
            page.get_by_label("Search by title, author or ISBN").fill(tag)
            page.keyboard.press("Enter")
            expect(page.locator("#summary")).to_have_text(f"No books matching “{tag}”.")
            # Whichever host the page's stream is on, one of these stops ends it.
            for index, host in enumerate(balanced.hosts):
                assert host.http1.stop() == 0
                title = f"{tag} added while host {'AB'[index]} is down"
                add_book(balanced, title)
                row = page.locator("li.book", has_text=title)
                expect(row).to_be_visible(timeout=10_000)
                expect(live).to_have_attribute("data-state", "live")
                host.restart_http1()
        finally:
            browser.close()


def test_watch_latency_with_and_without_proxy_buffering(
    balanced: Balanced, artifacts_dir: Path
) -> None:
    """Measures (does not judge) how long an event takes through nginx, buffering on and off."""
    port = free_port()
    listen = balanced.url.rsplit(":", 1)[1]
    buffered = Nginx(
        balanced.site.replace("proxy_buffering off;", "proxy_buffering on;").replace(
            f"127.0.0.1:{listen} ", f"127.0.0.1:{port} "
        )
    )
    report = []
    try:
        buffered.start(port)
        for name, url in (
            ("proxy_buffering off", balanced.url),
            ("proxy_buffering on", f"https://localhost:{port}"),
        ):
            watch = Stream(
                url + LIBRARY + "WatchBooks", '{"sinceRevision": "0"}', cacert=balanced.cacert
            )
            try:
                times = []
                for _ in range(11):
                    title = f"Timed {uuid.uuid4().hex[:8]}"
                    started = time.monotonic()
                    add_book_directly(balanced.hosts[0], title)
                    wait_until(lambda: title in watch.text, EVENT_TIMEOUT, title, interval=0.001)  # noqa: B023
                    times.append(time.monotonic() - started)
            finally:
                watch.close()
            report.append(f"{name}: " + ", ".join(f"{t * 1000:.0f} ms" for t in times[1:]))
    finally:
        buffered.stop()
    version = subprocess.run(
        [str(NGINX), "-v"], capture_output=True, text=True, check=True
    ).stderr.strip()
    text = (
        f"From CreateBook sent (to a backend) to its WatchBooks event printed by buf curl"
        f" (HTTP/2, through {version}); the first event of each stream is left out:\n"
        + "\n".join(report)
    )
    (artifacts_dir / "nginx-buffering.txt").write_text(text + "\n")
    print(text)
