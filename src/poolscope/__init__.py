"""poolscope: see the connection pools inside requests and urllib3.

import requests, poolscope
session = poolscope.instrument_session(requests.Session())
"""

from __future__ import annotations

import logging

from ._connections import InstrumentedHTTPConnection, InstrumentedHTTPSConnection
from ._events import CloseReason, EventKind, PoolEvent, PoolKey
from ._global import instrument, uninstrument
from ._poolmanager import (
    InstrumentedPoolManager,
    instrument_pool_manager,
    uninstrument_pool_manager,
)
from ._pools import InstrumentedHTTPConnectionPool, InstrumentedHTTPSConnectionPool
from ._report import Advice, Connection, ManagerSummary, PoolSummary, Report, report
from ._session import InstrumentedHTTPAdapter, instrument_session, uninstrument_session
from ._version import __version__

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
    "instrument_pool_manager",
    "instrument_session",
    "report",
    "uninstrument",
    "uninstrument_pool_manager",
    "uninstrument_session",
]
