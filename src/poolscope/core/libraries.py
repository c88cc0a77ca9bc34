"""The libraries that build urllib3 and httpx pools, and each one's words for the settings that
size them (the words themselves: :mod:`poolscope.core.knobs`).

Most urllib3 pools in production are built by an SDK, not by the user's own code: advice that
says ``HTTPAdapter(pool_maxsize=20)`` to a boto3 user names a class they never touch. Each pool
and manager learns once, when it is made, which library made it (see
``poolscope.instrumentation.callsites.building_library``); the report and the log records then
speak that library's words. Adding a library is one entry here (and a test against it).
"""

from __future__ import annotations

import dataclasses

from .knobs import Knob, Library, OneClient

URLLIB3 = Library(
    name="urllib3",
    modules=("urllib3",),
    maxsize=Knob(
        "maxsize",
        "urllib3.PoolManager(maxsize={n}) (a pool on its own: HTTPConnectionPool(maxsize={n}))",
    ),
    num_pools=Knob("num_pools", "urllib3.PoolManager(num_pools={n})"),
    block=Knob("maxsize", "urllib3.PoolManager(maxsize={n}, block=True)"),
    timeout=Knob(
        "timeout", "urllib3.PoolManager(timeout=urllib3.Timeout(connect={connect}, read={read}))"
    ),
    retries=Knob("retries", "urllib3.PoolManager(retries=urllib3.Retry({n}))"),
    pool_timeout=Knob("pool_timeout", "http.request(method, url, pool_timeout={n})"),
)

