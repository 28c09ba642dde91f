"""Small helpers below every other layer: clock, backoff, paths, redaction."""
