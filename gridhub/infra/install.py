"""Installs what the local servers need, only when it is missing.

* Debian packages (``clickhouse-server``, ``mosquitto``, a Java 17 runtime,
  ``maven``) through ``apt-get``, when their binaries are not on the machine
  (``apt-get update`` only if the first install attempt fails, so a machine
  with fresh package lists never waits for it).
* The Kafka broker jars, resolved by Maven from ``deploy/kafka/pom.xml``
  into ``~/.m2``; the resulting classpath is cached in the run dir, keyed by
  the pom's hash, so the second ``gridhub infra up`` starts no Maven at all.

``deploy/setup.sh`` calls the same code through ``gridhub infra install``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from gridhub.infra.base import DEPLOY_DIR, InfraError
from gridhub.core.logging import get_logger
from gridhub.core.settings import Settings

log = get_logger(__name__)

POM = DEPLOY_DIR / "kafka" / "pom.xml"

#: Debian package -> binaries any one of which proves it is installed.
PACKAGES: dict[str, tuple[str, ...]] = {
    "clickhouse-server": ("/usr/bin/clickhouse", "/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"),
    "mosquitto": ("/usr/sbin/mosquitto", "/usr/bin/mosquitto"),
    "openjdk-17-jre-headless": ("java",),
    "maven": ("mvn",),
}


def _present(candidates: tuple[str, ...]) -> bool:
    return any(Path(c).exists() if c.startswith("/") else shutil.which(c) for c in candidates)


def missing_packages() -> list[str]:
    return [pkg for pkg, bins in PACKAGES.items() if not _present(bins)]


def ensure_packages() -> list[str]:
    """Install the missing Debian packages; returns what was installed."""
    missing = missing_packages()
    if not missing:
        return []
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise InfraError("install", f"missing packages {' '.join(missing)}: install them with "
                                    f"`sudo apt-get install {' '.join(missing)}` (or run deploy/setup.sh as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    log.info("apt_install", packages=missing)
    if subprocess.run(install, env=env, stdin=subprocess.DEVNULL).returncode != 0:
        # Stale or empty package lists are the usual reason: refresh once and retry.
        subprocess.run(["apt-get", "update"], env=env, stdin=subprocess.DEVNULL, check=False)
        if subprocess.run(install, env=env, stdin=subprocess.DEVNULL).returncode != 0:
            raise InfraError("install", f"apt-get install {' '.join(missing)} failed")
    return missing


def clickhouse_binary() -> list[str]:
    """The command prefix that runs the ClickHouse server of Debian's package."""
    if Path("/usr/bin/clickhouse").exists():
        return ["/usr/bin/clickhouse", "server"]
    for candidate in ("/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"):
        if Path(candidate).exists():
            return [candidate]
    found = shutil.which("clickhouse-server")
    if found:
        return [found]
    raise InfraError("clickhouse", "clickhouse-server is not installed (run `gridhub infra install`)")


def mosquitto_binary() -> str:
    for candidate in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto"):
        if Path(candidate).exists():
            return candidate
    found = shutil.which("mosquitto")
    if found:
        return found
    raise InfraError("mosquitto", "mosquitto is not installed (run `gridhub infra install`)")


def _classpath_cache(settings: Settings) -> Path:
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
    return Path(settings.run_dir).resolve() / "cache" / f"kafka-{settings.kafka_version}-classpath-{digest}.txt"


def kafka_classpath(settings: Settings, progress: Callable[[str], None] | None = None) -> str:
    """The broker's Java classpath, resolving the jars with Maven when not cached."""
    cache = _classpath_cache(settings)
    if cache.exists():
        classpath = cache.read_text().strip()
        if classpath and all(Path(jar).exists() for jar in classpath.split(os.pathsep)):
            return classpath
    if not shutil.which("mvn"):
        raise InfraError("kafka", "maven (mvn) is not installed (run `gridhub infra install`)")
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    log.debug("kafka_jars_resolve", pom=str(POM))
    if progress:
        progress(f"resolving jars with mvn from {POM.relative_to(DEPLOY_DIR.parent)}")
    result = subprocess.run(
        ["mvn", "-B", "-q", "-Dstyle.color=never", "-f", str(POM), "dependency:build-classpath",
         f"-Dkafka.version={settings.kafka_version}", f"-Dmdep.outputFile={tmp}"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0 or not tmp.exists():
        raise InfraError("kafka", "resolving the Kafka jars with mvn failed",
                         detail=(result.stdout + result.stderr)[-3000:])
    tmp.replace(cache)
    return cache.read_text().strip()


def install(settings: Settings, progress: Callable[[str], None] | None = None) -> list[str]:
    """Everything ``up`` needs: Debian packages, then the Kafka jars."""
    missing = missing_packages()
    if missing and progress:
        progress(f"installing {' '.join(missing)} with apt-get")
    installed = ensure_packages()
    kafka_classpath(settings, progress)
    return installed
