#!/usr/bin/env bash
# Installs where missing, and starts, the servers memfold's test suite talks to on a Debian
# machine: PostgreSQL 15 with pgvector, and Redis 7. Where they already run it only checks them,
# creates the test database and `CREATE EXTENSION vector`, so a second run takes a second or two.
#
#   sudo scripts/services.sh       # as root it installs, builds and starts what is missing
#   scripts/services.sh            # as a user it checks, and says what to run if something is missing
#
# Servers, from the environment, with loopback defaults:
#   MEMFOLD_PG_URL     postgresql://postgres@127.0.0.1:5432/test  (a "+driver" suffix is ignored)
#   MEMFOLD_PG_DB      the database to create and set up; default: the one named in MEMFOLD_PG_URL
#   MEMFOLD_REDIS_URL  redis://127.0.0.1:6379/0
# A server that is not on this machine is only checked, never installed.
#
# Debian bookworm has no postgresql-15-pgvector package: where `apt-cache show` finds none, this
# builds Debian's own pgvector source package from the trixie suite (a temporary deb-src entry on
# the machine's own Debian mirror, removed again afterwards) against postgresql-server-dev-15.
set -euo pipefail

PG_URL=${MEMFOLD_PG_URL:-postgresql://postgres@127.0.0.1:5432/test}
REDIS_URL=${MEMFOLD_REDIS_URL:-redis://127.0.0.1:6379/0}
PG_VERSION=15 # the version installed where none is
SELF=${BASH_SOURCE[0]}
LOG=$(mktemp "${TMPDIR:-/tmp}/memfold-services.XXXXXX.log")
SRC_ENTRY=/etc/apt/sources.list.d/memfold-pgvector-src.sources
WORKDIR=
START=$(date +%s.%N)

export PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-5} DEBIAN_FRONTEND=noninteractive

cleanup() {
    local status=$?
    if [[ -e $SRC_ENTRY ]]; then
        rm -f "$SRC_ENTRY"
        apt-get update -qq >>"$LOG" 2>&1 || true
    fi
    [[ -n $WORKDIR ]] && rm -rf "$WORKDIR"
    if ((status == 0)); then
        rm -f "$LOG"
    elif [[ -s $LOG ]]; then
        echo "services: failed; the last lines of $LOG:" >&2
        tail -n 20 "$LOG" >&2
    fi
}
trap cleanup EXIT

die() {
    echo "$*" >&2
    exit 1
}

joined() { # its arguments, joined by ", "
    local IFS=$'\x1f' all
    all="$*"
    echo "${all//$'\x1f'/, }"
}

elapsed() { # seconds since $1 (default: the script's start), one decimal
    awk -v a="${1:-$START}" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'
}

is_root() { [[ $(id -u) -eq 0 ]]; }

# Says what to run when a user (not root) finds something missing, and stops.
need_root() { # $1: service, $2: what is missing, $3: the one command that would fix just that
    is_root && return 0
    die "$1: $2; run as root: sudo $SELF${3:+   (or only: sudo $3)}"
}

is_local() { [[ -z $1 || $1 == localhost || $1 == 127.* || $1 == ::1 || $1 == "[::1]" ]]; }

APT_UPDATED=0
apt_update() {
    if ((!APT_UPDATED)); then
        apt-get update -qq >>"$LOG" 2>&1
        APT_UPDATED=1
    fi
}

apt_install() {
    apt_update
    apt-get install -y -q --no-install-recommends "$@" >>"$LOG" 2>&1
}

# scheme(+driver)://[userinfo@]host[:port][/path][?query]
URL_RE='^([a-z]+)(\+[a-z0-9_]+)?://(([^@/?]*)@)?(\[[^]/]*\]|[^:/?]*)(:([0-9]+))?(/([^?]*))?(\?.*)?$'

[[ $PG_URL =~ $URL_RE ]] || die "postgresql: cannot parse MEMFOLD_PG_URL"
PG_USERINFO=${BASH_REMATCH[4]}
PG_HOST=${BASH_REMATCH[5]}
PG_PORT=${BASH_REMATCH[7]:-5432}
PG_PORT_PART=${BASH_REMATCH[6]}
PG_DB=${MEMFOLD_PG_DB:-${BASH_REMATCH[9]:-test}}
PG_QUERY=${BASH_REMATCH[10]}
[[ $PG_DB =~ ^[A-Za-z0-9_]+$ ]] || die "postgresql: database name '$PG_DB' must be letters, digits and _"
pg_url() { echo "postgresql://${PG_USERINFO:+$PG_USERINFO@}$PG_HOST$PG_PORT_PART/$1$PG_QUERY"; }
PG_ADMIN_URL=$(pg_url postgres)
PG_DB_URL=$(pg_url "$PG_DB")
PG_WHERE="${PG_HOST:-local socket}:$PG_PORT"

[[ $REDIS_URL =~ $URL_RE ]] || die "redis: cannot parse MEMFOLD_REDIS_URL"
REDIS_HOST=${BASH_REMATCH[5]:-127.0.0.1}
REDIS_PORT=${BASH_REMATCH[7]:-6379}
REDIS_WHERE="$REDIS_HOST:$REDIS_PORT"

psql_at() { # $1: url, then psql arguments; prints unaligned, tuples only
    local url=$1
    shift
    psql -X -q -At -v ON_ERROR_STOP=1 -d "$url" "$@"
}

pg_ready() { command -v pg_isready >/dev/null && pg_isready -q -d "$PG_ADMIN_URL"; }

# --- PostgreSQL ------------------------------------------------------------------------------
postgresql() {
    local did=() cluster=main ver=$PG_VERSION hba
    if pg_ready; then
        did+=("running")
    else
        is_local "$PG_HOST" || die "postgresql: nothing answers at $PG_WHERE, which is not this machine"
        if [[ ! -x /usr/lib/postgresql/$ver/bin/postgres ]]; then
            need_root postgresql "PostgreSQL $ver is not installed" \
                "apt-get install -y postgresql-$ver postgresql-server-dev-$ver"
            apt_install "postgresql-$ver" "postgresql-server-dev-$ver"
            did+=("installed postgresql-$ver")
            if [[ ! -d /etc/postgresql/$ver/$cluster ]]; then
                pg_createcluster -p "$PG_PORT" "$ver" "$cluster" >>"$LOG" 2>&1
            fi
            # A fresh cluster serves on MEMFOLD_PG_URL's port and trusts loopback, for local tests
            # only. An existing cluster's configuration is never touched.
            sed -i -E "s/^[#[:space:]]*port[[:space:]]*=[[:space:]]*[0-9]+/port = $PG_PORT/" \
                "/etc/postgresql/$ver/$cluster/postgresql.conf"
            hba=/etc/postgresql/$ver/$cluster/pg_hba.conf
            if ! grep -q '^# memfold:' "$hba"; then
                sed -i '1i # memfold: trust on loopback, for local tests (scripts/services.sh)\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
            fi
            did+=("trust on loopback")
        fi
        if [[ ! -d /etc/postgresql/$ver/$cluster ]]; then
            need_root postgresql "PostgreSQL $ver has no cluster" "pg_createcluster $ver $cluster"
            pg_createcluster -p "$PG_PORT" "$ver" "$cluster" >>"$LOG" 2>&1
        fi
        need_root postgresql "not running at $PG_WHERE" \
            "pg_ctlcluster --skip-systemctl-redirect $ver $cluster start"
        pg_ctlcluster --skip-systemctl-redirect "$ver" "$cluster" start >>"$LOG" 2>&1 || true
        for _ in $(seq 60); do
            pg_ready && break
            sleep 0.5
        done
        pg_ready || die "postgresql: started cluster $ver/$cluster, but nothing answers at $PG_WHERE"
        did+=("started")
    fi
    PG_SERVER=$(psql_at "$PG_ADMIN_URL" -c 'SHOW server_version') ||
        die "postgresql: answers at $PG_WHERE but refuses the connection (MEMFOLD_PG_URL)"
    if [[ -z $(psql_at "$PG_ADMIN_URL" -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'") ]]; then
        psql_at "$PG_ADMIN_URL" -c "CREATE DATABASE \"$PG_DB\"" >>"$LOG" 2>&1
        did+=("created database $PG_DB")
    else
        did+=("database $PG_DB present")
    fi
    echo "postgresql: ${PG_SERVER%% *} at $PG_WHERE: $(joined "${did[@]}")"
}

# --- pgvector --------------------------------------------------------------------------------
debian_mirror() { # the machine's own Debian mirror, as its apt sources name it
    local uri
    uri=$({
        grep -hsE '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources |
            sed -E 's/^[[:space:]]*URIs:[[:space:]]*//' | tr ' ' '\n'
        grep -hsE '^[[:space:]]*deb(-src)?[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
            sed -E 's/^[[:space:]]*deb(-src)?[[:space:]]+(\[[^]]*\][[:space:]]+)?//' | awk '{ print $1 }'
    } | grep -E '/debian/?$' | grep -v security | head -n 1) || true
    echo "${uri:-http://deb.debian.org/debian}"
}

build_pgvector() { # $1: PostgreSQL major version
    local major=$1 pg_config=/usr/lib/postgresql/$1/bin/pg_config mirror keyring src t0
    t0=$(date +%s.%N)
    # pg_config and pgxs.mk come with the client; the server headers with postgresql-server-dev.
    if [[ ! -f /usr/include/postgresql/$major/server/postgres.h ]]; then
        apt_install "postgresql-server-dev-$major"
    fi
    if ! command -v make >/dev/null || ! command -v gcc >/dev/null || ! command -v dpkg-source >/dev/null; then
        apt_install build-essential dpkg-dev
    fi
    mirror=$(debian_mirror)
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    {
        echo "# memfold: temporary, for pgvector's source (scripts/services.sh removes it)"
        echo "Types: deb-src"
        echo "URIs: $mirror"
        echo "Suites: trixie"
        echo "Components: main"
        [[ -f $keyring ]] && echo "Signed-By: $keyring"
    } >"$SRC_ENTRY"
    apt-get update -qq >>"$LOG" 2>&1
    WORKDIR=$(mktemp -d)
    (cd "$WORKDIR" && apt-get source -q pgvector) >>"$LOG" 2>&1
    rm -f "$SRC_ENTRY"
    apt-get update -qq >>"$LOG" 2>&1
    src=$(find "$WORKDIR" -mindepth 1 -maxdepth 1 -type d -name 'pgvector-*' | head -n 1)
    [[ -n $src ]] || die "pgvector: apt-get source pgvector unpacked nothing"
    make -C "$src" -j "$(nproc)" PG_CONFIG="$pg_config" >>"$LOG" 2>&1
    make -C "$src" PG_CONFIG="$pg_config" install >>"$LOG" 2>&1
    BUILT="built Debian's pgvector $(basename "$src" | sed 's/^pgvector-//') from trixie source in $(elapsed "$t0") s"
}

pgvector() {
    local did major version
    if [[ -n $(psql_at "$PG_DB_URL" -c "SELECT 1 FROM pg_extension WHERE extname = 'vector'") ]]; then
        did="present"
    elif psql_at "$PG_DB_URL" -c 'CREATE EXTENSION IF NOT EXISTS vector' >>"$LOG" 2>&1; then
        did="created the extension"
    else
        is_local "$PG_HOST" || die "pgvector: CREATE EXTENSION vector fails at $PG_WHERE, which is not this machine; see $LOG"
        major=$(psql_at "$PG_ADMIN_URL" -c 'SHOW server_version_num')
        major=$((major / 10000))
        need_root pgvector "the vector extension is not installed for PostgreSQL $major"
        apt_update
        if apt-cache show "postgresql-$major-pgvector" >/dev/null 2>&1; then
            apt_install "postgresql-$major-pgvector"
            BUILT="installed postgresql-$major-pgvector"
        else
            build_pgvector "$major"
        fi
        psql_at "$PG_DB_URL" -c 'CREATE EXTENSION IF NOT EXISTS vector' >>"$LOG" 2>&1
        did="$BUILT; created the extension"
    fi
    version=$(psql_at "$PG_DB_URL" -c "SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    echo "pgvector: vector $version in database $PG_DB: $did"
}

# --- Redis -----------------------------------------------------------------------------------
redis_ready() {
    command -v redis-cli >/dev/null &&
        [[ $(redis-cli -u "$REDIS_URL" ping 2>/dev/null) == PONG ]]
}

redis() {
    local did=() start version
    start="redis-server --daemonize yes --bind 127.0.0.1 -::1 --port $REDIS_PORT --save '' --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log"
    if redis_ready; then
        did+=("running")
    else
        is_local "$REDIS_HOST" || die "redis: nothing answers at $REDIS_WHERE, which is not this machine"
        if ! command -v redis-server >/dev/null; then
            need_root redis "Redis is not installed" "apt-get install -y redis-server"
            apt_install redis-server
            did+=("installed redis-server")
        fi
        if ! redis_ready; then # a package install may have started it
            need_root redis "not running at $REDIS_WHERE" "$start"
            mkdir -p /var/lib/redis /var/log/redis
            redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" \
                --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log >>"$LOG" 2>&1
            for _ in $(seq 40); do
                redis_ready && break
                sleep 0.25
            done
            redis_ready || die "redis: started redis-server, but nothing answers at $REDIS_WHERE"
            did+=("started")
        fi
    fi
    version=$(redis-cli -u "$REDIS_URL" info server 2>/dev/null | sed -n 's/^redis_version:\([^[:space:]]*\).*/\1/p')
    echo "redis: $version at $REDIS_WHERE: $(joined "${did[@]}")"
}

postgresql
pgvector
redis
echo "services: ready in $(elapsed) s"
