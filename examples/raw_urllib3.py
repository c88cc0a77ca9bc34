"""A raw urllib3 user swaps the class and nothing else.

Run: python examples/raw_urllib3.py
"""

from __future__ import annotations

import logging

import poolscope
from poolscope.loopback import LoopbackServer  # the demo's loopback server

logging.basicConfig(level=logging.DEBUG, format="%(levelname)-7s %(message)s")
logging.getLogger("urllib3").setLevel(logging.WARNING)

with LoopbackServer("127.0.0.1") as a, LoopbackServer("127.0.0.2") as b:
    http = poolscope.InstrumentedPoolManager(num_pools=1, mode="logging")  # was PoolManager(...)
    for server in (a, b, a, a):
        http.request("GET", server.url)
