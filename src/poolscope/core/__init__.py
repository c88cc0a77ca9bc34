"""The core: the event model, per-pool and per-connection state, the sink contract and the
recorder. It imports nothing from urllib3, requests or OpenTelemetry, and nothing of poolscope's
other layers: everything else builds on it."""
