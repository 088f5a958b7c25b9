#!/usr/bin/env bash
# Local stand-ins for the registry images the Dockerfile and docker-compose.yml name, for a machine
# where no container registry can be reached (only a Debian mirror and PyPI). bin/test-deploy runs it
# for the images podman does not have yet; a Docker user with registry access needs none of this.
#   docker.io/library/python:3.11-slim-bookworm  <- Debian bookworm python3 (3.11) + venv + pip
#   docker.io/library/postgres:16-alpine         <- Debian bookworm postgresql-15 (!) + an entrypoint
#                                                   that initialises from POSTGRES_* like the official one
#   docker.io/library/redis:7-alpine             <- Debian bookworm redis-server 7.0 + redis-cli
#   docker.io/library/caddy:2-alpine             <- Debian bookworm caddy 2.6 run like the official image
# Each is a debootstrap'ed bookworm rootfs (from this machine's own apt mirror) plus packages, imported
# with `podman import` under the official name, so podman/podman-compose find it locally and never pull.
#
# Machine-specific: the host's extra CA certificates (/usr/local/share/ca-certificates/*.crt, if any)
# are copied into the python image so that pip inside `podman build` trusts what the host's pip
# trusts; PIP_CERT points at that store.
#
# usage: deploy/podman/base-images.sh [python] [redis] [postgres] [caddy]   (default: all four)
#        deploy/podman/base-images.sh --version   (the label each stand-in carries: LABEL=VERSION)
# Needs root, debootstrap and podman (apt-get install -y debootstrap podman runc).
set -euo pipefail

# Bumped whenever a stand-in changes; bin/test-deploy rebuilds an image whose label differs.
STANDIN_LABEL=org.accesscontrol.standin
STANDIN_VERSION=2
if [ "${1:-}" = --version ]; then echo "$STANDIN_LABEL=$STANDIN_VERSION"; exit 0; fi

mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
root=${ROOTFS_DIR:-/var/tmp/podman-base-rootfs}
base=$root/base
mkdir -p "$root"

if [ ! -x "$base/bin/sh" ]; then
  echo "debootstrap bookworm from $mirror -> $base (log: $root/debootstrap.log)"
  rm -rf "$base"
  debootstrap --variant=minbase bookworm "$base" "$mirror" >"$root/debootstrap.log" 2>&1
  # the same apt sources as the host (and as the official Debian images): bookworm, -updates, -security
  rm -f "$base/etc/apt/sources.list"
  cp /etc/apt/sources.list.d/debian.sources "$base/etc/apt/sources.list.d/debian.sources"
fi

chroot_run() {  # dir, shell command
  local dir=$1; shift
  mount -t proc proc "$dir/proc"
  local rc=0
  chroot "$dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 /bin/sh -ec "$*" || rc=$?
  umount "$dir/proc"
  return $rc
}

