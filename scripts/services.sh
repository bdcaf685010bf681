# shellcheck shell=bash
# Sourced by scripts/test after scripts/venv.sh (which defines `say`), not run: bring up
# what the marked tests need, where this machine allows.
#
# mongars_test_services SERVICE... (postgres, redis, chromium) starts a PostgreSQL or
# Redis that is installed but down, installs a missing one and Chromium with apt-get
# when running as root, and waits until they answer. A service it cannot bring up
# gets one line on stderr, and `name=reason` in MONGARS_TEST_UNAVAILABLE, which
# tests/conftest.py reads to skip those tests with that reason (in CI too).
# MONGARS_TEST_POSTGRES_URL or MONGARS_TEST_REDIS_URL naming another machine leaves
# that service alone; MONGARS_TEST_SERVICES=no leaves all of them alone. apt-get's
# output goes to .venv/services.log.
#
# A PostgreSQL it installs gets a role for the tests alone (mongars_test: LOGIN
# CREATEDB, not a superuser) and the URL is exported pointing at it. A Redis it starts
# listens on 127.0.0.1 only, with a random password in the exported URL, as the redis
# user when run as root, and mongars_stop_test_services shuts it down.

MONGARS_SERVICES_LOG=.venv/services.log
MONGARS_CHROMIUM=/usr/bin/chromium
MONGARS_POSTGRES_ROLE=mongars_test
MONGARS_STARTED_REDIS=() # port, password and log folder of the Redis this shell started

