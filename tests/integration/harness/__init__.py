"""Helpers for the integration tests: origin server, process wrappers, HTTP clients, v1 agent."""
