"""Mappings: pure functions from the typed config and a source row to what HubSpot should hold.

No I/O here: every rule a RevOps admin writes can be tested in microseconds.
"""