LIBRARIES: tuple[Library, ...] = (
    Library(
        name="httpx",
        modules=("httpx", "httpcore", "httpx2", "httpcore2"),
        # A pool's maxsize is the idle connections it keeps (urllib3's maxsize): httpx's
        # max_keepalive_connections. The connections it opens at most, beyond which requests
        # wait, are max_connections.
        maxsize=Knob(
            "max_keepalive_connections",
            "httpx.Client(limits=httpx.Limits(max_keepalive_connections={n})) (and "
            "max_connections at least as many)",
        ),
        block=Knob(
            "max_connections",
            "httpx.Client(limits=httpx.Limits(max_connections={n}, max_keepalive_connections={n}))",
        ),
        timeout=Knob("timeout", "httpx.Client(timeout=httpx.Timeout({read}, connect={connect}))"),
        pool_timeout=Knob("pool", "httpx.Client(timeout=httpx.Timeout(..., pool={n}))"),
        keepalive=Knob(
            "keepalive_expiry", "httpx.Client(limits=httpx.Limits(keepalive_expiry={n}))"
        ),
        missing="an httpx client keeps one pool for all its hosts",
        gave_up="httpx.PoolTimeout",
        one_client=OneClient(
            clients="separate httpx clients",
            per_call=(
                "httpx.get() and httpx.post() make a new Client on every call, as does a new "
                "httpx.Client() or AsyncClient() per call"
            ),
            change=(
                "Use one httpx.Client (or AsyncClient) for every call to {origin} instead of "
                "httpx.get() per call (or a client per call): make it once, send every request "
                "through it and close it when the program is done, so its connections are reused."
            ),
        ),
    ),
    # SDKs on httpx2 (the fork of httpx they moved to): their client takes one of httpx2's,
    # made with the SDK's own defaults by its DefaultHttpxClient (DefaultAsyncHttpxClient).
    *(
        Library(
            name=name,
            modules=(name,),
            maxsize=Knob(
                "max_keepalive_connections",
                f"{cls}(http_client={name}.DefaultHttpxClient(limits=httpx2.Limits("
                "max_keepalive_connections={n}, max_connections=" + f"{most})))",
            ),
            block=Knob(
                "max_connections",
                f"{cls}(http_client={name}.DefaultHttpxClient(limits=httpx2.Limits("
                "max_connections={n}, max_keepalive_connections={n})))",
            ),
            timeout=Knob(
                "timeout", f"{cls}(timeout=httpx2.Timeout({{read}}, connect={{connect}}))"
            ),
            retries=Knob("max_retries", f"{cls}(max_retries={{n}})"),
            pool_timeout=Knob("pool", f"{cls}(timeout=httpx2.Timeout(..., pool={{n}}))"),
            keepalive=Knob(
                "keepalive_expiry",
                f"{cls}(http_client={name}.DefaultHttpxClient(limits=httpx2.Limits("
                f"max_connections={most}, max_keepalive_connections={kept}, "
                "keepalive_expiry={n})))",
            ),
            missing=f"a {name} client keeps one pool for all its hosts",
            gave_up=f"{name}.APITimeoutError, from httpx2.PoolTimeout",
            one_client=OneClient(
                clients=f"separate {name} clients",
                per_call=f"each new {cls}() or {async_cls}() makes an httpx client of its own",
                change=(
                    f"Make one {cls}() (or {async_cls}()) when the program starts and reuse it "
                    "for every call to {origin}, so its connections are reused."
                ),
            ),
        )
        # Their own limits, DEFAULT_CONNECTION_LIMITS: kept when the advice replaces them.
        for name, cls, async_cls, most, kept in (
            ("openai", "openai.OpenAI", "openai.AsyncOpenAI", 1000, 100),
            ("anthropic", "anthropic.Anthropic", "anthropic.AsyncAnthropic", 1000, 100),
        )
    ),
    Library(
        name="requests",
        modules=("requests",),
        maxsize=Knob(
            "pool_maxsize", "HTTPAdapter(pool_maxsize={n}) (urllib3: PoolManager(maxsize={n}))"
        ),
        num_pools=Knob(
            "pool_connections",
            "HTTPAdapter(pool_connections={n}) (urllib3: PoolManager(num_pools={n}))",
        ),
        block=Knob("pool_maxsize", "HTTPAdapter(pool_maxsize={n}, pool_block=True)"),
        timeout=Knob("timeout", "session.get(url, timeout=({connect}, {read}))"),
        retries=Knob(
            "max_retries",
            'session.mount("https://", HTTPAdapter(max_retries=urllib3.Retry({n}))) '
            '(and "http://")',
        ),
    ),
    Library(
        name="botocore",
        modules=("botocore", "boto3"),
        maxsize=Knob(
            "max_pool_connections",
            "boto3.client(..., config=botocore.config.Config(max_pool_connections={n}))",
        ),
        missing="botocore keeps one pool per endpoint and has no setting for how many",
    ),
    Library(
        name="kubernetes",
        modules=("kubernetes",),
        maxsize=Knob(
            "connection_pool_maxsize",
            "configuration.connection_pool_maxsize = {n} (a kubernetes.client.Configuration)",
        ),
        timeout=Knob("_request_timeout", "api.<call>(..., _request_timeout=({connect}, {read}))"),
        retries=Knob("retries", "configuration.retries = urllib3.Retry({n})"),
        missing="the kubernetes client has no setting for how many pools an ApiClient keeps",
    ),
    Library(
        name="elasticsearch",
        modules=("elastic_transport", "elasticsearch"),
        maxsize=Knob("connections_per_node", "Elasticsearch(..., connections_per_node={n})"),
        block=Knob("connections_per_node", "Elasticsearch(..., connections_per_node={n})"),
        missing="elastic-transport keeps one pool per node",
    ),
    Library(
        name="opensearch-py",
        modules=("opensearchpy",),
        maxsize=Knob("pool_maxsize", "OpenSearch(..., pool_maxsize={n})"),
        missing="opensearch-py keeps one pool per node",
    ),
    Library(
        name="minio",
        modules=("minio",),
        # minio builds its manager itself unless it is handed one (http_client): the one to
        # hand it keeps minio's own timeouts and retries.
        maxsize=Knob(
            "maxsize",
            "Minio(..., http_client=urllib3.PoolManager(maxsize={n}, "
            "timeout=urllib3.Timeout(connect=300, read=300), retries=urllib3.Retry(total=5, "
            "backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]))) (minio's own "
            'settings; for https add cert_reqs="CERT_REQUIRED", ca_certs=certifi.where())',
        ),
        num_pools=Knob("num_pools", "Minio(..., http_client=urllib3.PoolManager(num_pools={n}))"),
        block=Knob(
            "maxsize", "Minio(..., http_client=urllib3.PoolManager(maxsize={n}, block=True))"
        ),
        timeout=Knob(
            "timeout",
            "Minio(..., http_client=urllib3.PoolManager(timeout=urllib3.Timeout(connect={connect}, "
            "read={read})))",
        ),
        retries=Knob(
            "retries", "Minio(..., http_client=urllib3.PoolManager(retries=urllib3.Retry({n})))"
        ),
    ),
    # SDKs that build a requests Session: found past requests' frames, so their words win.
    Library(
        name="hvac",
        modules=("hvac",),
        maxsize=Knob(
            "pool_maxsize",
            "hvac.Client(..., session=session), with session = requests.Session() and "
            'session.mount("https://", HTTPAdapter(pool_maxsize={n})) (and "http://")',
        ),
        num_pools=Knob(
            "pool_connections",
            'hvac.Client(..., session=session), with session.mount("https://", '
            'HTTPAdapter(pool_connections={n})) (and "http://")',
        ),
        block=Knob(
            "pool_maxsize",
            'hvac.Client(..., session=session), with session.mount("https://", '
            'HTTPAdapter(pool_maxsize={n}, pool_block=True)) (and "http://")',
        ),
        timeout=Knob("timeout", "hvac.Client(..., timeout={read})"),
        retries=Knob(
            "max_retries",
            'hvac.Client(..., session=session), with session.mount("https://", '
            'HTTPAdapter(max_retries=urllib3.Retry({n}))) (and "http://")',
        ),
    ),
    Library(
        name="google-auth",
        modules=("google.auth",),
        maxsize=Knob(
            "pool_maxsize",
            'session.mount("https://", HTTPAdapter(pool_maxsize={n})) on the AuthorizedSession '
            '(a requests Session; and "http://")',
        ),
        num_pools=Knob(
            "pool_connections",
            'session.mount("https://", HTTPAdapter(pool_connections={n})) on the AuthorizedSession',
        ),
        block=Knob(
            "pool_maxsize",
            'session.mount("https://", HTTPAdapter(pool_maxsize={n}, pool_block=True)) on the '
            "AuthorizedSession",
        ),
        timeout=Knob("timeout", "session.get(url, timeout=({connect}, {read}))"),
        retries=Knob(
            "max_retries",
            'session.mount("https://", HTTPAdapter(max_retries=urllib3.Retry({n}))) on the '
            "AuthorizedSession",
        ),
    ),
    Library(
        name="azure-core",
        modules=("azure.core",),
        maxsize=Knob(
            "pool_maxsize",
            "transport=RequestsTransport(session=session) to the client, with session = "
            'requests.Session() and session.mount("https://", HTTPAdapter(pool_maxsize={n}))',
        ),
        num_pools=Knob(
            "pool_connections",
            "transport=RequestsTransport(session=session) to the client, with "
            'session.mount("https://", HTTPAdapter(pool_connections={n}))',
        ),
        block=Knob(
            "pool_maxsize",
            "transport=RequestsTransport(session=session) to the client, with "
            'session.mount("https://", HTTPAdapter(pool_maxsize={n}, pool_block=True))',
        ),
        timeout=Knob(
            "connection_timeout", "the client's connection_timeout={connect}, read_timeout={read}"
        ),
        missing="azure-core retries in its own pipeline (retry_total), not in urllib3",
    ),
    Library(
        name="influxdb",
        modules=("influxdb",),
        maxsize=Knob("pool_size", "InfluxDBClient(..., pool_size={n})"),
        num_pools=Knob("pool_size", "InfluxDBClient(..., pool_size={n})"),
        timeout=Knob("timeout", "InfluxDBClient(..., timeout={read})"),
        missing="influxdb's client does not wait for a free connection and retries by itself",
    ),
    Library(
        name="influxdb-client",
        modules=("influxdb_client",),
        maxsize=Knob("connection_pool_maxsize", "InfluxDBClient(..., connection_pool_maxsize={n})"),
        timeout=Knob("timeout", "InfluxDBClient(..., timeout=1000 * {read}) (milliseconds)"),
        missing="influxdb-client has no setting for how many pools its client keeps",
    ),
    Library(
        name="docker",
        modules=("docker",),
        maxsize=Knob("max_pool_size", "docker.DockerClient(..., max_pool_size={n})"),
        num_pools=Knob("num_pools", "docker.DockerClient(..., num_pools={n})"),
        missing="docker-py does not wait for a free connection",
    ),
)

