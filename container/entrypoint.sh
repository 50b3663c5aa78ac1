#!/bin/sh
# flows-fcgi container entrypoint (container/Containerfile), run under an init as PID 1:
#     ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/entrypoint.sh"]
# spawn-fcgi -n creates the listening socket and execs the responder in its place, in the foreground (no daemon,
# no fork; the PID written to the pid file stays the responder's): one process serving FLOWS_FCGI_THREADS requests
# at once (a spawner-owned socket is served by one process: the responder preforks only on its own --listen
# socket). Should it die, the container exits: give it a restart policy (docker run --restart unless-stopped).
# `docker stop` sends SIGTERM to tini, tini forwards it: in-flight requests finish, the responder exits 0, and so
# does the container.
#
# Environment (the responder's own settings, APP_SECRET, PRIVATE_KEY_FILE, DATABASE_URL, ..., come from the
# environment or FLOWS_FCGI_CONFIG):
#   FLOWS_FCGI_LISTEN       unix:/run/flows-fcgi/flows-fcgi.sock   (default; share /run/flows-fcgi as a volume
#                           with the web server) or ADDRESS:PORT, written out: 127.0.0.1:9000, or 0.0.0.0:9000
#                           to accept on every interface of the container (publish the port to the web server only)
#   FLOWS_FCGI_SOCKET_MODE  unix socket mode                       (0660)
#   FLOWS_FCGI_THREADS      worker threads                         (4)
#   FLOWS_FCGI_CONFIG       KEY=VALUE config file, used when it exists (/etc/flows-fcgi/flows.env)
#   FLOWS_FCGI_PIDFILE      the responder's PID, for logrotate     (/run/flows-fcgi/flows-fcgi.pid)
#   FLOWS_FCGI_BIN          the responder                          (/usr/local/bin/flows-fcgi)
# Logs go to LOG_FILE when set (e.g. /var/log/flows-fcgi/flows-fcgi.log on a volume, rotated by
# packaging/logrotate/flows-fcgi), else to the container's standard error.
set -eu

BIN=${FLOWS_FCGI_BIN:-/usr/local/bin/flows-fcgi}
LISTEN=${FLOWS_FCGI_LISTEN:-unix:/run/flows-fcgi/flows-fcgi.sock}
SOCKET_MODE=${FLOWS_FCGI_SOCKET_MODE:-0660}
THREADS=${FLOWS_FCGI_THREADS:-4}
CONFIG=${FLOWS_FCGI_CONFIG:-/etc/flows-fcgi/flows.env}
PIDFILE=${FLOWS_FCGI_PIDFILE:-/run/flows-fcgi/flows-fcgi.pid}

case "$LISTEN" in
    unix:/*)
        socket=${LISTEN#unix:}
        mkdir -p "$(dirname "$socket")"
        set -- -s "$socket" -M "$SOCKET_MODE"
        ;;
    *:*)
        host=${LISTEN%:*}
        port=${LISTEN##*:}
        case "$host" in
            [0-9]*.[0-9]*.[0-9]*.[0-9]*) ;;
            *) echo "entrypoint: FLOWS_FCGI_LISTEN=$LISTEN: give an IPv4 address, e.g. 127.0.0.1:9000 or" \
                    "0.0.0.0:9000" >&2; exit 2 ;;
        esac
        set -- -a "$host" -p "$port"
        ;;
    *)
        echo "entrypoint: FLOWS_FCGI_LISTEN=$LISTEN: expected unix:/path.sock or ADDRESS:PORT" >&2
        exit 2
        ;;
esac

set -- "$@" -n -- "$BIN" --threads "$THREADS"
if [ -f "$CONFIG" ]; then set -- "$@" --config "$CONFIG"; fi

mkdir -p "$(dirname "$PIDFILE")"
# spawn-fcgi -n and then the responder replace this shell: this PID is theirs.
echo $$ > "$PIDFILE"
exec spawn-fcgi "$@"
