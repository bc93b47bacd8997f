"""A secured local Kafka: ``gridhub infra up --secure``.

What it demonstrates (docs/security.md), on one machine, beside the shared dev servers:

* **Authentication**: every client authenticates with SASL/SCRAM-SHA-256 on the
  client listener; the controller listener uses SASL/PLAIN with the ``admin``
  user only.  Nothing is reachable anonymously.
* **Credentials at format time**: SCRAM credentials of ``admin``, ``hub`` and
  every agency are written into the KRaft metadata by ``kafka-storage format
  --add-scram`` (Kafka 4.0's StorageTool), so the broker can authenticate its
  first client without a running cluster to store them in.
* **Authorisation**: ``StandardAuthorizer`` with ``allow.everyone.if.no.acl.found
  =false``; ``admin`` is the only super user.  ACLs (created with kafka-python's
  admin client after start, idempotent): ``hub`` may do everything; agency
  ``<county>.<code>`` may READ only ``dispatch.<county>.<code>`` (and its own
  consumer groups, prefix ``<county>.<code>``) and WRITE only ``feedback.<county>.<code>``
  (the shared ``feedback`` is the hub's: its gateway stamps the token's agency).

Passwords are generated once per run dir into ``<run_dir>/secure/credentials/<principal>``
(mode 0600) and read from there by the broker itself (Kafka's
``DirectoryConfigProvider``), so no password is written into server.properties;
clients read the same files (``GRIDHUB_KAFKA_SASL_PASSWORD_FILE``).

Own run dir (``<run_dir>/secure/``) and own ports (the dev broker's + 5000:
24092 for clients, 24093 for the controller), so it never disturbs the dev servers.
The listeners are SASL_PLAINTEXT on loopback; production adds TLS (deploy/k8s/kafka.yaml).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

from gridhub.infra.base import DEPLOY_DIR
from gridhub.infra.kafka import KafkaNode, KafkaServer
from gridhub.infra.manager import Infra
from gridhub.core.settings import Settings
from gridhub.core.topics import FEEDBACK, dispatch_topic, feedback_topic

#: Port offset from the dev broker: 19092 -> 24092 (below Linux's ephemeral range, 32768+).
SECURE_PORT_OFFSET = 5000
#: The county whose agencies get principals by default: 330502 吴兴区 (the examples of CONTRACTS.md).
DEFAULT_COUNTY = "330502"
ADMIN = "admin"
HUB = "hub"
MECHANISM = "SCRAM-SHA-256"


def default_agencies(county: str = DEFAULT_COUNTY) -> list[str]:
    """Every county-level agency of deploy/agencies.yaml in one county (``330502.zhzf`` ...)."""
    catalog = yaml.safe_load((DEPLOY_DIR / "agencies.yaml").read_text(encoding="utf-8"))
    return [f"{county}.{code}" for code in catalog["county_agencies"]]


class Credentials:
    """One password file per principal under a 0700 directory; generated once, then reused."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, principal: str) -> Path:
        return self.directory / principal

    def password(self, principal: str) -> str:
        path = self.path(principal)
        if not path.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            os.chmod(self.directory, 0o700)
            # 32 url-safe characters (192 bits): no quoting issues in JAAS or the StorageTool syntax.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(24))
        return path.read_text().strip()


