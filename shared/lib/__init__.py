"""Building blocks shared by the services: events, bus, locks, workflow state, registry client."""
