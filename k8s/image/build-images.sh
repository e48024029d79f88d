#!/usr/bin/env bash
# Builds the images the local test cluster runs, without pulling anything from a registry:
#   langgraph-pg-base:bookworm      debootstrap --variant=minbase bookworm + python3, python3-venv
#   langgraph-pg-postgres:15        debootstrap bookworm + Debian's postgresql-15, with an entrypoint
#                                   that honours what k8s-tests/manifests/postgres.yaml uses of the
#                                   official image (POSTGRES_PASSWORD, PGDATA, /docker-entrypoint-initdb.d)
#   registry.k8s.io/pause:3.10      pause.c from the Kubernetes module source, built with gcc -static
#   $K8S_TEST_IMAGE                 the repository's Dockerfile FROM langgraph-pg-base:bookworm
# The debootstrap roots are cached by name under $IMAGE_CACHE (made once per machine); the project
# image is rebuilt every time (docker's layer cache keeps that short).
# Needs: debootstrap, docker (a daemon on $DOCKER_HOST), gcc with a static libc, go (for the
# Kubernetes module source of pause.c). Prints nothing but progress on stderr.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
IMAGE_CACHE="${IMAGE_CACHE:-/var/cache/langgraph-pg/images}"
K8S_TEST_IMAGE="${K8S_TEST_IMAGE:-langgraph-pg:k8s-test}"
PAUSE_IMAGE="${PAUSE_IMAGE:-registry.k8s.io/pause:3.10}"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
log() { echo "build-images: $*" >&2; }

DOCKER="${DOCKER:-docker}"
for tool in debootstrap "$DOCKER" gcc; do
    command -v "$tool" >/dev/null || { echo "build-images: '$tool' is needed" >&2; exit 2; }
done

# The Debian mirror the system's own apt sources name (deb822 or one-line format).
mirror="$(sed -n 's/^URIs: *\(\S*debian\)\/\?$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)"
if [ -z "$mirror" ]; then
    mirror="$(awk '$1 == "deb" && $2 ~ /debian\/?$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
fi
mirror="${mirror:-http://deb.debian.org/debian}"

rootfs() {  # rootfs NAME PACKAGES: a cached debootstrap tree
    local name="$1" packages="$2" dir="$IMAGE_CACHE/$1"
    if [ ! -f "$dir/.complete" ]; then
        log "debootstrap $name ($packages) from $mirror"
        rm -rf "$dir.partial"
        nice -n 10 debootstrap --variant=minbase --include="$packages" bookworm "$dir.partial" "$mirror" >&2
        rm -rf "$dir.partial"/var/cache/apt/archives/*.deb "$dir.partial"/var/lib/apt/lists/*
        rm -rf "$dir"
        mv "$dir.partial" "$dir"
        touch "$dir/.complete"
    fi
}

import() {  # import DIR NAME [--change ...]: once per content (a new image ID would void the build cache)
    local dir="$1" name="$2"; shift 2
    local key stamp="$IMAGE_CACHE/.imported-${name//[^A-Za-z0-9.-]/_}"
    key="$( (stat -c %Y "$dir/.complete" 2>/dev/null || echo none; printf '%s\n' "$@";
             find "$dir/usr/local/bin" "$dir/etc/pip.conf" "$dir/etc/ssl/certs/ca-certificates.crt" -type f -exec sha256sum {} + 2>/dev/null || true) | sha256sum)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ] && "$DOCKER" image inspect "$name" >/dev/null 2>&1; then
        return
    fi
    tar --numeric-owner --exclude=./.complete -C "$dir" -c . | "$DOCKER" import "$@" - "$name" >/dev/null
    echo "$key" > "$stamp"
    log "imported $name"
}

# --- the Python base ---------------------------------------------------------------------------
rootfs bookworm-python "python3,python3-venv,ca-certificates"
# The Dockerfile's build stage fetches wheels from the package index through whatever TLS trust
# this host has (a host behind a TLS-inspecting proxy has its CA in its own bundle): this base,
# made for local builds only, trusts what the host trusts, and its pip uses that bundle.
if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
    cp /etc/ssl/certs/ca-certificates.crt "$IMAGE_CACHE/bookworm-python/etc/ssl/certs/ca-certificates.crt"
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$IMAGE_CACHE/bookworm-python/etc/pip.conf"
fi
import "$IMAGE_CACHE/bookworm-python" langgraph-pg-base:bookworm \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' --change 'CMD ["python3"]'

# --- PostgreSQL --------------------------------------------------------------------------------
pg="$IMAGE_CACHE/bookworm-postgresql-15"
if [ ! -f "$pg/.complete" ]; then
    rootfs bookworm-postgresql-15 "postgresql-15"
    # The package's default cluster is not wanted (the entrypoint makes one in PGDATA), and the
    # manifest runs as uid/gid 999, as the official image's postgres user is.
    chroot "$pg" sh -ec 'pg_dropcluster 15 main 2>/dev/null || true
        groupmod -g 999 postgres && usermod -u 999 -g 999 postgres
        chown -R 999:999 /var/lib/postgresql /var/run/postgresql /var/log/postgresql'
fi
install -m 0755 "$here/postgres-entrypoint.sh" "$pg/usr/local/bin/docker-entrypoint.sh"
import "$pg" langgraph-pg-postgres:15 \
    --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV PGDATA=/var/lib/postgresql/data' \
    --change 'USER 999' \
    --change 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
    --change 'CMD ["postgres"]'

# --- pause -------------------------------------------------------------------------------------
k8s_version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v1\./ {print $2; exit}' "$repo/k8s/build/go.mod")"
src="$(cd "$repo/k8s/build" && "$GO" mod download -json "k8s.io/kubernetes@$k8s_version" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
pause_dir="$IMAGE_CACHE/pause-$k8s_version"
if [ ! -f "$pause_dir/.complete" ]; then
    mkdir -p "$pause_dir/usr/local/bin"
    gcc -Os -static -o "$pause_dir/pause" "$src/build/pause/linux/pause.c"
    strip "$pause_dir/pause"
    touch "$pause_dir/.complete"
fi
import "$pause_dir" "$PAUSE_IMAGE" --change 'ENTRYPOINT ["/pause"]'

# --- the project image, on the debootstrap base --------------------------------------------------
log "docker build $K8S_TEST_IMAGE FROM langgraph-pg-base:bookworm"
DOCKER_BUILDKIT=0 "$DOCKER" build --network host --build-arg PYTHON_IMAGE=langgraph-pg-base:bookworm \
    --tag "$K8S_TEST_IMAGE" "$repo" >&2
