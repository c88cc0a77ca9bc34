"""The urllib3 instrumentation: the pool's queue of idle connections, connection pools,
connections, pool managers, connect phases, and the rules that read urllib3's call sites. It
reports what happens to a :class:`poolscope.core.recorder.Recorder` and knows no sink."""
