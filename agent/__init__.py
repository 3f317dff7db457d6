"""nodetask-agent: runs NodeTask custom resources next to a Sei (Cosmos-SDK / CometBFT) node."""

__version__ = "0.1.0"
