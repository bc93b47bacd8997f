#!/usr/bin/env bash
# Idempotent set-up of a development or CI machine (Debian 12), run by `make setup`:
#   1. Debian packages, only those whose binaries are missing
#      (apt-get update only when the package lists are empty or an install fails);
#   2. the Python venv .venv with `pip install -e '.[dev]'` (again only when
#      pyproject.toml changed since the last install);
#   3. the Kafka broker jars from Maven Central (`gridhub infra install`).
# Works as root with no stdin (CI=true); as another user it uses sudo for apt.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive

have() { command -v "$1" >/dev/null 2>&1; }
any_file() { for f in "$@"; do [ -x "$f" ] && return 0; done; return 1; }

missing=()
any_file /usr/bin/clickhouse /usr/sbin/clickhouse-server /usr/bin/clickhouse-server || missing+=(clickhouse-server)
any_file /usr/sbin/mosquitto /usr/bin/mosquitto || missing+=(mosquitto)
have mosquitto_pub || missing+=(mosquitto-clients)
have chromium || missing+=(chromium)
# ZooKeeper for the local replicated ClickHouse (gridhub infra up --clickhouse-replicas 2), Prometheus +
# promtool for the scrape and alert-rule tests (tests/deploy/test_prometheus.py).
[ -f /usr/share/java/zookeeper.jar ] || missing+=(zookeeper)
{ have prometheus && have promtool; } || missing+=(prometheus)
# The analysts' report is Chinese: without a CJK font Chromium draws every character as a box
# (issue 19); its browser test reads the screenshot back with OCR (simplified Chinese).
fc-list :lang=zh 2>/dev/null | grep -q . || missing+=(fonts-noto-cjk)
have tesseract || missing+=(tesseract-ocr)
[ -f /usr/share/tesseract-ocr/5/tessdata/chi_sim.traineddata ] || [ -f /usr/share/tesseract-ocr/4.00/tessdata/chi_sim.traineddata ] \
    || missing+=(tesseract-ocr-chi-sim)
have java || missing+=(openjdk-17-jre-headless)
have mvn || missing+=(maven)
have make || missing+=(make)
have python3 || missing+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)

if [ ${#missing[@]} -gt 0 ]; then
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
    echo "setup: installing ${missing[*]}"
    if ! compgen -G "/var/lib/apt/lists/*_Packages" >/dev/null; then
        "${sudo[@]}" apt-get update -q
    fi
    if ! "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null; then
        "${sudo[@]}" apt-get update -q
        "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
    fi
fi

# Python 3.11 (pyproject: requires-python >=3.11,<3.12): Debian 12's python3 is 3.11.
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.gridhub-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -x .venv/bin/gridhub ]; then
    echo "setup: pip install -e '.[dev]'"
    .venv/bin/pip install -q --disable-pip-version-check --upgrade pip </dev/null
    .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]' </dev/null
    echo "$want" > "$stamp"
fi

# Kafka jars (Maven Central -> ~/.m2), classpath cached in the run dir.
.venv/bin/gridhub infra install
