"""Routers, one module per resource; the app factory includes them all."""
