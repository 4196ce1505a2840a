"""Thin HTTP handlers: validate, call a service, return its result (domain errors map in `app.main`)."""
