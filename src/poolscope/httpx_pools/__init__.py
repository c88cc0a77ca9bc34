"""httpx's pools (httpcore's ``ConnectionPool`` and ``AsyncConnectionPool``), instrumented: the
urllib3 instrumentation's sibling, feeding the same recorder and so the same metrics, spans and
report (see :mod:`.hooks`)."""
