"""Seed scenario: requests.get() opens a new connection every call; a Session reuses one.

Run: python examples/session_reuse.py
"""

from __future__ import annotations

import logging

import requests

import poolscope
from poolscope.loopback import LoopbackServer  # the demo's loopback server

logging.basicConfig(level=logging.INFO, format="%(levelname)-7s %(message)s")

with LoopbackServer("127.0.0.1") as server:
    print("--- like requests.get(): a throwaway Session per call")
    for _ in range(3):
        with poolscope.instrument_session(requests.Session(), mode="logging") as s:
            s.get(server.url)
    print("--- one Session")
    s = poolscope.instrument_session(requests.Session(), mode="logging")
    for _ in range(3):
        s.get(server.url)
    print(f"server accepted {server.connections} connections (3 + 1)")