class SecureKafka(KafkaServer):
    """A single KRaft node with SCRAM authentication and ACL authorisation."""

    name = "kafka-secure"
    status_key = "kafka"

    def __init__(self, settings: Settings, principals: list[str]) -> None:
        port = settings.kafka_port + SECURE_PORT_OFFSET
        super().__init__(settings, node=KafkaNode(1, settings.kafka_host, port, port + 1))
        self.credentials = Credentials(self.home / "credentials")
        self.principals = principals

    def properties(self) -> dict[str, str]:
        props = super().properties()
        creds = str(self.credentials.directory)
        host, port, cport = self.node.host, self.node.port, self.node.controller_port
        props.update({
            "listeners": f"SASL_PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
            "advertised.listeners": f"SASL_PLAINTEXT://{host}:{port}",
            "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
            "inter.broker.listener.name": "SASL_PLAINTEXT",
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            # Passwords come from the credential files at start (never written here).
            "config.providers": "dir",
            "config.providers.dir.class": "org.apache.kafka.common.config.provider.DirectoryConfigProvider",
            "listener.name.controller.plain.sasl.jaas.config":
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'username="{ADMIN}" password="${{dir:{creds}:{ADMIN}}}" user_{ADMIN}="${{dir:{creds}:{ADMIN}}}";',
            "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{ADMIN}" password="${{dir:{creds}:{ADMIN}}}";',
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:{ADMIN}",
            # auto.create.topics.enable stays on: it needs CREATE, which agencies do not have, so only
            # admin (the health check's topic) and the hub can create topics by using them.
        })
        return props

    def format_args(self) -> list[str]:
        args = []
        for principal in [ADMIN, HUB, *self.principals]:
            args += ["--add-scram", f"{MECHANISM}=[name={principal},password={self.credentials.password(principal)}]"]
        return args

    def client_options(self, principal: str = ADMIN) -> dict[str, Any]:
        return {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": MECHANISM,
                "sasl_plain_username": principal, "sasl_plain_password": self.credentials.password(principal)}

    def info(self) -> dict[str, Any]:
        data = super().info()
        data.update(security_protocol="SASL_PLAINTEXT", sasl_mechanism=MECHANISM,
                    credentials=str(self.credentials.directory), principals=[HUB, *self.principals])
        return data


def agency_acls(settings: Settings, agency: str, principal: str | None = None) -> list[Any]:
    """READ its own dispatch topic and its consumer groups; WRITE its own feedback topic. Nothing else.

    Not the shared ``feedback`` topic: there any agency could write feedback naming another
    agency.  ``feedback.<county>.<agency>`` is writable by that principal alone, and routing
    takes the agency from the topic (streams/routing/feedback.py)."""
    from kafka.admin import ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePattern, ResourceType

    user = f"User:{principal or agency}"
    allow = ACLPermissionType.ALLOW

    def acl(op: ACLOperation, rtype: ResourceType, name: str, pattern: ACLResourcePatternType) -> ACL:
        return ACL(user, "*", op, allow, ResourcePattern(rtype, name, pattern))

    own = settings.topic(dispatch_topic(agency))
    feedback = settings.topic(feedback_topic(agency))
    literal, prefixed = ACLResourcePatternType.LITERAL, ACLResourcePatternType.PREFIXED
    return [
        acl(ACLOperation.READ, ResourceType.TOPIC, own, literal),
        acl(ACLOperation.DESCRIBE, ResourceType.TOPIC, own, literal),
        acl(ACLOperation.READ, ResourceType.GROUP, agency, prefixed),
        acl(ACLOperation.WRITE, ResourceType.TOPIC, feedback, literal),
        acl(ACLOperation.DESCRIBE, ResourceType.TOPIC, feedback, literal),
    ]


def hub_acls() -> list[Any]:
    """The hub may do everything (it creates topics, runs consumer groups, writes every topic)."""
    from kafka.admin import ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePattern, ResourceType

    literal = ACLResourcePatternType.LITERAL
    return [ACL(f"User:{HUB}", "*", ACLOperation.ALL, ACLPermissionType.ALLOW, ResourcePattern(rtype, name, literal))
            for rtype, name in ((ResourceType.TOPIC, "*"), (ResourceType.GROUP, "*"),
                                (ResourceType.TRANSACTIONAL_ID, "*"), (ResourceType.CLUSTER, "kafka-cluster"))]