# mongars_url_parts URL DEFAULT_PORT: set url_user, url_password, url_host, url_port and
# url_name (the path without its slash: a database name or number) from
# scheme://user:password@host:port/name.
mongars_url_parts() {
  local rest=${1#*://} address credentials=
  url_name=${rest#*/}
  [ "$url_name" = "$rest" ] && url_name=
  url_name=${url_name%%\?*}
  address=${rest%%/*}
  case $address in *@*) credentials=${address%@*} ;; esac
  url_user=${credentials%%:*}
  url_password=
  case $credentials in *:*) url_password=${credentials#*:} ;; esac
  address=${address##*@}
  url_port=$2
  case $address in
    \[*\]:*) url_port=${address##*]:} ;;
    \[*) ;;
    *:*) url_port=${address##*:} address=${address%:*} ;;
  esac
  url_host=${address%%]*}
  url_host=${url_host#[}
}

# mongars_host_sane SETTING: false, with the reason, unless url_host is a plain host name
# or address (it is printed, and used in commands).
mongars_host_sane() {
  [[ $url_host =~ ^[A-Za-z0-9._:-]+$ ]] && return 0
  reason="$1 names a host with characters other than letters, digits and ._:-"
  return 1
}

# mongars_url_sane SETTING NAME_PATTERN: false, with the reason, unless url_port is a port
# and url_user and url_name (matching NAME_PATTERN) are plain names: they go into
# commands, SQL and a sed script, where anything else could run commands.
mongars_url_sane() {
  if [[ ! $url_port =~ ^[0-9]{1,5}$ ]] || ((10#$url_port < 1 || 10#$url_port > 65535)); then
    reason="$1 has a port that is not a number from 1 to 65535"
  elif [[ ! $url_user =~ ^[A-Za-z0-9_]*$ ]]; then
    reason="$1 has a user name with characters other than letters, digits and _"
  elif [[ ! $url_name =~ $2 ]]; then
    reason="$1 has a database name that does not match $2"
  else
    return 0
  fi
  return 1
}

# mongars_is_local HOST: true for this machine's IPv4 loopback, where the services are run.
mongars_is_local() {
  case $1 in 127.0.0.1 | localhost) return 0 ;; *) return 1 ;; esac
}

mongars_is_root() {
  [ "$(id -u)" = 0 ]
}

# mongars_wait_for SECONDS COMMAND...: run COMMAND once a second until it succeeds.
mongars_wait_for() {
  local seconds=$1 tries
  shift
  for ((tries = 0; tries < seconds; tries++)); do
    "$@" && return 0
    sleep 1
  done
  "$@"
}

# mongars_apt_install PACKAGE: install a Debian package, running apt-get update first
# when the install fails (a stale package index); false when it still fails.
mongars_apt_install() {
  local began=$SECONDS
  say "$1: installing the Debian package with apt-get (a minute or two)"
  mkdir -p "$(dirname "$MONGARS_SERVICES_LOG")"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >>"$MONGARS_SERVICES_LOG" 2>&1; then
    say "$1: apt-get install failed; running apt-get update and trying again"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$MONGARS_SERVICES_LOG" 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >>"$MONGARS_SERVICES_LOG" 2>&1 ||
      return 1
  fi
  say "$1: installed in $((SECONDS - began)) s"
}

# mongars_install PACKAGE: install a missing PACKAGE, or return false with the reason
# why not in `reason`.
mongars_install() {
  if ! mongars_is_root; then
    reason="not installed and not root"
  elif ! command -v apt-get >/dev/null; then
    reason="not installed and no apt-get"
  elif ! mongars_apt_install "$1"; then
    reason="apt-get install $1 failed (see $MONGARS_SERVICES_LOG)"
  else
    return 0
  fi
  return 1
}

# --- PostgreSQL, at MONGARS_TEST_POSTGRES_URL (the tests' default when unset) ---

mongars_postgres_answers() {
  pg_isready -q -h "$url_host" -p "$url_port" >/dev/null 2>&1
}

# mongars_postgres_signs_in: the tests' user gets into the tests' database with the URL's
# password or none (without psql, the tests find out themselves).
mongars_postgres_signs_in() {
  command -v psql >/dev/null || return 0
  PGPASSWORD=$url_password PGCONNECT_TIMEOUT=5 psql -w -Atq -h "$url_host" -p "$url_port" \
    -U "$url_user" -d "$url_name" -c 'SELECT 1' >/dev/null 2>&1
}

# mongars_postgres_cluster: "VERSION NAME" of the Debian cluster on url_port, if any.
mongars_postgres_cluster() {
  command -v pg_lsclusters >/dev/null || return 1
  pg_lsclusters -h 2>/dev/null | awk -v port="$url_port" '$3 == port { print $1, $2; found = 1; exit }
    END { exit !found }'
}

# mongars_postgres_admin SQL: run SQL as the postgres superuser; its rows on stdout.
mongars_postgres_admin() {
  runuser -u postgres -- psql -p "$url_port" -Atqc "$1"
}

# mongars_postgres_configure: what the tests need from a PostgreSQL installed just now,
# whose defaults (peer and scram-sha-256) ask for a password: the role url_user (not a
# superuser; CREATEDB for the tests' own databases) owning database url_name, let in
# from 127.0.0.1 without a password, and nobody else. Both names passed mongars_url_sane.
mongars_postgres_configure() {
  local hba trust="host all $url_user 127.0.0.1/32 trust  # added by monGARS scripts/test"
  say "postgres: creating role $url_user (LOGIN CREATEDB, not a superuser) owning database" \
    "$url_name, let in from 127.0.0.1 without a password"
  if [ -z "$(mongars_postgres_admin "SELECT 1 FROM pg_roles WHERE rolname = '$url_user'")" ]; then
    mongars_postgres_admin "CREATE ROLE $url_user LOGIN CREATEDB NOSUPERUSER" >/dev/null || return 1
  fi
  if [ -z "$(mongars_postgres_admin "SELECT 1 FROM pg_database WHERE datname = '$url_name'")" ]; then
    runuser -u postgres -- createdb -p "$url_port" -O "$url_user" "$url_name" || return 1
  else
    mongars_postgres_admin "ALTER DATABASE $url_name OWNER TO $url_user" >/dev/null || return 1
  fi
  hba=$(mongars_postgres_admin 'SHOW hba_file') || return 1
  if ! grep -qxF "$trust" "$hba"; then
    sed -i "1i $trust" "$hba" || return 1
  fi
  mongars_postgres_admin 'SELECT pg_reload_conf()' >/dev/null
}

# mongars_postgres: PostgreSQL answering at the tests' URL, or `reason` says why not.
mongars_postgres() {
  local installed_now='' cluster
  mongars_url_parts "${MONGARS_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}" 5432
  url_user=${url_user:-postgres}
  mongars_host_sane MONGARS_TEST_POSTGRES_URL || return 1
  if ! mongars_is_local "$url_host"; then
    say "postgres: at $url_host (MONGARS_TEST_POSTGRES_URL), not managed here"
    return 0
  fi
  mongars_url_sane MONGARS_TEST_POSTGRES_URL '^[A-Za-z0-9_]+$' || return 1
  if ! mongars_postgres_answers; then
    if ! cluster=$(mongars_postgres_cluster); then
      mongars_install postgresql || return 1
      installed_now=1
      cluster=$(mongars_postgres_cluster) || {
        reason="installed, but no cluster on port $url_port (pg_lsclusters)"
        return 1
      }
    fi
    if ! mongars_postgres_answers; then
      if ! mongars_is_root; then
        reason="cluster $cluster is down, and starting it needs root"
        return 1
      fi
      say "postgres: starting cluster $cluster (pg_ctlcluster)"
      # shellcheck disable=SC2086 # "VERSION NAME" are two arguments
      pg_ctlcluster --skip-systemctl-redirect $cluster start >>"$MONGARS_SERVICES_LOG" 2>&1 || true
      if ! mongars_wait_for 30 mongars_postgres_answers; then
        reason="cluster $cluster does not answer on port $url_port (see its log)"
        return 1
      fi
    fi
  fi
  if [ -n "$installed_now" ]; then
    url_user=$MONGARS_POSTGRES_ROLE url_password=
    if ! mongars_postgres_signs_in && ! mongars_postgres_configure; then
      reason="installed, but setting up role $url_user and database $url_name failed"
      return 1
    fi
    MONGARS_TEST_POSTGRES_URL="postgresql+asyncpg://$url_user@127.0.0.1:$url_port/$url_name"
    export MONGARS_TEST_POSTGRES_URL
  fi
  if ! mongars_postgres_signs_in; then
    reason="running, but $url_user cannot open database $url_name at $url_host:$url_port"
    reason+=" without a password, as the tests do"
    return 1
  fi
}

# --- Redis, at MONGARS_TEST_REDIS_URL (the tests' default when unset) ---

# mongars_redis_command WORD...: WORD... as one Redis command (RESP, binary-safe).
mongars_redis_command() {
  local word LC_ALL=C # ${#word} counts bytes
  printf '*%d\r\n' $#
  for word; do printf '$%d\r\n%s\r\n' "${#word}" "$word"; done
}

# mongars_redis_send PORT PASSWORD WORD...: send a command (signed in with PASSWORD when
# not empty) to the Redis on 127.0.0.1:PORT, over bash's /dev/tcp (no redis-cli needed);
# prints the command's reply line.
mongars_redis_send() {
  local port=$1 password=$2 reply
  shift 2
  { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || return 1
  if [ -n "$password" ]; then
    mongars_redis_command AUTH "$password" >&3
    IFS= read -r -t 2 reply <&3 || reply=
  fi
  mongars_redis_command "$@" >&3
  IFS= read -r -t 2 reply <&3 || reply=
  exec 3>&-
  printf '%s\n' "${reply%$'\r'}"
}

# mongars_redis_answers: PONG on url_port, signed in with url_password.
mongars_redis_answers() {
  [ "$(mongars_redis_send "$url_port" "$url_password" PING)" = +PONG ]
}

# mongars_redis_start LOG_DIR: start redis-server on 127.0.0.1:url_port with the password
# url_password (read from stdin, so that `ps` does not show it) and no persistence; as
# the redis user when root and there is one.
mongars_redis_start() {
  local as_redis=()
  if mongars_is_root && getent passwd redis >/dev/null && command -v runuser >/dev/null; then
    chown redis "$1" && as_redis=(runuser -u redis --)
  fi
  printf 'requirepass %s\n' "$url_password" |
    "${as_redis[@]}" redis-server - --daemonize yes --bind 127.0.0.1 --port "$url_port" \
      --save "" --appendonly no --dir "$1" --logfile "$1/redis.log" >>"$MONGARS_SERVICES_LOG" 2>&1
}

# mongars_redis: Redis answering at the tests' URL, or `reason` says why not.
mongars_redis() {
  local log_dir
  mongars_url_parts "${MONGARS_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}" 6379
  mongars_host_sane MONGARS_TEST_REDIS_URL || return 1
  if ! mongars_is_local "$url_host"; then
    say "redis: at $url_host (MONGARS_TEST_REDIS_URL), not managed here"
    return 0
  fi
  mongars_url_sane MONGARS_TEST_REDIS_URL '^[0-9]*$' || return 1
  mongars_redis_answers && return 0
  if ! command -v redis-server >/dev/null; then
    mongars_install redis-server || return 1
    mongars_redis_answers && return 0 # the package's own service may be up
  fi
  url_password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  log_dir=$(mktemp -d "${TMPDIR:-/tmp}/mongars-redis.XXXXXX") || {
    reason="mktemp -d failed"
    return 1
  }
  say "redis: starting redis-server on 127.0.0.1:$url_port, with a random password and" \
    "without persistence (log: $log_dir/redis.log)"
  mkdir -p "$(dirname "$MONGARS_SERVICES_LOG")"
  if ! mongars_redis_start "$log_dir" || ! mongars_wait_for 30 mongars_redis_answers; then
    reason="redis-server does not answer on port $url_port (see $log_dir/redis.log)"
    return 1
  fi
  MONGARS_STARTED_REDIS=("$url_port" "$url_password" "$log_dir")
  MONGARS_TEST_REDIS_URL="redis://:$url_password@127.0.0.1:$url_port/${url_name:-0}"
  export MONGARS_TEST_REDIS_URL
}

# --- Chromium, which the web console tests drive ---

mongars_chromium() {
  [ -x "$MONGARS_CHROMIUM" ] && return 0
  mongars_install chromium || return 1
  [ -x "$MONGARS_CHROMIUM" ] || {
    reason="the chromium package has no $MONGARS_CHROMIUM"
    return 1
  }
}

# mongars_test_services SERVICE...: bring each up (see the top of this file) and export
# MONGARS_TEST_UNAVAILABLE with the reasons of those that are not.
mongars_test_services() {
  local service reason marker ready=() unavailable=()
  if [ "${MONGARS_TEST_SERVICES:-yes}" = no ]; then
    say "MONGARS_TEST_SERVICES=no: not starting or installing $*"
    return 0
  fi
  for service in "$@"; do
    reason=
    if "mongars_$service"; then
      ready+=("$service")
    else
      marker=$service
      [ "$service" = chromium ] && marker=browser
      say "$service: not available ($reason): tests marked $marker are skipped"
      unavailable+=("$service=$reason")
    fi
  done
  [ ${#ready[@]} -eq 0 ] || say "ready: ${ready[*]}"
  MONGARS_TEST_UNAVAILABLE=$(IFS=';' && printf '%s' "${unavailable[*]}")
  export MONGARS_TEST_UNAVAILABLE
}

# mongars_stop_test_services: shut down the Redis that mongars_test_services started, if
# any (nobody else knows its password); PostgreSQL, a system service, stays up.
mongars_stop_test_services() {
  [ ${#MONGARS_STARTED_REDIS[@]} -eq 0 ] && return 0
  mongars_redis_send "${MONGARS_STARTED_REDIS[@]:0:2}" SHUTDOWN NOSAVE >/dev/null || true
  rm -rf "${MONGARS_STARTED_REDIS[2]}"
  say "redis: stopped the redis-server on 127.0.0.1:${MONGARS_STARTED_REDIS[0]}"
  MONGARS_STARTED_REDIS=()
}
