"""agent.server layer."""
