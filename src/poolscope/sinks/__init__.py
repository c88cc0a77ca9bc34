"""The sinks: OpenTelemetry metrics, OpenTelemetry spans, log records. Each consumes the core's
events and counts, and names their fields through the core's one field table."""
