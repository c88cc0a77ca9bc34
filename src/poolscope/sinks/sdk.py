"""Whether an OpenTelemetry provider records: the question both OpenTelemetry sinks ask before
they act on each reuse, and at each connect and close while the answer is no. And the current
span, as both sinks read it.

With no provider passed, the answer is the global one's, and the API's ``get_meter_provider()``
and ``get_tracer_provider()`` look in ``os.environ`` on every call until a global provider is
set (``OTEL_PYTHON_METER_PROVIDER``: ``in os.environ`` runs some 50 bytecodes). A sweep over
many hosts asks at every connect and close, so :class:`GlobalProvider` answers "nothing set"
from what those functions test, read directly: the API module's global and the environment's
own dict. It relies on (checked by tests/test_sdk_probe.py):

- ``opentelemetry.metrics._internal._METER_PROVIDER`` and ``opentelemetry.trace._TRACER_PROVIDER``:
  None until a global provider is set, as ``get_*_provider()`` test them;
- ``os.environ._data``, keyed by ``os.environ.encodekey(name)``, as ``os.environ`` looks up.

When either is missing (another Python or API version), it asks the public function every time.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from opentelemetry import context, metrics, trace
from opentelemetry.environment_variables import (
    OTEL_PYTHON_METER_PROVIDER,
    OTEL_PYTHON_TRACER_PROVIDER,
)

# The key the OpenTelemetry API files the current span under, learnt through its public API (a
# context made from an empty one by set_span_in_context holds that key alone). Reading it from
# the context directly skips get_current_span()'s isinstance() against the Span ABC, which is
# two thirds of that call's cost.
SPAN_KEY = next(iter(trace.set_span_in_context(trace.INVALID_SPAN, context.Context())))
current_context = context.get_current


def records_anything(provider: object, api_package: str) -> bool:
    """Whether an OpenTelemetry provider can record: the API's own providers (the global
    proxy before an SDK is set, the no-op ones) live in the API package and record nothing."""
    module = type(provider).__module__
    return not (module == api_package or module.startswith(api_package + "."))


class GlobalProvider:
    """The global provider of one OpenTelemetry signal, and whether it records."""

    def __init__(self, api: Any, getter: str, module: str, name: str, variable: str) -> None:
        self._api = api  # the API's module, and the name of its get_*_provider() there
        self._getter = getter
        self.api_package = api.__name__
        self._module = sys.modules.get(module)
        self._name = name
        environ_data = getattr(os.environ, "_data", None)
        encodekey = getattr(os.environ, "encodekey", None)
        self._environ: dict[Any, Any] | None = None
        self._variable: Any = None
        if isinstance(environ_data, dict) and callable(encodekey) and self._module is not None:
            if name in vars(self._module):
                self._environ = environ_data
                self._variable = encodekey(variable)

    def records(self) -> bool:
        """Whether the global provider records now. While none is set (and none is named in
        the environment for the API to load) that is known without asking the API."""
        environ = self._environ
        if (
            environ is not None
            and getattr(self._module, self._name) is None
            and self._variable not in environ
        ):
            return False  # get_*_provider() would return the API's proxy
        return records_anything(getattr(self._api, self._getter)(), self.api_package)


GLOBAL_METER_PROVIDER = GlobalProvider(
    metrics,
    "get_meter_provider",
    "opentelemetry.metrics._internal",
    "_METER_PROVIDER",
    OTEL_PYTHON_METER_PROVIDER,
)
GLOBAL_TRACER_PROVIDER = GlobalProvider(
    trace,
    "get_tracer_provider",
    "opentelemetry.trace",
    "_TRACER_PROVIDER",
    OTEL_PYTHON_TRACER_PROVIDER,
)
