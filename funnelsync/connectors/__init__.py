"""Connectors: the sources that yield usage rows, and the CRM that receives contacts.

`source.py` is the interface every source implements; `sql.py` and `moesif.py` are sources;
`hubspot/` is the CRM connector; `sandbox/` is a local HubSpot-compatible server for the demo and
the tests (it never imports the HubSpot connector it checks).
"""
