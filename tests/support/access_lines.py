"""What every access line holds, as the README lists it."""

FIELDS = [
    "time",
    "procedure",
    "protocol",
    "code",
    "duration_ms",
    "bytes_in",
    "bytes_out",
    "peer",
    "trace_id",
]
"""The fields of an access line, in their order on it."""
