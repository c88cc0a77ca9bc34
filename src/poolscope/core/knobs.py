"""The words a library's advice is written in: one setting of it (:class:`Knob`), how its
users end up with a client per call and the one to keep instead (:class:`OneClient`), and a
library's whole vocabulary (:class:`Library`). The libraries themselves, and which one builds a
pool, are :mod:`poolscope.core.libraries`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Knob:
    """One setting of a library's: its name, and how a user writes it with the value ``{n}``."""

    name: str
    template: str

    def words(self, n: int | str = "", *, connect: str = "", read: str = "") -> str:
        """The setting written with ``n`` (or, for a timeout, ``connect`` and ``read``)."""
        return self.template.format(n=n, connect=connect, read=read)


@dataclass(frozen=True)
class OneClient:
    """How a library's users end up with a new client (so a new pool, and a new connection)
    on every call, and the one client to make once instead: the words of the advice that says
    so (``{origin}`` in ``change``: the host)."""

    clients: str  # what the evidence calls them: "separate httpx clients"
    per_call: str  # what makes one per call
    change: str


# urllib3's and requests' (and the words of the libraries on them that build a Session).
ONE_SESSION = OneClient(
    clients="separate sessions or PoolManagers",
    per_call="requests.get() and requests.post() make a new Session on every call",
    change=(
        "Make one requests.Session() and send every request through it, so its connections "
        "are reused."
    ),
)


@dataclass(frozen=True)
class Library:
    """A library that builds urllib3 (or httpx) pools, and the settings its users size them
    with: how many connections a pool keeps (urllib3's ``maxsize``), how many pools a manager
    keeps (``num_pools``), whether a request waits for a free connection (``block``). None where
    it has no such setting; ``missing`` then says so."""

    name: str  # as reported: log field client_library, PoolSummary.library
    modules: tuple[str, ...]  # top-level packages whose frames build its pools
    maxsize: Knob
    num_pools: Knob | None = None
    block: Knob | None = None
    # A request's timeouts (template fields {connect} and {read}, seconds) and its retries
    # (template field {n}: Retry's arguments); None where the library sets its own.
    timeout: Knob | None = None
    retries: Knob | None = None
    # How long a request waits for a free connection before it gives up (template field {n}).
    pool_timeout: Knob | None = None
    # How long the client keeps a connection idle before it closes it (template field {n},
    # seconds); None where it has no such setting (urllib3 keeps them until they are found
    # closed).
    keepalive: Knob | None = None
    missing: str = ""
    gave_up: str = "EmptyPoolError"  # what a request that waited too long for a connection got
    # For a library poolscope has no entry for (see poolscope.core.unknown): which one built
    # the pool, where, and how such libraries usually take a pool of the user's; and whose
    # words it speaks (urllib3's, requests' for one that builds a Session, httpx's for one
    # that builds an httpx client).
    built_by: str = ""
    speaks: str = ""
    # What a new client per call is called in its words, and the one to keep instead.
    one_client: OneClient = ONE_SESSION
