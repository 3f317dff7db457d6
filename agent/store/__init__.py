"""agent.store layer."""
