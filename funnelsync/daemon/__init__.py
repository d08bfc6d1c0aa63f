"""The daemon: `funnelsync run`'s scheduler, its health and metrics endpoints, and the logs."""
