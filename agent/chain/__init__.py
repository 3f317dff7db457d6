"""agent.chain layer."""
