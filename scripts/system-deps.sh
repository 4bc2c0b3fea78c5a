#!/usr/bin/env bash
# System packages the tests use: PostgreSQL (Optuna RDB storage + heartbeats), Chromium (report in a
# real browser), Fashion-MNIST. Needs root and apt; elsewhere it says what is missing and goes on.
set -uo pipefail
need=()
command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need+=(dataset-fashion-mnist)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "note: not root: install ${need[*]} for the PostgreSQL, browser and Fashion-MNIST tests" >&2
  fi
fi
# Start PostgreSQL on 127.0.0.1 with a test role and database (idempotent).
if [ "$(id -u)" = 0 ] && command -v pg_ctlcluster >/dev/null 2>&1; then
  ver=$(ls /etc/postgresql 2>/dev/null | sort -n | tail -n1)
  if [ -n "$ver" ]; then
    pg_ctlcluster "$ver" main start 2>/dev/null || true
    su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='ddpm'\"" | grep -q 1 ||
      su postgres -c "psql -qc \"CREATE ROLE ddpm LOGIN PASSWORD 'ddpm-test-pw'\""
    su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='ddpm_test'\"" | grep -q 1 ||
      su postgres -c "createdb -O ddpm ddpm_test"
    echo "postgresql://ddpm:ddpm-test-pw@127.0.0.1:5432/ddpm_test" > .postgres-url
  fi
fi
exit 0
