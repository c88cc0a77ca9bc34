"""The report's model: plain frozen dataclasses a user reads, serialises and renders."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Connection:
    """One connection's lane on the timeline (wall-clock seconds since the epoch)."""

    id: int
    opened: float
    closed: float | None
    close_reason: str | None
    requests: int
    uses: tuple[float, ...]


@dataclass(frozen=True)
class Occupancy:
    """A pool key's connections over time, for the timeline's chart: (time, in use, idle,
    waiting) samples taken at each event (merged two by two beyond 2,000, keeping the larger
    figures), and when connections were discarded and requests started waiting."""

    points: tuple[tuple[float, int, int, int], ...] = ()
    discards: tuple[float, ...] = ()
    waits: tuple[float, ...] = ()


@dataclass(frozen=True)
class OtherHosts:
    """The hosts folded into one aggregate, past the hosts poolscope keeps counts of their own
    for (``POOLSCOPE_MAX_HOSTS``): how many, and what they did in all, exactly."""

    hosts: int
    requests: int
    created: int
    reused: int
    dropped: int
    discarded: int
    evictions: int
    waits: int
    errors: int


@dataclass(frozen=True)
class ProcessShare:
    """One process's part of a pool key's requests (``poolscope run`` follows children)."""

    pid: int
    requests: int
    created: int
    reused: int


@dataclass(frozen=True)
class ManagerShare:
    """Managers that served a pool key alike: how many, and each one's part of its requests
    (from the connections the report drew, so within the report's limits)."""

    managers: int
    pool_maxsize: int
    requests: int  # each
    created: int  # each
    reused: int  # each
    manager_ids: tuple[int, ...]  # the first few


@dataclass(frozen=True)
class PoolSummary:
    """What the pools of one (scheme, host, port) did, however many pool objects served it.

    ``manager`` is the PoolManager that made them (0: a pool constructed on its own), or None
    when several did (see :attr:`Report.managers`). The counts, ``peak_in_use`` among them, are
    over all of them; ``connections`` are their connections, for the timeline.
    """

    origin: str
    scheme: str
    host: str
    port: int
    proxy: str | None
    manager: int | None
    pool_maxsize: int
    pool_connections: int
    requests: int
    created: int
    reused: int
    reuse_ratio: float
    dropped: int
    discarded: int
    failed: dict[str, int]
    evictions: int
    waits: int
    wait_timeouts: int
    max_wait_s: float
    peak_in_use: int
    unreturned: int
    connect_time_s: dict[str, float]
    idle_time_s: dict[str, float]
    connections: tuple[Connection, ...] = field(repr=False)
    library: str = "urllib3"  # which library built its pools (requests, botocore, ...)
    processes: tuple[ProcessShare, ...] = ()  # each process's part, when several took part
    # When several managers served it and not all alike: one share per kind of manager.
    manager_shares: tuple[ManagerShare, ...] = ()
    occupancy: Occupancy = field(default_factory=Occupancy, repr=False)
    # How long requests held a connection (checkout to return: the request sent, the response
    # waited for and read): p50, p90, p99, max of the most recent 4,096, max of all.
    response_time_s: dict[str, float] = field(default_factory=dict)
    no_read_timeout: int = 0  # requests sent with no read timeout
    no_connect_timeout: int = 0  # connections opened with no connect timeout
    read_timeouts: int = 0  # read timeouts that fired (retried or not)
    connect_timeouts: int = 0  # connect timeouts that fired (retried or not)
    retries: dict[str, int] = field(default_factory=dict)  # retries urllib3 made, by cause
    errors: dict[str, int] = field(default_factory=dict)  # errors that reached the program
    # Of those, the connection errors a retry would have caught, had the Retry allowed one.
    unretried: dict[str, int] = field(default_factory=dict)
    retry_setting: str = ""  # the Retry in force when one reached it, as urllib3 writes it
    # HTTP/2 (httpx): the most requests on one connection at once, the most streams its server
    # allowed at once, and requests that waited for a stream inside their connection.
    streams_peak: int = 0
    stream_limit: int = 0
    stream_waits: int = 0
    # Right now, as the report was built (for a report at the end: as the program ended).
    in_use: int = 0  # connections checked out
    idle: int = 0  # connections open in a pool, waiting for a request
    waiting: int = 0  # requests waiting for a free connection

    def http2_line(self) -> str:
        """What its HTTP/2 connections carried, for the text and the page ("": not HTTP/2, or
        one request at a time)."""
        if self.streams_peak <= 1:
            return ""
        waited = f", {self.stream_waits} waited for a stream" if self.stream_waits else ""
        return (
            f"HTTP/2: up to {self.streams_peak} requests at once on a connection "
            f"(the server allows {self.stream_limit}){waited}"
        )


@dataclass(frozen=True)
class ManagerSummary:
    """One PoolManager (one requests adapter): its cache of pools against ``num_pools``."""

    id: int
    pool_connections: int
    pools_made: int
    pools_evicted: int
    pools_kept: int  # made and not evicted: in its cache, unless the manager was cleared
    hosts: tuple[str, ...]
    library: str = "urllib3"  # which library built it (requests, botocore, ...)


@dataclass(frozen=True)
class Advice:
    """A problem seen in this run, the evidence for it and the exact change to make."""

    rule: str
    origin: str
    evidence: str
    change: str
    waste: int  # how many connections or waits it cost in this run; 0 once fixed
