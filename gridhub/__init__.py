"""gridhub: the Kafka backbone under Zhejiang's 141 grid-governance system."""

__version__ = "0.1.0"
