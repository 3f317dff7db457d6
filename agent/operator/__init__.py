"""agent.operator layer."""
