"""Periodic services that run inside the server process."""
