"""Shared test support: real Redis servers and clusters (redis_fixtures)."""
