"""agent.cli layer."""
