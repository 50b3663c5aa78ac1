#!/bin/sh
# flows-fcgi's CGI wrapper for Apache (see .htaccess). Edit the two paths for your account:
# the responder binary and its KEY=VALUE config file (APP_SECRET, PRIVATE_KEY_FILE, PASSPHRASE_FILE,
# DATABASE_URL, LOG_FILE; see README.md). Apache sets GATEWAY_INTERFACE, so the responder answers this
# one request on stdin/stdout and exits.
exec /usr/local/bin/flows-fcgi --config /etc/flows-fcgi/flows.env
