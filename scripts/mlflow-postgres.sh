#!/usr/bin/env bash
# A shared MLflow tracking server on PostgreSQL, on 127.0.0.1 only.
#
#   scripts/mlflow-postgres.sh start [DIR]   # DIR (default: a new temporary folder) holds everything:
#                                            # the database cluster, the artifact root, logs, PIDs
#   scripts/mlflow-postgres.sh stop DIR      # stops both servers by their PIDs
#
# `start` prints `export MLFLOW_TRACKING_URI=http://127.0.0.1:<port>` for the pipeline, and writes the
# database URI (with its generated password) to DIR/backend-uri. PostgreSQL comes from Debian's
# `postgresql` package, installed with apt-get if it is missing and this runs as root. Ports: free
# ones, or PG_PORT / MLFLOW_PORT. Run metadata lives in PostgreSQL; plots, models and exports are
# uploaded over HTTP to DIR/artifacts (--artifacts-destination), so clients need no shared disk.
set -euo pipefail

started=""  # the folder whose servers a failing start must stop again
die() {
  echo "error: $*" >&2
  if [[ -n "$started" ]]; then stop "$started" >/dev/null 2>&1 || true; fi
  exit 1
}

free_port() { python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

pg_bin() {  # the newest installed PostgreSQL's programs (Debian keeps them off PATH)
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [[ -z "$bin" ]] && command -v initdb >/dev/null; then bin=$(dirname "$(command -v initdb)"); fi
  echo "$bin"
}

as_db_user() {  # PostgreSQL refuses to run as root: run its programs as the `postgres` user then
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  local dir=${1:-$(mktemp -d -t mlflow-postgres.XXXXXX)}
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [[ -e "$dir/postgres" ]] && die "$dir/postgres exists: stop that server first, or give another folder"
  local bin
  bin=$(pg_bin)
  if [[ -z "$bin" ]]; then
    [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null || die "PostgreSQL is not installed (apt-get install postgresql)"
    echo "installing PostgreSQL (apt-get install postgresql)..." >&2
    apt-get install -y -q postgresql >"$dir/apt.log" 2>&1 || { apt-get update -q >>"$dir/apt.log" 2>&1 &&
      apt-get install -y -q postgresql >>"$dir/apt.log" 2>&1; } || die "apt-get install postgresql failed: see $dir/apt.log"
    bin=$(pg_bin)
  fi
  local pg_port=${PG_PORT:-$(free_port)} mlflow_port=${MLFLOW_PORT:-$(free_port)}
  local password
  password=$(python -c 'import secrets; print(secrets.token_hex(16))')
  local pg="$dir/postgres"  # the database server's own: cluster, socket, log, the password file while it starts
  mkdir -p "$pg" "$dir/artifacts"
  printf '%s\n' "$password" >"$pg/password"
  chmod 600 "$pg/password"
  if [[ $(id -u) -eq 0 ]]; then chown -R postgres "$pg" && chmod 755 "$dir"; fi
  as_db_user "$bin/initdb" -D "$pg/data" -U mlflow --pwfile="$pg/password" --auth=scram-sha-256 \
    --encoding=UTF8 >"$dir/initdb.log" 2>&1 || die "initdb failed: see $dir/initdb.log"
  rm -f "$pg/password"
  as_db_user "$bin/pg_ctl" -D "$pg/data" -l "$pg/postgres.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $pg" start >/dev/null \
    || die "PostgreSQL did not start: see $pg/postgres.log"
  head -n 1 "$pg/data/postmaster.pid" >"$dir/postgres.pid"
  started=$dir
  PGPASSWORD=$password "$bin/createdb" -h 127.0.0.1 -p "$pg_port" -U mlflow mlflow \
    || die "createdb failed: see $pg/postgres.log"
  local backend="postgresql://mlflow:$password@127.0.0.1:$pg_port/mlflow"
  printf '%s\n' "$backend" >"$dir/backend-uri"
  chmod 600 "$dir/backend-uri"
  # its own session, so that stop ends the server with its workers; no GenAI job runners (8 processes)
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid mlflow server --host 127.0.0.1 --port "$mlflow_port" --backend-store-uri "$backend" \
    --artifacts-destination "$dir/artifacts" --workers 1 >"$dir/mlflow.log" 2>&1 &
  echo $! >"$dir/mlflow.pid"
  local url="http://127.0.0.1:$mlflow_port"
  for _ in $(seq 120); do
    if curl -sf "$url/health" >/dev/null 2>&1; then
      echo "$url" >"$dir/tracking-uri"
      echo "# MLflow on PostgreSQL 127.0.0.1:$pg_port, artifacts in $dir/artifacts; stop: $0 stop $dir" >&2
      echo "export MLFLOW_TRACKING_URI=$url"
      return 0
    fi
    kill -0 "$(cat "$dir/mlflow.pid")" 2>/dev/null || break
    sleep 0.5
  done
  die "mlflow server did not answer on $url: see $dir/mlflow.log"
}

stop_pid() {  # SIGTERM to the process (its group when it leads one), then wait for it to go
  local pid=$1 group=$2
  kill -0 "$pid" 2>/dev/null || return 0
  if [[ $group == yes ]]; then kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"; else kill -TERM "$pid"; fi
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  die "process $pid did not stop"
}

stop() {
  local dir=${1:?usage: $0 stop DIR}
  [[ -f "$dir/mlflow.pid" || -f "$dir/postgres.pid" ]] || die "$dir holds no server started by $0"
  if [[ -f "$dir/mlflow.pid" ]]; then stop_pid "$(cat "$dir/mlflow.pid")" yes; rm -f "$dir/mlflow.pid"; fi
  if [[ -f "$dir/postgres.pid" ]]; then stop_pid "$(cat "$dir/postgres.pid")" no; rm -f "$dir/postgres.pid"; fi
  echo "stopped the servers of $dir" >&2
}

case "${1:-}" in
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: $0 start [DIR] | stop DIR" >&2; exit 2 ;;
esac
