#!/bin/sh
# Entrypoint of the local cluster's PostgreSQL image (Debian's postgresql-15): the part of the
# official image's contract that k8s-tests/manifests/postgres.yaml relies on. On an empty $PGDATA:
# initdb with the superuser "postgres" and $POSTGRES_PASSWORD (scram-sha-256 over TCP), then the
# *.sql files of /docker-entrypoint-initdb.d run once through psql over the Unix socket, before the
# server listens on TCP (so a TCP readiness check passes only after them). Then exec postgres "$@".
set -eu
: "${PGDATA:?PGDATA is not set}"
case "${1:-}" in
    -*) ;;                       # options only: they are the server's, as in the official image
    postgres|"") [ "$#" -gt 0 ] && shift ;;
    *) exec "$@" ;;
esac
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "docker-entrypoint: POSTGRES_PASSWORD is empty" >&2
        exit 1
    fi
    mkdir -p "$PGDATA"
    chmod 0700 "$PGDATA"
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb --username=postgres --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 -D "$PGDATA" >/dev/null
    rm -f "$pwfile"
    printf 'host all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
    for f in /docker-entrypoint-initdb.d/*.sql; do
        [ -e "$f" ] || continue
        echo "docker-entrypoint: running $f"
        psql -X -v ON_ERROR_STOP=1 --username=postgres --dbname=postgres -f "$f"
    done
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
fi
exec postgres -c listen_addresses='*' "$@"
