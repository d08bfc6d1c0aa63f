"""funnelsync: keeps HubSpot contacts in step with how developers use your API."""

__version__ = "0.1.0"
