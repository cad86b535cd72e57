"""One package per microservice: the agent registry and each agent."""
