"""The hub's error types, classified once (DESIGN.md: Kafka Connect's ``RetriableException``,
Quix Streams' ``SinkBackpressureError``).

Every failure a stage handles is one of two kinds, and the kind decides what happens:

* :class:`RetriableError`: the destination is unavailable (network, timeout, overload). Back off
  and retry the same input; never dead-letter it, never commit past it.
* :class:`DataError`: the input itself is unacceptable; retrying cannot help. Dead-letter it with
  its original bytes and a reason (:class:`Rejected` carries that reason), and go on.

``Stage`` names who rejected a record: the ``error.stage`` header of a dead letter
(gridhub/core/dlq.py) and the ``stage`` label of ``gridhub_dead_letters_total``.
"""

from __future__ import annotations

from typing import Literal

#: The stages that dead-letter records (``error.stage``); ``gridhub dlq ls --stage`` filters on them.
Stage = Literal["normalize", "fusion", "routing", "feedback", "sink", "webhook", "gateway", "mqtt", "import",
                "registry", "replay"]


#: Exit status of a worker that stopped itself on an infrastructure error without committing
#: (``streams.app.fail_stop``): EX_SOFTWARE of BSD sysexits.h ("internal software error").  A restart
#: policy (deploy/k8s, systemd, ``WorkerProcess.restart_if_fail_stopped``) starts it again.
EXIT_FAIL_STOP = 70


class HubError(Exception):
    """Root of the hub's own errors."""


class RetriableError(HubError):
    """The destination is unavailable (network, timeout, overload): back off and retry the same batch."""


class DataError(HubError):
    """The data itself is unacceptable: retrying cannot help; dead-letter it and go on."""


class Rejected(DataError):
    """One input rejected with one human sentence, ``reason``, for its dead letter; state is unchanged."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
