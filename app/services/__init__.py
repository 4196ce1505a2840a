"""Keyword-only functions serving requests from a `ModelRegistry`; they raise domain errors, not HTTP ones."""
