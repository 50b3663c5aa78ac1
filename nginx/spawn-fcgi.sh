#!/bin/sh
# flows-fcgi under spawn-fcgi: spawn-fcgi creates the unix socket nginx's fastcgi_pass points at and forks
# N responder processes that all accept on it (fd 0). Without systemd, run this from an init script,
# cron @reboot, or by hand:
#
#     nginx/spawn-fcgi.sh start      # or just nginx/spawn-fcgi.sh
#     nginx/spawn-fcgi.sh stop       # SIGTERM to every PID in the pid file, waits until they are gone
#     nginx/spawn-fcgi.sh status
#
# The recipe itself is:
#     spawn-fcgi -s /run/flows-fcgi/flows-fcgi.sock -M 0660 -U www-data -F 2 -P /run/flows-fcgi/flows-fcgi.pid \
#         -- /usr/local/bin/flows-fcgi --config /etc/flows-fcgi/flows.env --log-file /var/log/flows-fcgi/flows-fcgi.log
#
# Every setting can be overridden from the environment:
#   FLOWS_FCGI_BIN           responder binary            (/usr/local/bin/flows-fcgi)
#   FLOWS_FCGI_CONFIG        KEY=VALUE config file       (/etc/flows-fcgi/flows.env)
#   FLOWS_FCGI_SOCKET        unix socket path            (/run/flows-fcgi/flows-fcgi.sock)
#   FLOWS_FCGI_SOCKET_MODE   socket mode                 (0660)
#   FLOWS_FCGI_SOCKET_USER   socket owner, root only     (www-data: nginx's worker user on Debian)
#   FLOWS_FCGI_SOCKET_GROUP  socket group, root only     (that user's group)
#   FLOWS_FCGI_USER          run the responders as this user, root only (unset: as the caller).
#                            It needs to read the config and keys and write the database and log:
#                            config file and keys mode 0640 root:<its group> (or 0600 owned by it);
#                            it creates the database 0600 (0640 with DATABASE_GROUP). flows-fcgi check says so.
#   FLOWS_FCGI_PROCESSES     processes to fork           (2)
#   FLOWS_FCGI_THREADS       threads per process         (unset: the responder's default)
#   FLOWS_FCGI_LOG           log file (spawn-fcgi sends the children's stderr to /dev/null)
#                                                        (/var/log/flows-fcgi/flows-fcgi.log)
#   FLOWS_FCGI_PIDFILE       one PID per line            (/run/flows-fcgi/flows-fcgi.pid)
set -eu

BIN=${FLOWS_FCGI_BIN:-/usr/local/bin/flows-fcgi}
CONFIG=${FLOWS_FCGI_CONFIG:-/etc/flows-fcgi/flows.env}
SOCKET=${FLOWS_FCGI_SOCKET:-/run/flows-fcgi/flows-fcgi.sock}
SOCKET_MODE=${FLOWS_FCGI_SOCKET_MODE:-0660}
SOCKET_USER=${FLOWS_FCGI_SOCKET_USER:-www-data}
SOCKET_GROUP=${FLOWS_FCGI_SOCKET_GROUP:-}
RUN_USER=${FLOWS_FCGI_USER:-}
PROCESSES=${FLOWS_FCGI_PROCESSES:-2}
THREADS=${FLOWS_FCGI_THREADS:-}
LOG=${FLOWS_FCGI_LOG:-/var/log/flows-fcgi/flows-fcgi.log}
PIDFILE=${FLOWS_FCGI_PIDFILE:-/run/flows-fcgi/flows-fcgi.pid}

running_pids() {
    [ -f "$PIDFILE" ] || return 0
    for pid in $(cat "$PIDFILE"); do
        if kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
    done
}

start() {
    if [ -n "$(running_pids)" ]; then
        echo "flows-fcgi already running: $(running_pids | tr '\n' ' ')" >&2
        exit 1
    fi
    [ -x "$BIN" ] || { echo "not executable: $BIN" >&2; exit 1; }
    mkdir -p "$(dirname "$SOCKET")" "$(dirname "$PIDFILE")" "$(dirname "$LOG")"

    set -- -s "$SOCKET" -M "$SOCKET_MODE" -F "$PROCESSES" -P "$PIDFILE"
    if [ "$(id -u)" = 0 ]; then
        if [ -n "$SOCKET_USER" ]; then set -- "$@" -U "$SOCKET_USER"; fi
        if [ -n "$SOCKET_GROUP" ]; then set -- "$@" -G "$SOCKET_GROUP"; fi
        if [ -n "$RUN_USER" ]; then
            set -- "$@" -u "$RUN_USER"
            touch "$LOG" && chown "$RUN_USER" "$LOG"
        fi
    fi
    set -- "$@" -- "$BIN" --config "$CONFIG" --log-file "$LOG"
    if [ -n "$THREADS" ]; then set -- "$@" --threads "$THREADS"; fi

    # spawn-fcgi refuses a socket that something still accepts on and replaces a stale one.
    spawn-fcgi "$@"
}

stop() {
    pids=$(running_pids)
    if [ -z "$pids" ]; then
        echo "flows-fcgi not running" >&2
        rm -f "$PIDFILE"
        return 0
    fi
    # SIGTERM: each process finishes its in-flight requests and exits.
    kill -TERM $pids 2>/dev/null || true
    i=0
    while [ -n "$(running_pids)" ]; do
        i=$((i + 1))
        if [ "$i" -gt 150 ]; then
            echo "still running after 15 s, sending SIGKILL: $(running_pids | tr '\n' ' ')" >&2
            kill -KILL $(running_pids) 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
    rm -f "$PIDFILE" "$SOCKET"
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    status)
        pids=$(running_pids)
        if [ -n "$pids" ]; then echo "running: $(echo $pids)"; else echo "not running"; exit 3; fi
        ;;
    *) echo "usage: $0 [start|stop|restart|status]" >&2; exit 2 ;;
esac
