"""Seed scenario: pool_connections is how many hosts' pools an adapter keeps.

Run: python examples/pool_connections.py
Cycling hosts A B A with pool_connections=1 evicts a pool each time (3 connections opened);
with pool_connections=2 both pools stay and A's connection is reused (2 opened).
"""

from __future__ import annotations

import logging

import requests
from requests.adapters import HTTPAdapter

import poolscope
from poolscope.loopback import LoopbackServer  # the demo's loopback server

logging.basicConfig(level=logging.DEBUG, format="%(levelname)-7s %(message)s")
logging.getLogger("urllib3").setLevel(logging.WARNING)

with LoopbackServer("127.0.0.1") as a, LoopbackServer("127.0.0.2") as b:
    for pool_connections in (1, 2):
        print(f"--- pool_connections={pool_connections}")
        s = requests.Session()
        s.mount("http://", HTTPAdapter(pool_connections=pool_connections))
        poolscope.instrument_session(s, mode="logging")
        for server in (a, b, a):
            s.get(server.url)
        s.close()
    print(f"servers accepted {a.connections + b.connections} connections in all (3 + 2)")
