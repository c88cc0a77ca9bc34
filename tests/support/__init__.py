"""Shared helpers for the test suite (no tests and no fixtures here: fixtures live in
tests/conftest.py, which builds them from these).

- ``load``: the concurrent load run with its invariants (tests/test_concurrent_load.py and
  scripts/soak).
- ``metrics``: ``Metrics``, a real SDK MeterProvider with an in-memory reader.
- ``outcome``: ``outcome``, what a user sees from a call (response or exception chain).
- ``proxy``: ``Proxy``, a small threaded HTTP proxy on loopback.
- ``scripted``: ``CloseOnReuse``, a raw scripted server for faults.
- ``spans``: ``Spans``, a real SDK TracerProvider with an in-memory exporter.
- ``threads``: ``in_two_threads``, two requests in flight at the same time.
"""
