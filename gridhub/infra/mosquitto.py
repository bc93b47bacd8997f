"""Mosquitto (Debian's package) on loopback for the sensors' MQTT feed.

The config is rendered from ``deploy/mosquitto/mosquitto.conf.template``;
persistence and the log live under ``<run_dir>/mosquitto/``.
"""

from __future__ import annotations

import getpass
import threading
import uuid
from pathlib import Path
from typing import Any

from gridhub.infra.base import DEPLOY_DIR, LocalServer, render_template
from gridhub.infra.install import mosquitto_binary
from gridhub.core.settings import Settings


class MosquittoServer(LocalServer):
    name = "mosquitto"
    status_key = "mqtt"
    start_timeout = 30.0
    stop_timeout = 15.0

    def __init__(self, settings: Settings, name: str | None = None, port: int | None = None,
                 password_file: Path | None = None, certfile: Path | None = None,
                 keyfile: Path | None = None) -> None:
        super().__init__(settings, name)
        self.port = port or settings.mqtt_port
        #: mosquitto_passwd file: no anonymous clients (as deploy/k8s/mosquitto.yaml); the health check
        #: logs in with settings.mqtt_username / mqtt_password.
        self.password_file = password_file
        #: TLS on the listener (settings.mqtt_ca_file verifies it in the health check).
        self.certfile, self.keyfile = certfile, keyfile

    def _connect(self, client: Any) -> None:
        """Connect a paho client with the settings' login and TLS (the same as the MQTT bridge's)."""
        if self.settings.mqtt_username:
            client.username_pw_set(self.settings.mqtt_username, self.settings.mqtt_password or None)
        if self.settings.mqtt_tls:
            client.tls_set(ca_certs=self.settings.mqtt_ca_file or None)
        client.connect(self.host, self.port, keepalive=10)

    @property
    def host(self) -> str:
        return self.settings.mqtt_host

    def ports(self) -> list[int]:
        return [self.port]

    @property
    def config_file(self) -> Path:
        return self.home / "mosquitto.conf"

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        render_template(DEPLOY_DIR / "mosquitto" / "mosquitto.conf.template", self.config_file, {
            "host": self.host,
            "port": self.port,
            "data_dir": self.data_dir,
            "log_file": self.log_file,
            # Started as root, mosquitto 2 would switch to user "mosquitto", which
            # cannot write the run dir; keep whoever started it.
            "user": getpass.getuser(),
            "auth": (f"allow_anonymous false\npassword_file {self.password_file}" if self.password_file
                     else "allow_anonymous true"),
            "tls": (f"certfile {self.certfile}\nkeyfile {self.keyfile}" if self.certfile and self.keyfile else ""),
        })

    def command(self) -> list[str]:
        return [mosquitto_binary(), "-c", str(self.config_file)]

    def check(self) -> None:
        """Subscribe, publish (QoS 1) and receive a unique message."""
        import paho.mqtt.client as mqtt

        topic = f"gridhub/health/{uuid.uuid4().hex}"
        payload = uuid.uuid4().bytes
        got = threading.Event()
        subscribed = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"gridhub-health-{uuid.uuid4().hex[:8]}")
        client.on_subscribe = lambda *_args: subscribed.set()
        client.on_message = lambda _c, _u, msg: got.set() if msg.payload == payload else None
        self._connect(client)
        client.loop_start()
        try:
            client.subscribe(topic, qos=1)
            if not subscribed.wait(5):
                raise RuntimeError("mqtt subscribe not acknowledged")
            client.publish(topic, payload, qos=1)
            if not got.wait(5):
                raise RuntimeError("mqtt message published but not received")
        finally:
            client.disconnect()
            client.loop_stop()

    def version(self) -> str | None:
        """The version the running broker publishes (retained) on ``$SYS/broker/version``."""
        import paho.mqtt.client as mqtt

        answer: list[str] = []
        got = threading.Event()

        def on_message(_client: Any, _userdata: Any, msg: Any) -> None:
            answer.append(msg.payload.decode(errors="replace"))
            got.set()

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"gridhub-version-{uuid.uuid4().hex[:8]}")
        client.on_message = on_message
        try:
            self._connect(client)
            client.loop_start()
            client.subscribe("$SYS/broker/version", qos=0)
            got.wait(5)
        except OSError:
            return None
        finally:
            client.disconnect()
            client.loop_stop()
        # "mosquitto version 2.0.11" -> "2.0.11"
        return answer[0].rsplit(" ", 1)[-1] if answer else None

    def info(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port}
