"""The local infrastructure: Kafka, ClickHouse and Mosquitto under the run dir.

``gridhub infra up | down | status`` (:mod:`gridhub.infra.cli`) drives
:class:`~gridhub.infra.manager.Infra`; tests/conftest.py uses the same class.
One class per server (:class:`KafkaServer`, :class:`ClickHouseServer`,
:class:`MosquittoServer`) on a common :class:`LocalServer` base, so a
multi-broker or SASL variant is a subclass or a differently configured
instance, not a copy.
"""

from gridhub.infra.base import InfraError, LocalServer
from gridhub.infra.clickhouse import ClickHouseServer
from gridhub.infra.kafka import KafkaNode, KafkaServer
from gridhub.infra.manager import Infra
from gridhub.infra.mosquitto import MosquittoServer

__all__ = ["ClickHouseServer", "Infra", "InfraError", "KafkaNode", "KafkaServer", "LocalServer",
           "MosquittoServer"]
