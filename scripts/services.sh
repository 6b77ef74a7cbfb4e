#!/usr/bin/env bash
# Make sure the system tools and services the tests need are present on this machine; install or
# start what is missing. Used by `make test` (and so by CI). Idempotent and quiet when all is there.
#   - docker-compose (v1, Python): validates docker-compose.yml offline, no Docker engine needed
#   - iproute2: network namespaces for tests/e2e/test_network_cut.py
#   - chromium: headless browser for the dashboard end-to-end test (driven by Playwright)
#   - promtool (Debian's prometheus package): checks deploy/prometheus (config, alert rules, their
#     unit tests) and the Grafana dashboard's queries; the package's daemon is never started
#   - PostgreSQL on 127.0.0.1:5432 with a database `test` (turbofan data source tests)
#   - Mosquitto on 127.0.0.1:1883 (edge / MQTT tests)
set -uo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
APT_UPDATED=""
apt_install() {
  if [ "$(id -u)" -ne 0 ]; then echo "services: need root to install $*; install them yourself" >&2; return 1; fi
  [ -n "$APT_UPDATED" ] || { apt-get update -qq >/dev/null 2>&1; APT_UPDATED=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
}
wait_port() { for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.5; done; return 1; }

have docker-compose || apt_install docker-compose || echo "services: docker-compose unavailable" >&2
# iproute2 (`ip`): simulated hosts in network namespaces for the network-cut test (scripts/netns.sh)
have ip || apt_install iproute2 || echo "services: iproute2 unavailable (network-namespace tests will fail)" >&2
# Chromium for the dashboard's browser test (Playwright drives Debian's build; no browser download)
have chromium || apt_install chromium || echo "services: chromium unavailable" >&2
# promtool for tests/test_observability_kit.py; Debian has it only in `prometheus`, whose daemon we
# do not want: without a policy-rc.d (Debian's container images have one) a temporary one keeps the
# package from starting it
if ! have promtool; then
  own_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ] && [ "$(id -u)" -eq 0 ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
  fi
  apt_install --no-install-recommends prometheus || echo "services: promtool unavailable" >&2
  [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
fi

if ! port_open 5432; then
  have pg_ctlcluster || apt_install postgresql || echo "services: cannot install PostgreSQL" >&2
  if have pg_ctlcluster; then
    ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    [ -n "$ver" ] && pg_ctlcluster --skip-systemctl-redirect "$ver" main start >/dev/null 2>&1
  fi
  wait_port 5432 || echo "services: PostgreSQL is not reachable on 127.0.0.1:5432" >&2
fi
if port_open 5432 && have psql; then
  # trust auth on loopback is how these machines come; make sure the `test` database exists
  if ! psql -h 127.0.0.1 -U postgres -Atc "select 1 from pg_database where datname='test'" 2>/dev/null | grep -q 1; then
    su postgres -c "createdb test" >/dev/null 2>&1 || psql -h 127.0.0.1 -U postgres -c "create database test" >/dev/null 2>&1 || true
  fi
fi

# Mosquitto on 127.0.0.1:1883 (edge / MQTT tests); the binary is also used for private brokers
if ! have mosquitto || ! port_open 1883; then
  have mosquitto || apt_install mosquitto mosquitto-clients || echo "services: cannot install mosquitto" >&2
  if have mosquitto && ! port_open 1883; then
    mkdir -p /run/mosquitto /var/lib/mosquitto /var/log/mosquitto 2>/dev/null
    chown mosquitto: /run/mosquitto /var/lib/mosquitto /var/log/mosquitto 2>/dev/null || true
    if [ -f /etc/mosquitto/mosquitto.conf ]; then
      # Debian's file has no listener: mosquitto 2 then serves 1883 on loopback only, anonymously
      mosquitto -d -c /etc/mosquitto/mosquitto.conf >/dev/null 2>&1
    else
      mosquitto -d -p 1883 >/dev/null 2>&1
    fi
  fi
  wait_port 1883 || echo "services: Mosquitto is not reachable on 127.0.0.1:1883" >&2
fi

echo "services: ready"
