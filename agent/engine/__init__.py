"""agent.engine layer."""