class SecureInfra(Infra):
    """The secured broker of ``gridhub infra up --secure`` (Kafka only), under ``<run_dir>/secure``."""

    def __init__(self, settings: Settings, agencies: list[str] | None = None, *, run_dir: Path | None = None,
                 port: int | None = None, classpath_settings: Settings | None = None) -> None:
        self.parent_settings = settings
        self.agencies = agencies if agencies is not None else default_agencies()
        update: dict[str, Any] = {"run_dir": (run_dir or Path(settings.run_dir) / "secure").resolve()}
        if port is not None:  # client port; the controller takes the next one
            update.update(kafka_port=port - SECURE_PORT_OFFSET, kafka_controller_port=port + 1 - SECURE_PORT_OFFSET)
        self.kafka = SecureKafka(settings.model_copy(update=update), self.agencies)
        self.classpath_settings = classpath_settings or settings
        super().__init__(self.kafka.settings, servers=[self.kafka])

    def up(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        from gridhub.infra.cluster import share_classpath_cache

        share_classpath_cache(self.classpath_settings, self.settings)
        took = super().up(*args, **kwargs)
        self.apply_acls()
        return took

    def apply_acls(self) -> None:
        """Create the hub's and every agency's ACLs (creating an existing ACL is a no-op)."""
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.kafka.bootstrap, **self.kafka.client_options(ADMIN))
        try:
            result = admin.create_acls(acls_for(self.parent_settings, self.agencies))
            if result.get("failed"):
                raise RuntimeError(f"creating ACLs failed: {result['failed'][:3]}")
        finally:
            admin.close()

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap

    def client_options(self, principal: str) -> dict[str, Any]:
        """kafka-python arguments to connect as ``principal``."""
        return self.kafka.client_options(principal)

    def hub_settings(self, **update: Any) -> Settings:
        """Settings of hub processes on this broker: SCRAM as ``hub``, password read from its file."""
        return self.parent_settings.model_copy(update={
            "kafka_host": self.kafka.node.host, "kafka_port": self.kafka.node.port,
            "kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": MECHANISM,
            "kafka_sasl_username": HUB, "kafka_sasl_password": SecretStr(self.kafka.credentials.password(HUB)), **update})


def acls_for(settings: Settings, agencies: list[str], principal_prefix: str = "") -> list[Any]:
    """The hub's ACLs and every agency's (principal = prefix + agency, e.g. ``agency-330502.zhzf`` in k8s)."""
    acls = hub_acls()
    for agency in agencies:
        acls += agency_acls(settings, agency, principal_prefix + agency)
    return acls


def main(argv: list[str] | None = None) -> int:
    """``python -m gridhub.infra.secure acls ...``: apply the ACLs to a production cluster.

    For deploy/k8s/kafka-acls.yaml (a Job run as ``admin`` after the brokers are up): every agency
    of the routing rules' catalog in ``--county`` gets READ on its dispatch topic and groups and
    WRITE on its own feedback topic; creating an existing ACL is a no-op, so the Job is re-runnable.
    """
    import argparse
    import ssl

    from kafka import KafkaAdminClient

    from gridhub.core.agencies import catalog_for_rules

    parser = argparse.ArgumentParser(prog="python -m gridhub.infra.secure")
    parser.add_argument("command", choices=["acls"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--county", action="append", default=[], help="counties whose agencies get ACLs")
    parser.add_argument("--principal-prefix", default="", help="SCRAM user = prefix + agency")
    parser.add_argument("--admin-user", default=ADMIN)
    parser.add_argument("--admin-password-file", required=True)
    parser.add_argument("--security-protocol", default="SASL_SSL")
    parser.add_argument("--cafile", default=None)
    args = parser.parse_args(argv)
    settings = Settings()
    agencies = catalog_for_rules(settings.routing_rules).dispatch_agencies(args.county or None)
    options: dict[str, Any] = {"security_protocol": args.security_protocol, "sasl_mechanism": MECHANISM,
                               "sasl_plain_username": args.admin_user,
                               "sasl_plain_password": Path(args.admin_password_file).read_text().strip()}
    if args.security_protocol.endswith("SSL"):
        options["ssl_context"] = ssl.create_default_context(cafile=args.cafile)
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap, **options)
    try:
        result = admin.create_acls(acls_for(settings, agencies, args.principal_prefix))
    finally:
        admin.close()
    failed = result.get("failed") or []
    print(f"{len(agencies)} agencies: {len(result.get('succeeded') or [])} ACLs applied, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
