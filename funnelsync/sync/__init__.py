"""One sync: the planner (source rows -> planned writes against the state), the sinks that
journal them, the engine that sends them to the CRM and records the results, and the
enrollment runner."""