# build NAME PACKAGES... ; then the caller-supplied setup function `setup_NAME DIR` runs, then import
# with the --change lines in the array `changes`.
build() {
  local name=$1; shift
  local dir=$root/$name
  rm -rf "$dir" && cp -a "$base" "$dir"
  cp /etc/resolv.conf "$dir/etc/resolv.conf"
  printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"; chmod +x "$dir/usr/sbin/policy-rc.d"
  # As Debian's -slim images: no documentation, manual pages or translations of the packages.
  mkdir -p "$dir/etc/dpkg/dpkg.cfg.d"
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/groff/*' 'path-exclude /usr/share/info/*' \
    'path-exclude /usr/share/lintian/*' 'path-exclude /usr/share/linda/*' 'path-exclude /usr/share/locale/*' \
    >"$dir/etc/dpkg/dpkg.cfg.d/slim"
  find "$dir/usr/share/doc" -type f ! -name copyright -delete 2>/dev/null || true
  rm -rf "$dir"/usr/share/man/* "$dir"/usr/share/info/* "$dir"/usr/share/locale/* "$dir"/usr/share/groff/*
  "pre_$name" "$dir"
  chroot_run "$dir" "apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $* >/dev/null"
  "setup_$name" "$dir"
  chroot_run "$dir" "apt-get clean; rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log"
  rm -f "$dir/usr/sbin/policy-rc.d" "$dir/etc/resolv.conf"
  : >"$dir/etc/resolv.conf"
  local args=(--change "LABEL $STANDIN_LABEL=$STANDIN_VERSION")
  for c in "${changes[@]}"; do args+=(--change "$c"); done
  tar -C "$dir" --exclude=./proc/* --exclude=./sys/* -c . | podman import "${args[@]}" - "$tag" >/dev/null
  echo "built $tag ($(podman image inspect --format '{{.Size}}' "$tag" | numfmt --to=iec))"
}

# ---------------------------------------------------------------- python:3.11-slim-bookworm
pre_python() { :; }
setup_python() {
  local dir=$1
  # the host's extra CA certificates, so pip inside `podman build` trusts what the host's pip trusts
  cp /usr/local/share/ca-certificates/*.crt "$dir/usr/local/share/ca-certificates/" 2>/dev/null || true
  chroot_run "$dir" "update-ca-certificates >/dev/null"
}

# ---------------------------------------------------------------- redis:7-alpine
pre_redis() { :; }
setup_redis() {
  local dir=$1
  mkdir -p "$dir/data"
  cat >"$dir/usr/local/bin/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
# Stand-in for the official redis image's entrypoint: `redis-server ARGS` runs as the redis user in
# /data, protected mode off (the official image compiles it off).
set -e
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then set -- redis-server "$@"; fi
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
  find . \! -user redis -exec chown redis '{}' +
  exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
if [ "$1" = redis-server ]; then
  case " $* " in *" --protected-mode "*) ;; *) set -- "$@" --protected-mode no ;; esac
fi
exec "$@"
EOF
  chmod +x "$dir/usr/local/bin/docker-entrypoint.sh"
  chroot_run "$dir" "chown redis:redis /data"
}

# ---------------------------------------------------------------- postgres:16-alpine (postgresql-15)
pre_postgres() {
  local dir=$1
  # no "main" cluster from the package's postinst: the entrypoint initialises PGDATA itself
  mkdir -p "$dir/etc/postgresql-common"
  echo "create_main_cluster = false" >"$dir/etc/postgresql-common/createcluster.conf"
}
setup_postgres() {
  local dir=$1
  cat >"$dir/usr/local/bin/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
# Stand-in for the official postgres image's entrypoint: on an empty $PGDATA run initdb with
# POSTGRES_USER (superuser) / POSTGRES_PASSWORD, create POSTGRES_DB, listen on all addresses with
# scram-sha-256 for the network (trust on the local socket), then run postgres as the postgres user.
set -e
export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
if [ "${1#-}" != "$1" ]; then set -- postgres "$@"; fi
if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown -R postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"; chmod 2775 /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
  user="${POSTGRES_USER:-postgres}"; db="${POSTGRES_DB:-$user}"
  pwfile=$(mktemp); printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb -D "$PGDATA" --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
         --encoding=UTF8 --locale=C.UTF-8
  rm -f "$pwfile"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
  if [ "$db" != postgres ]; then
    psql -v ON_ERROR_STOP=1 --username "$user" --dbname postgres -c "CREATE DATABASE \"$db\""
  fi
  # As the official image does: *.sh run (sourced when not executable), *.sql fed to psql, in order,
  # against the temporary socket-only server (docker-compose.yml mounts deploy/postgres here).
  export POSTGRES_USER="$user" POSTGRES_DB="$db"
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) echo "running $f"; if [ -x "$f" ]; then "$f"; else . "$f"; fi ;;
      *.sql) echo "running $f"; psql -v ON_ERROR_STOP=1 --username "$user" --dbname "$db" -f "$f" ;;
      *) [ -e "$f" ] && echo "ignoring $f" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop
  echo "PostgreSQL init process complete; ready for start up."
fi
exec "$@"
EOF
  chmod +x "$dir/usr/local/bin/docker-entrypoint.sh"
  mkdir -p "$dir/var/lib/postgresql/data"
  chroot_run "$dir" "chown -R postgres:postgres /var/lib/postgresql && chmod 700 /var/lib/postgresql/data"
}

# ---------------------------------------------------------------- caddy:2-alpine (caddy 2.6)
pre_caddy() { :; }
setup_caddy() {
  local dir=$1
  # The official image's layout: config in /etc/caddy, state (the local CA, certificates) in /data.
  mkdir -p "$dir/etc/caddy" "$dir/config" "$dir/data" "$dir/srv"
}

std_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
for want in ${@:-python redis postgres caddy}; do
  case $want in
    python)
      tag=docker.io/library/python:3.11-slim-bookworm
      changes=("ENV PATH=$std_path" "ENV LANG=C.UTF-8"
               "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt"
               'CMD ["python3"]')
      build python python3 python3-venv python3-pip python-is-python3 ca-certificates netbase tzdata ;;
    redis)
      tag=docker.io/library/redis:7-alpine
      changes=("ENV PATH=$std_path" "WORKDIR /data" "VOLUME /data" "EXPOSE 6379"
               'ENTRYPOINT ["docker-entrypoint.sh"]' 'CMD ["redis-server"]')
      build redis redis-server redis-tools ;;
    postgres)
      tag=docker.io/library/postgres:16-alpine
      changes=("ENV PATH=/usr/lib/postgresql/15/bin:$std_path" "ENV LANG=C.UTF-8"
               "ENV PGDATA=/var/lib/postgresql/data" "VOLUME /var/lib/postgresql/data"
               "STOPSIGNAL SIGINT" "EXPOSE 5432"
               'ENTRYPOINT ["docker-entrypoint.sh"]' 'CMD ["postgres"]')
      build postgres postgresql-15 ;;
    caddy)
      tag=docker.io/library/caddy:2-alpine
      changes=("ENV PATH=$std_path" "ENV XDG_CONFIG_HOME=/config" "ENV XDG_DATA_HOME=/data"
               "VOLUME /config" "VOLUME /data" "WORKDIR /srv" "EXPOSE 80" "EXPOSE 443"
               'CMD ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]')
      build caddy caddy ca-certificates ;;
    *) echo "unknown image: $want" >&2; exit 2 ;;
  esac
done
