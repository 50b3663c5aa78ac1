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
    /// `--threads`: worker threads per process. Two by default: while one worker waits (for the rest of a request
    /// from the web server, for SQLite's write lock, for a PostgreSQL round trip), the other uses the processor,
    /// for about 0.5 MiB more per process (a second database connection and stack; README, Performance).
    var threads = 2
    var processes = 0
    var logFile: String?
    var maxBody: String?
    var maxRequests: String?
    var showVersion = false
    var showHelp = false

    /// The text of `--help`: the options, then every setting name the code reads (from the settings types' own
    /// lists, so a new setting cannot be left out) and every operator command.
    static var usage: String {
        var text = """
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
              --threads N             worker threads per process, each with its own database connection
                                      (default 2: one uses the processor while the other waits)
              --processes N           with --listen: prefork N processes and respawn them (default: serve in this
                                      process)
              --socket-mode MODE      with --listen unix: permissions of the socket (octal, default 0660)
              --socket-group GROUP    with --listen unix: group of the socket (e.g. www-data)
              --backlog N             with --listen: listen backlog (default 128)
              --log-file PATH         append log lines to PATH (also LOG_FILE); spawn-fcgi discards stderr
              --max-body BYTES        largest request body accepted, else 413 (also MAX_BODY_BYTES; default 1048576)
              --max-requests N        exit 0 after N requests for the spawner to start a fresh process (also
                                      MAX_REQUESTS; default 0: never)
              --version               print the version and exit
              --help                  print this text and exit
            Signals: TERM/INT finish in-flight requests and exit 0; HUP/USR1 reopen the log file (USR1 does not stop).

            settings (environment or --config file; meanings and defaults: README.md, "Configuration"):

            """
        let groups = [("", Configuration.coreSettingNames)]
            + FlowRegistry.all.map { ("\($0.name) flow: ", $0.settingNames) }
        for (title, names) in groups { text += wrapped(title + names.joined(separator: ", "), indent: "  ") }
        text += "\noperator commands (flows-fcgi COMMAND --help for each):\n"
        let width = Command.summaries.map(\.name.count).max() ?? 0
        for (name, summary) in Command.summaries {
            text += "  " + name + String(repeating: " ", count: width - name.count + 2) + summary + "\n"
        }
        text += """
            The probe's target is an http(s):// URL, unix:/path.sock or fcgi://HOST:PORT (the FastCGI socket itself).
            bookings, cancel-booking and expenses print personal data (names, emails, phones): keep their output
            away from logs.
            """
        return text
    }

    /// `text` broken at spaces into lines of at most 116 characters, each starting with `indent`.
    private static func wrapped(_ text: String, indent: String) -> String {
        var out = ""
        var line = indent
        for word in text.split(separator: " ") {
            if line.count > indent.count, line.count + 1 + word.count > 116 {
                out += line + "\n"
                line = indent + "  "
            } else if line.count > indent.count, !line.hasSuffix(" ") {
                line += " "
            }
            line += word
        }
        return out + line + "\n"
    }

    /// Parses `arguments` (without the program name) the way every operator command reads its own
    /// (`CommandArguments`): `--name value` or `--name=value`, `-c`, `-V`, `-h`.
    static func parse(_ arguments: [String]) throws(ConfigError) -> Options {
        var options = Options()
        do throws(CommandArguments.Problem) {
            let parsed = try CommandArguments.read(
                arguments, command: "flows-fcgi",
                valued: ["--config", "--listen", "--socket-mode", "--socket-group", "--backlog", "--threads",
                         "--processes", "--log-file", "--max-body", "--max-requests"],
                switches: ["--version"])
            options.showHelp = parsed.help
            options.showVersion = parsed.has("--version")
            if let extra = parsed.positional.first {
                throw CommandArguments.Problem(message: "unexpected argument \(extra)")
            }
            options.configFile = parsed["--config"]
            options.listen = parsed["--listen"]
            if let text = parsed["--socket-mode"] {
                guard let mode = UInt32(text, radix: 8), mode <= 0o777 else {
                    throw CommandArguments.Problem(message: "--socket-mode must be an octal mode such as 0660, "
                        + "not '\(text)'")
                }
                options.socketMode = mode
            }
            options.socketGroup = parsed["--socket-group"]
            options.backlog = Int32(try parsed.integer("--backlog", range: 1...65535) ?? Int(options.backlog))
            options.threads = try parsed.integer("--threads", range: 1...256) ?? options.threads
            options.processes = try parsed.integer("--processes", range: 1...256) ?? options.processes
            options.logFile = parsed["--log-file"]
            options.maxBody = parsed["--max-body"]
            options.maxRequests = parsed["--max-requests"]
        } catch {
            throw ConfigError(error.message + " (see flows-fcgi --help)")
        }
        if options.processes > 0, options.listen == nil {
            throw ConfigError("--processes needs --listen: when a spawner (spawn-fcgi -F, lighttpd max-procs, systemd) "
                + "owns the socket, let it start the processes")
        }
        return options
    }
}