_BY_NAME = {lib.name: lib for lib in (URLLIB3, *LIBRARIES)}
_BY_MODULE = {module: lib for lib in LIBRARIES for module in lib.modules}
_NAMESPACES = {module.partition(".")[0] for module in _BY_MODULE if "." in module}


_UNKNOWN: dict[str, Library] = {}  # libraries met that are not in the table, by name


def library(name: str) -> Library:
    """The library of that name; urllib3's for a name neither in the table nor met."""
    return _BY_NAME.get(name) or _UNKNOWN.get(name, URLLIB3)


def met_unknown(name: str, built_by: str, words_of: str = "urllib3") -> Library:
    """A library not in the table, met building a pool: it speaks the words of ``words_of``
    (urllib3's, requests' for one that builds a Session, httpx's for one that builds an httpx
    client), and ``built_by`` says which library it is, where it builds the pool, and what to
    look for. The first one is kept."""
    lib = _UNKNOWN.get(name)
    if lib is None:
        words = _BY_NAME[words_of]
        lib = _UNKNOWN.setdefault(
            name,
            dataclasses.replace(words, name=name, modules=(), built_by=built_by, speaks=words_of),
        )
    return lib


def unknown_met() -> dict[str, tuple[str, str]]:
    """Every library not in the table met so far: its description and whose words it speaks
    (for the report, which may be built in another process)."""
    return {name: (lib.built_by, lib.speaks) for name, lib in list(_UNKNOWN.items())}


def library_of_module(module: str) -> Library | None:
    """The library whose code a module (``__name__``) is part of, if it is in the table: by
    its top-level package, or its first two names for a namespace package (``google.auth``)."""
    top, _, rest = module.partition(".")
    lib = _BY_MODULE.get(top)
    if lib is None and rest and top in _NAMESPACES:
        lib = _BY_MODULE.get(f"{top}.{rest.partition('.')[0]}")
    return lib
