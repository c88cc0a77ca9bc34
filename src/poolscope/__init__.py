"""poolscope: see the connection pools inside requests and urllib3.

    import requests, poolscope
    session = poolscope.instrument_session(requests.Session())

The names below (``__all__``) are the public API, with :mod:`poolscope.loopback`'s
LoopbackServer; the subpackages (core, instrumentation, sinks, reporting, cli) are internal.
"""

from __future__ import annotations

import logging

from ._version import __version__
from .core.events import CloseReason, EventKind, PoolEvent, PoolKey
from .httpx_client import instrument_httpx_client, uninstrument_httpx_client
from .instrumentation.connections import InstrumentedHTTPConnection, InstrumentedHTTPSConnection
from .instrumentation.pools import InstrumentedHTTPConnectionPool, InstrumentedHTTPSConnectionPool
from .poolmanager import InstrumentedPoolManager, instrument_pool_manager, uninstrument_pool_manager
from .process import instrument, uninstrument
from .reporting.report import Report, report
from .reporting.summaries import Advice, Connection, ManagerSummary, PoolSummary
from .session import InstrumentedHTTPAdapter, instrument_session, uninstrument_session

logging.getLogger("poolscope").addHandler(logging.NullHandler())

__all__ = [
    "Advice",
    "CloseReason",
    "Connection",
    "EventKind",
    "InstrumentedHTTPAdapter",
    "InstrumentedHTTPConnection",
    "InstrumentedHTTPConnectionPool",
    "InstrumentedHTTPSConnection",
    "InstrumentedHTTPSConnectionPool",
    "InstrumentedPoolManager",
    "ManagerSummary",
    "PoolEvent",
    "PoolKey",
    "PoolSummary",
    "Report",
    "__version__",
    "instrument",
    "instrument_httpx_client",
    "instrument_pool_manager",
    "instrument_session",
    "report",
    "uninstrument",
    "uninstrument_httpx_client",
    "uninstrument_pool_manager",
    "uninstrument_session",
]
