"""The daemon: the sync engine that drives source -> mappings -> state -> CRM, the scheduler,
the command line, and health/metrics."""
