"""Free ports for the servers a test starts itself: :func:`gridhub.supervisor.free_port` is the one
implementation (the tool that starts workers needs it too); tests import it from here."""

from gridhub.supervisor import free_port, port_open

__all__ = ["free_port", "port_open"]
