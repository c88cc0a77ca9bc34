"""Whether an OpenTelemetry provider records: the question both OpenTelemetry sinks ask before
they act on each reuse."""

from __future__ import annotations


def records_anything(provider: object, api_package: str) -> bool:
    """Whether an OpenTelemetry provider can record: the API's own providers (the global
    proxy before an SDK is set, the no-op ones) live in the API package and record nothing."""
    module = type(provider).__module__
    return not (module == api_package or module.startswith(api_package + "."))
