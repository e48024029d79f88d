# skaffold's `local` profile (skaffold.yaml, docs/kubernetes.md): the PostgreSQL of
# k8s-tests/manifests/postgres.yaml as k8s/image/build-images.sh makes it (Debian's postgresql-15 on
# a debootstrap base, already in the private dockerd after `make cluster`), built as the artifact
# "postgres" so that skaffold puts its own tag in place of the manifest's postgres:16.4-bookworm,
# which cannot be pulled here. Nothing is pulled: the base is a local image.
ARG BASE=langgraph-pg-postgres:15
FROM ${BASE}
