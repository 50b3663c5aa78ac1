import FlowCore

/// The version printed by `--version`.
let flowsFCGIVersion = "0.1.0"

/// Command-line options of the responder.
struct Options {
    var configFile: String?
    var listen: String?
    var socketMode: UInt32 = 0o660
    var socketGroup: String?
    var backlog: Int32 = 128
    var threads = 1
    var processes = 0
    var logFile: String?
    var maxBody: String?
    var maxRequests: String?
    var showVersion = false
    var showHelp = false

    static let usage = """
        usage: flows-fcgi [options]

        A WhatsApp Flows data endpoint as a FastCGI (or plain CGI) responder. How it serves, in this order:
          --listen ADDRESS        its own socket: unix:/path.sock or 127.0.0.1:9000 (0.0.0.0:PORT or [::]:PORT
                                  bind every interface and must be written out)
          LISTEN_FDS=1            systemd socket activation (fd 3)
          fd 0 a listening socket spawn-fcgi, lighttpd bin-path, Apache mod_fcgid
          GATEWAY_INTERFACE set   plain CGI: one request on stdin/stdout (shared hosting)
        With none of these it prints this text and exits with status 2.

        options:
          --config FILE           KEY=VALUE settings (environment variables override them)
          --threads N             worker threads per process, each with its own SQLite connection (default 1)
          --processes N           with --listen: prefork N processes and respawn them (default: serve in this process)
          --socket-mode MODE      with --listen unix: permissions of the socket (octal, default 0660)
          --socket-group GROUP    with --listen unix: group of the socket (e.g. www-data)
          --backlog N             with --listen: listen backlog (default 128)
          --log-file PATH         append log lines to PATH (also LOG_FILE); spawn-fcgi discards stderr
          --max-body BYTES        largest request body accepted, else 413 (also MAX_BODY_BYTES; default 1048576)
          --max-requests N        exit 0 after N requests for the spawner to start a fresh process (also
                                  MAX_REQUESTS; default 0: never)
          --version               print the version and exit
          --help                  print this text and exit

        settings (environment or --config file): APP_SECRET, APP_SECRET_PREVIOUS, PRIVATE_KEY_FILE (comma-separated,
        newest first), PRIVATE_KEY, PASSPHRASE or PASSPHRASE_FILE, DATABASE_URL (sqlite:/path/flows.db), LOG_LEVEL,
        LOG_FILE, LOG_FORMAT (text or json), MAX_BODY_BYTES, SIGNATURE_CHECK (off only for development),
        DATABASE_BUSY_TIMEOUT_MS, MAX_REQUESTS, REQUEST_DEADLINE_MS (default 8000), METRICS_DIR,
        RETENTION_DAYS (default 90; personal data older than that is purged automatically, 0 keeps everything).
        Signals: TERM/INT finish in-flight requests and exit 0; HUP/USR1 reopen the log file (USR1 does not stop).

        operator commands (flows-fcgi COMMAND --help): keygen, check, probe, register-key, bookings, cancel-booking,
        expenses, purge
        """

    /// Parses `arguments` (without the program name).
    static func parse(_ arguments: [String]) throws(ConfigError) -> Options {
        var options = Options()
        var i = 0
        func value(_ name: String) throws(ConfigError) -> String {
            i += 1
            guard i < arguments.count else { throw ConfigError("\(name) needs a value (see --help)") }
            return arguments[i]
        }
        func integer(_ name: String, _ range: ClosedRange<Int>) throws(ConfigError) -> Int {
            let text = try value(name)
            guard let n = Int(text), range.contains(n) else {
                throw ConfigError("\(name) \(text): expected a whole number from \(range.lowerBound) to \(range.upperBound)")
            }
            return n
        }
        while i < arguments.count {
            var argument = arguments[i]
            // Accept --name=value as well as --name value.
            if argument.hasPrefix("--"), let eq = argument.firstIndex(of: "=") {
                let name = String(argument[..<eq])
                let rest = String(argument[argument.index(after: eq)...])
                var expanded = arguments
                expanded.replaceSubrange(i...i, with: [name, rest])
                return try parse(expanded)
            }
            if argument == "-c" { argument = "--config" }
            switch argument {
            case "--config": options.configFile = try value(argument)
            case "--listen": options.listen = try value(argument)
            case "--socket-mode":
                let text = try value(argument)
                guard let mode = UInt32(text, radix: 8), mode <= 0o777 else {
                    throw ConfigError("--socket-mode \(text): expected an octal mode such as 0660")
                }
                options.socketMode = mode
            case "--socket-group": options.socketGroup = try value(argument)
            case "--backlog": options.backlog = Int32(try integer(argument, 1...65535))
            case "--threads": options.threads = try integer(argument, 1...256)
            case "--processes": options.processes = try integer(argument, 1...256)
            case "--log-file": options.logFile = try value(argument)
            case "--max-body": options.maxBody = try value(argument)
            case "--max-requests": options.maxRequests = try value(argument)
            case "--version", "-V": options.showVersion = true
            case "--help", "-h": options.showHelp = true
            default: throw ConfigError("unknown option \(argument) (see --help)")
            }
            i += 1
        }
        if options.processes > 0, options.listen == nil {
            throw ConfigError("--processes needs --listen: when a spawner (spawn-fcgi -F, lighttpd max-procs, systemd) "
                + "owns the socket, let it start the processes")
        }
        return options
    }
}
