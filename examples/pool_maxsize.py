"""Seed scenario: pool_maxsize is how many connections per host a pool keeps for reuse.

Run: python examples/pool_maxsize.py
Two threads at once, twice: pool_maxsize=2 keeps both connections (2 opened, 2 reused);
pool_maxsize=1 discards one each round ("Connection pool is full, discarding connection"),
and poolscope's warning says which pool_maxsize would have kept it.
"""

from __future__ import annotations

import logging
import threading

import requests
from requests.adapters import HTTPAdapter

import poolscope
from poolscope.loopback import LoopbackServer  # the demo's loopback server

logging.basicConfig(level=logging.DEBUG, format="%(levelname)-7s %(message)s")
logging.getLogger("urllib3").setLevel(logging.ERROR)

for pool_maxsize in (2, 1):
    print(f"--- pool_maxsize={pool_maxsize}")
    with LoopbackServer("127.0.0.1", together=2) as server:
        s = requests.Session()
        s.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=pool_maxsize))
        poolscope.instrument_session(s, mode="logging")
        for _ in range(2):
            # /together answers once both requests are in flight: they overlap for sure.
            threads = [
                threading.Thread(target=s.get, args=(server.url + "/together",)) for _ in range(2)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        print(f"server accepted {server.connections} connections")
