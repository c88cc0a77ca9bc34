"""What the benchmarks share; run.py, bytecodes.py and instructions.py import this, not each other.

It owns:

- the server: Debian's nginx on loopback with a config written here (keep-alive on, one
  worker), started and stopped by ``nginx()``;
- the configurations: ``CONFIGURATIONS`` names each client's, ``make_requests``,
  ``make_urllib3``, ``make_httpx`` and ``make_httpx_async`` (``make(client, ...)`` picks one)
  build a callable doing one request of a configuration (``AsyncRequest`` for an
  ``httpx.AsyncClient``'s, on one event loop), and ``make_checkout`` one checkout and return in
  a pool (no I/O);
  ``is_contrib`` says which configurations switch a contrib instrumentation on (process-wide:
  their ``ContribRequest`` switches it off and on again; ``uninstrument_contrib`` switches off
  any), ``ON_TOP_OF_CONTRIB`` pairs each "contrib + poolscope" configuration with its contrib
  one, ``SDK_CONTROL`` the SDK row with the bare client beside an unused SDK, and
  ``sdk_providers`` gives an OpenTelemetry SDK with in-memory exporters;
- what a configuration's requests run inside: ``surroundings(kind)`` (an INFO handler for
  logging mode) and ``repeat(call, n)``, the plain per-request loop (for an ``AsyncRequest``,
  the same loop in one coroutine on its event loop);
- the command line: ``parser(doc)`` and the ``--client`` option, ``exit_on_sigterm()`` so a
  killed run still stops its nginx, and ``describe_machine()``, the versions line every run
  prints first, with ``describe_source()``, the commit (and state) of the poolscope it measures.

A benchmark's own measurements, and the child processes it starts, stay in its own file.
Children import this module by path: each script puts its own directory on ``sys.path``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import requests
import urllib3

import poolscope

NGINX_CONF = """
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir};
    proxy_temp_path {dir};
    fastcgi_temp_path {dir};
    uwsgi_temp_path {dir};
    scgi_temp_path {dir};
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    server {{
        listen 127.0.0.1:{port};
        location / {{ default_type text/plain; return 200 "ok"; }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def nginx() -> Iterator[str]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(binary):
        sys.exit("benchmarks need Debian's nginx: apt-get install nginx")
    with tempfile.TemporaryDirectory(prefix="poolscope-bench-") as tmp:
        port = free_port()
        conf = os.path.join(tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(dir=tmp, port=port))
        proc = subprocess.Popen([binary, "-c", conf, "-p", tmp], stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}/"
        try:
            for _ in range(200):
                try:
                    requests.get(url, timeout=1)
                    break
                except requests.ConnectionError:
                    time.sleep(0.02)
            yield url
        finally:
            proc.terminate()
            proc.wait(10)


# -- configurations: each returns a callable doing one request --------------------------------

CONFIGURATIONS = {
    "requests": [
        "bare",
        "bare, SDK set up",
        "poolscope, no SDK",
        "poolscope, SDK",
        "poolscope, logging",
        "otel-requests",
        "otel-requests + poolscope",
    ],
    "urllib3": [
        "bare",
        "bare, SDK set up",
        "poolscope, no SDK",
        "poolscope, SDK",
        "poolscope, logging",
        "otel-urllib3",
        "otel-urllib3 + poolscope",
    ],
    # httpx (#30): the same rows but the contrib ones, which are for the next step.
    "httpx": [
        "bare",
        "bare, SDK set up",
        "poolscope, no SDK",
        "poolscope, SDK",
        "poolscope, logging",
    ],
    # The same rows on an httpx.AsyncClient, its requests awaited on one event loop.
    "httpx-async": [
        "bare",
        "bare, SDK set up",
        "poolscope, no SDK",
        "poolscope, SDK",
        "poolscope, logging",
    ],
}

# The traced request path: the contrib instrumentation makes a request span current for each
# request, and poolscope, on the same session or PoolManager with the same SDK providers, adds
# its link and span event to that span. Each such configuration -> the contrib one it adds to.
ON_TOP_OF_CONTRIB = {
    "otel-requests + poolscope": "otel-requests",
    "otel-urllib3 + poolscope": "otel-urllib3",
}


# The SDK row against a control: the bare client in a process where the same SDK providers are
# set up and never used. Setting the SDK up changes what CPython makes of the bare client's own
# path, in either direction: its resource detection runs a thread pool, whose Future makes a
# threading.Condition on an RLock, after which (3.11) no Condition.notify() in the process
# specializes its self._is_owned() lookup, two of which every urllib3 request makes; and the
# objects it creates move the method cache's collisions. Neither is poolscope's cost; the
# control row shows how far they move bare.
SDK_CONTROL = {"poolscope, SDK": "bare, SDK set up"}
_unused: list[Any] = []  # the control's SDK providers


def is_contrib(kind: str) -> bool:
    """Whether configuration ``kind`` switches a contrib instrumentation on. That is
    process-wide (it patches requests or urllib3 themselves): a run that measures other
    configurations in the same process switches it on only around its turn."""
    return kind.startswith("otel-")


def sdk_providers() -> tuple[Any, Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    tracer_provider = TracerProvider()
    exporter = InMemorySpanExporter()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return meter_provider, (tracer_provider, exporter)


def make_requests(kind: str, url: str) -> Callable[[], Any]:
    s = requests.Session()
    if kind == "bare, SDK set up":
        _unused.append(sdk_providers())  # kept alive, never used; the request is bare's
    if kind == "poolscope, no SDK":
        poolscope.instrument_session(s)
    elif kind == "poolscope, SDK":
        mp, (tp, exporter) = sdk_providers()
        poolscope.instrument_session(s, meter_provider=mp, tracer_provider=tp)
        # No span is current, so nothing is exported per request: no clearing wrapper (it is
        # a Python call per request that the bare client would not run).
        return lambda: s.get(url)
    elif kind == "poolscope, logging":
        poolscope.instrument_session(s, mode="logging")
    elif is_contrib(kind):
        mp, (tp, exporter) = sdk_providers()
        if kind in ON_TOP_OF_CONTRIB:
            poolscope.instrument_session(s, meter_provider=mp, tracer_provider=tp)
        return ContribRequest(kind, lambda: s.get(url), tp, mp, exporter)
    return lambda: s.get(url)


def make_urllib3(kind: str, url: str) -> Callable[[], Any]:
    pm = urllib3.PoolManager()
    if kind == "bare, SDK set up":
        _unused.append(sdk_providers())  # kept alive, never used; the request is bare's
    if kind == "poolscope, no SDK":
        poolscope.instrument_pool_manager(pm)
    elif kind == "poolscope, SDK":
        mp, (tp, exporter) = sdk_providers()
        poolscope.instrument_pool_manager(pm, meter_provider=mp, tracer_provider=tp)
        return lambda: pm.request("GET", url)  # no span is current: nothing to clear
    elif kind == "poolscope, logging":
        poolscope.instrument_pool_manager(pm, mode="logging")
    elif is_contrib(kind):
        mp, (tp, exporter) = sdk_providers()
        if kind in ON_TOP_OF_CONTRIB:
            poolscope.instrument_pool_manager(pm, meter_provider=mp, tracer_provider=tp)
        return ContribRequest(kind, lambda: pm.request("GET", url), tp, mp, exporter)
    return lambda: pm.request("GET", url)


# The reused-connection path without the network: one checkout and return of an open pooled
# connection, what every reused request does in the pool (make_checkout).
CHECKOUT_CONFIGURATIONS = ["bare", "poolscope, no SDK", "poolscope, SDK"]


def make_checkout(kind: str, url: str) -> Callable[[], Any]:
    """One checkout and return of an open connection of a pool of configuration ``kind``
    (one of CHECKOUT_CONFIGURATIONS), connected once first."""
    port = int(url.rsplit(":", 1)[1].strip("/"))
    if kind == "bare":
        pool = urllib3.HTTPConnectionPool("127.0.0.1", port)
    elif kind == "poolscope, no SDK":
        pool = poolscope.InstrumentedHTTPConnectionPool("127.0.0.1", port)
    else:
        mp, (tp, _) = sdk_providers()
        pool = poolscope.InstrumentedHTTPConnectionPool(
            "127.0.0.1", port, meter_provider=mp, tracer_provider=tp
        )
    pool.request("GET", "/")

    def cycle() -> None:
        pool._put_conn(pool._get_conn())

    return cycle


def _configured_httpx(client: Any, kind: str) -> Any:
    """An httpx client (sync or async) as configuration ``kind`` has it."""
    if kind == "bare, SDK set up":
        _unused.append(sdk_providers())  # kept alive, never used; the request is bare's
    if kind == "poolscope, no SDK":
        poolscope.instrument_httpx_client(client)
    elif kind == "poolscope, SDK":
        mp, (tp, _exporter) = sdk_providers()
        poolscope.instrument_httpx_client(client, meter_provider=mp, tracer_provider=tp)
    elif kind == "poolscope, logging":
        poolscope.instrument_httpx_client(client, mode="logging")
    return client


def make_httpx(kind: str, url: str) -> Callable[[], Any]:
    import httpx  # poolscope's optional extra: only this client needs it

    client = _configured_httpx(httpx.Client(), kind)
    return lambda: client.get(url)


class AsyncRequest:
    """One request of an ``httpx.AsyncClient`` configuration, on one event loop kept for the
    whole run (the client's connections belong to it).

    Called, it runs one request to completion on that loop (``run_until_complete``): for the
    first request, which connects, and for callers that time one request at a time.
    ``harness.repeat(call, n)`` runs ``call.repeat(n)`` instead: the n requests awaited one
    after the other in one coroutine, in one ``run_until_complete``. The per-request
    measurements use that (they take the difference of two series, so the one
    ``run_until_complete`` drops out) because it is what an async application does: its
    requests run inside a loop that is already running. A ``run_until_complete`` per request
    would add to every request of every row the loop's start and stop and a Task wrapping the
    coroutine, thousands of instructions the sync client has no counterpart for, and so dilute
    each ratio to bare. Each awaited request still suspends on its socket reads and is resumed
    by the loop's selector, as in an application: that share of the loop is part of an async
    request's cost, the same in every row."""

    def __init__(self, client: Any, url: str) -> None:
        import asyncio

        self._client = client
        self._url = url
        self._loop = asyncio.new_event_loop()

    def __call__(self) -> Any:
        return self._loop.run_until_complete(self._client.get(self._url))

    def repeat(self, count: int) -> None:
        """``count`` requests, awaited one after the other, nothing else."""
        self._loop.run_until_complete(self._many(count))

    async def _many(self, count: int) -> None:
        get, url = self._client.get, self._url
        for _ in range(count):
            await get(url)


def make_httpx_async(kind: str, url: str) -> AsyncRequest:
    """As ``make_httpx``, on an ``httpx.AsyncClient`` (see ``AsyncRequest``)."""
    import httpx

    client = _configured_httpx(httpx.AsyncClient(), kind)
    return AsyncRequest(client, url)


_MAKERS: dict[str, Callable[[str, str], Callable[[], Any]]] = {
    "requests": make_requests,
    "urllib3": make_urllib3,
    "httpx": make_httpx,
    "httpx-async": make_httpx_async,
}


def make(client: str, kind: str, url: str) -> Callable[[], Any]:
    """One request of configuration ``kind`` on ``client`` (a key of ``CONFIGURATIONS``:
    "requests", "urllib3", "httpx", "httpx-async")."""
    return _MAKERS[client](kind, url)


def clearing(call: Callable[[], Any], exporter: Any) -> Callable[[], Any]:
    # Keep the in-memory exporter from growing without bound during a long run.
    count = 0

    def request() -> Any:
        nonlocal count
        count += 1
        if count % 1000 == 0:
            exporter.clear()
        return call()

    return request


class ContribRequest:
    """One request of a contrib configuration ("otel-requests", "otel-urllib3 + poolscope", ...).

    Built with the contrib instrumentation switched on, with this configuration's providers.
    That instrumentation is process-wide: ``switch_off()`` takes it away (before any other
    configuration runs in the process) and ``switch_on()`` puts it back with the same providers,
    so a run that interleaves configurations keeps one session or PoolManager, one SDK and one
    exporter per configuration for all its rounds rather than building them anew each time."""

    def __init__(
        self,
        kind: str,
        call: Callable[[], Any],
        tracer_provider: Any,
        meter_provider: Any,
        exporter: Any,
    ) -> None:
        self.kind = kind
        self._call = clearing(call, exporter)
        self._providers = (tracer_provider, meter_provider)
        self.switch_on()

    def __call__(self) -> Any:
        return self._call()

    def _instrumentor(self) -> Any:
        if self.kind.startswith("otel-requests"):
            from opentelemetry.instrumentation.requests import RequestsInstrumentor

            return RequestsInstrumentor()
        from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor

        return URLLib3Instrumentor()

    def switch_on(self) -> None:
        tracer_provider, meter_provider = self._providers
        self._instrumentor().instrument(
            tracer_provider=tracer_provider, meter_provider=meter_provider
        )

    def switch_off(self) -> None:
        self._instrumentor().uninstrument()


def uninstrument_contrib(kind: str) -> None:
    """Switch off the contrib instrumentation that configuration ``kind`` switched on."""
    if kind.startswith("otel-requests"):
        from opentelemetry.instrumentation.requests import RequestsInstrumentor

        RequestsInstrumentor().uninstrument()
    else:
        from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor

        URLLib3Instrumentor().uninstrument()


# -- what the requests run inside ---------------------------------------------------------------


@contextlib.contextmanager
def info_logging() -> Iterator[None]:
    # "logging mode with a handler at INFO": a real handler, formatting into a buffer.
    handler = logging.StreamHandler(io.StringIO())
    handler.setLevel(logging.INFO)
    logger = logging.getLogger("poolscope")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


@contextlib.contextmanager
def surroundings(kind: str) -> Iterator[None]:
    """Where configuration ``kind``'s measured requests run: logging mode inside
    ``info_logging()``, every other configuration as it is."""
    if kind == "poolscope, logging":
        with info_logging():
            yield
    else:
        yield


def repeat(call: Callable[[], Any], n: int) -> None:
    """n requests, nothing else: an ``AsyncRequest``'s awaited in one coroutine on its loop."""
    if isinstance(call, AsyncRequest):
        call.repeat(n)
        return
    for _ in range(n):
        call()


# -- the command line -----------------------------------------------------------------------


def parser(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's argument parser, its module docstring (usage lines included) as help."""
    return argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_client_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--client", choices=sorted(CONFIGURATIONS), help="only this client")


def describe_machine() -> str:
    """The versions line every run prints first, and the source line under it."""
    from opentelemetry.sdk.version import __version__ as sdk_version

    return (
        f"poolscope {poolscope.__version__}, urllib3 {urllib3.__version__}, "
        f"requests {requests.__version__}, opentelemetry-sdk {sdk_version}, "
        f"Python {platform.python_version()}, {nginx_version()}, {platform.machine()}, "
        f"{os.cpu_count()} cores{describe_processor()}\n" + describe_source()
    )


def describe_processor() -> str:
    """The processor and the load when the run starts, as ", AMD EPYC at 2596 MHz, 1024 KB
    cache, load 0.39": the same code's wall-clock ratios differ from one run to the next, and
    from one machine to the next (docs/performance.md, "Many hosts"), so a run says what it
    had. Linux's /proc/cpuinfo names the processor (its first core's clock at that instant,
    not its rated speed); elsewhere ``platform.processor()``, when it says anything. The load
    is the one-minute average (in a container, usually the host's)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            first_core = info.read().split("\n\n")[0].splitlines()
        pairs = (line.partition(":") for line in first_core)
        fields = {name.strip(): value.strip() for name, _, value in pairs}
    except OSError:
        pass
    name = fields.get("model name") or platform.processor()
    parts = [name] if name else []
    with contextlib.suppress(ValueError):
        if name and fields.get("cpu MHz"):
            parts[0] += f" at {float(fields['cpu MHz']):.0f} MHz"
    if fields.get("cache size"):
        parts.append(f"{fields['cache size']} cache")
    with contextlib.suppress(OSError, AttributeError):  # no load average on Windows
        parts.append(f"load {os.getloadavg()[0]:.2f}")
    return "".join(f", {part}" for part in parts)


def nginx_version() -> str:
    """The version, as "nginx 1.22.1", from ``nginx -v`` (which writes it to stderr)."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    try:
        out = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False)
    except OSError:
        return "nginx not found"
    return "nginx " + out.stderr.strip().rpartition("/")[2]


def describe_source() -> str:
    """Which poolscope a run measures: the commit, and whether its files differ from it.

    Others may edit the working tree while a long run goes on: ``benchmarks/every_python.sh``
    measures an export of one commit instead (it names the commit in POOLSCOPE_BENCH_COMMIT)."""
    where = os.path.dirname(os.path.abspath(poolscope.__file__))
    exported = os.environ.get("POOLSCOPE_BENCH_COMMIT")
    if exported:
        return f"poolscope at commit {exported} (exported to {where})"

    def git(*args: str) -> str:
        try:
            out = subprocess.run(
                ["git", *args], cwd=where, capture_output=True, text=True, check=False
            )
        except OSError:
            return ""
        return out.stdout.strip() if out.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD")
    if not head:
        return f"poolscope from {where} (not in a git checkout: commit unknown)"
    changed = git("status", "--porcelain", "--", ".")
    state = "with uncommitted changes" if changed else "as committed"
    return f"poolscope at commit {head}, {state} ({where})"


def exit_on_sigterm() -> None:
    """Turn SIGTERM (``kill``, a CI timeout) into SystemExit, so the nginx this run started is
    stopped and its temporary directory removed on the way out."""

    def terminated(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminated)
