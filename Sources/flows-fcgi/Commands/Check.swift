import FlowCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `flows-fcgi check`: loads the configuration the way the responder does and reports each item as an `OK` or
/// `PROBLEM` line in plain words. Never prints a secret; never creates the database or the log file (run as
/// root, that would leave files the responder's user cannot write).
enum Check {
    static let usage = """
        usage: flows-fcgi check [--config FILE]

        Loads the settings (--config FILE, the environment overriding it) as the responder does and reports:
        each private key (file, size, public key fingerprint), the app secret (never shown) and the signature
        check, the database (opens, writable, WAL, migrations), file permissions (private keys, passphrase file
        and config file: 0600, or 0640 for the responder's group, never for others nor group-writable; the
        database and its -wal and -shm: 0600, or 0640 in DATABASE_GROUP), the log file, and every Flow JSON of
        FLOWS_DIR (each problem as file: /pointer: message; the responder does not start with one).
        Exit status: 0 when all is well, 1 when something is reported as PROBLEM, 78 when the configuration does
        not load at all (the reason is printed).
        """

    /// The report being built: one line per item.
    private struct Report {
        var lines: [String] = []
        var problems = 0

        mutating func ok(_ text: String) { lines.append("OK       " + text) }

        mutating func problem(_ text: String) {
            lines.append("PROBLEM  " + text)
            problems += 1
        }
    }

    /// Runs `check` with `arguments`; returns the exit status.
    static func run(_ arguments: [String]) -> Int32 {
        guard let parsed = CommandArguments.parse(arguments, command: "check", valued: ["--config"], usage: usage)
        else { return ExitStatus.usage }
        if parsed.help { return 0 }
        if let extra = parsed.positional.first { return parsed.usageError("unexpected argument \(extra)") }
        let configFile = parsed["--config"]
        let settings: Settings
        var configuration: Configuration
        do {
            settings = try Settings(environment: currentEnvironment(), file: configFile,
                                    names: Configuration.allSettingNames)
            configuration = try Configuration(settings: settings, loadFormFlows: false)
        } catch {
            printError("configuration error: \(error.description)")
            return ExitStatus.config
        }

        var report = Report()
        report.ok("configuration loads" + (configFile.map { " (\($0) and the environment)" } ?? " (environment)"))
        for warning in configuration.warnings { report.problem(warning) }
        flows(settings, &configuration, &report)
        for key in configuration.keys {
            report.ok("private key \(key.source): RSA-\(key.bits), public key SHA-256 fingerprint "
                + key.publicKeyFingerprint)
        }
        secrets(settings, configuration, &report)
        permissions(settings, configuration, configFile: configFile, &report)
        database(configuration, &report)
        logFile(configuration, &report)

        var out = report.lines.joined(separator: "\n") + "\n"
        out += report.problems == 0 ? "all is well\n"
            : "\(report.problems) problem\(report.problems == 1 ? "" : "s") found\n"
        writeAll(1, Array(out.utf8))
        return report.problems == 0 ? 0 : 1
    }

    /// Every Flow JSON of `FLOWS_DIR`, as the responder loads it: each problem (`file: /pointer: message`) reported.
    private static func flows(_ settings: Settings, _ configuration: inout Configuration, _ report: inout Report) {
        var warnings: [String] = []
        do {
            guard let directory = try FormFlows.directory(settings, warnings: &warnings) else {
                for warning in warnings { report.problem(warning) }
                return
            }
            let loaded = try FormFlows.load(directory: directory, coded: Set(configuration.flowOrder),
                                            sessionHours: try FormFlow.sessionHours(settings))
            for warning in loaded.warnings { report.problem(warning) }
            for problem in loaded.problems { report.problem(problem.description) }
            try configuration.add(forms: loaded.flows)
            report.ok("FLOWS_DIR \(directory): serving \(configuration.flowOrder.joined(separator: ", "))"
                + (loaded.problems.isEmpty ? "" : " (the responder will not start until the problems are fixed)"))
        } catch {
            report.problem(error.description)
        }
    }

    private static func secrets(_ settings: Settings, _ configuration: Configuration, _ report: inout Report) {
        if settings["APP_SECRET"] != nil {
            report.ok("APP_SECRET is set (not shown)"
                + (settings["APP_SECRET_PREVIOUS"] != nil ? "; APP_SECRET_PREVIOUS is accepted too (rotation)" : ""))
        } else {
            report.problem("APP_SECRET is not set: set it to the Meta app secret")
        }
        if !configuration.signatureCheck {
            report.problem("SIGNATURE_CHECK=off: X-Hub-Signature-256 is not checked and anyone can call the endpoint "
                + "(local development only)")
        }
    }

    /// Files holding secrets: readable by their group at most (0640 root:<the responder's group> is the Debian norm
    /// for such files), never by others, never writable by anyone but the owner.
    private static func permissions(_ settings: Settings, _ configuration: Configuration, configFile: String?,
                                    _ report: inout Report) {
        // A key loaded from a file has that file as its source; an inline one has PRIVATE_KEY.
        var files: [(String, String)] = configuration.keys.map(\.source).filter { $0 != "PRIVATE_KEY" }
            .map { ($0, "private key file") }
        if let file = settings["PASSPHRASE_FILE"] { files.append((file, "passphrase file")) }
        if let configFile { files.append((configFile, "config file")) }
        for (path, what) in files {
            var info = stat()
            guard stat(path, &info) == 0 else {
                report.problem("\(what) \(path): cannot stat: \(String(cString: strerror(errno)))")
                continue
            }
            let mode = info.st_mode & 0o7777
            if mode & 0o037 != 0 {
                report.problem("\(what) \(path) has mode \(octal(mode)): "
                    + (mode & 0o007 != 0 ? "others" : "its group") + " can read or change it (chmod 640 \(path), "
                    + "owned by root and the responder's group, or chmod 600 owned by the responder's user)")
            } else if mode & 0o040 != 0 {
                report.ok("\(what) \(path) has mode \(octal(mode)) (group \(groupName(info.st_gid)) can read it)")
            } else {
                report.ok("\(what) \(path) has mode \(octal(mode))")
            }
        }
    }

    private static func database(_ configuration: Configuration, _ report: inout Report) {
        guard let location = configuration.database else {
            report.problem("DATABASE_URL is not set: flows that store data answer 500 and /health/ready answers 503")
            return
        }
        guard let path = location.sqlitePath else { return postgres(location, configuration, &report) }
        var info = stat()
        guard stat(path, &info) == 0 else {
            let reason = String(cString: strerror(errno))
            guard errno == ENOENT else {
                report.problem("database \(path): cannot stat: \(reason)")
                return
            }
            notCreatedYet("database", path, &report)
            return
        }
        databaseModes(path, group: configuration.databaseGroup, &report)
        let database: Database
        do {
            database = try Database(path: path, busyTimeoutMilliseconds: configuration.busyTimeoutMilliseconds)
        } catch {
            report.problem("database \(path) does not open: \(error.description)")
            return
        }
        defer { database.close() }
        report.ok("database \(path) opens")
        do {
            try database.execute("BEGIN IMMEDIATE; CREATE TABLE flows_fcgi_check_scratch (x INTEGER)")
            try? database.execute("ROLLBACK")
            report.ok("database \(path) is writable (a write transaction was rolled back)")
        } catch {
            try? database.execute("ROLLBACK")
            report.problem("database \(path) is not writable: \(error.message) (SQLite code \(error.code))")
        }
        do {
            let mode = try database.query("PRAGMA journal_mode").first?.first?.string ?? "unknown"
            if mode.lowercased() == "wal" {
                report.ok("database \(path) is in WAL mode")
            } else {
                report.problem("database \(path) journal_mode is \(mode), WAL is required")
            }
        } catch {
            report.problem("database \(path): cannot read its state: \(error.description)")
        }
        migrationState(database, path, configuration, &report)
    }

    /// A PostgreSQL `DATABASE_URL` (shown with its password hidden): the server answers, a write transaction can
    /// be opened (rolled back), and the migrations' state.
    private static func postgres(_ location: DatabaseLocation, _ configuration: Configuration,
                                 _ report: inout Report) {
        let shown = location.shown
        let database: Database
        do {
            database = try location.open(deadlineMilliseconds: configuration.runtime.requestDeadlineMilliseconds,
                                         access: .existing)
        } catch {
            report.problem("database \(shown) does not open: \(error.description)")
            return
        }
        defer { database.close() }
        if let problem = database.readinessProblem() {
            report.problem("database \(shown): \(problem)")
            return
        }
        report.ok("database \(shown) answers")
        do {
            try database.writeTransaction(commit: false) { () throws(DatabaseError) in
                try database.execute("CREATE TABLE flows_fcgi_check_scratch (x bigint)")
            }
            report.ok("database \(shown) is writable (a write transaction was rolled back)")
        } catch {
            report.problem("database \(shown) is not writable: \(error.description)")
        }
        migrationState(database, shown, configuration, &report)
    }

    private static func migrationState(_ database: Database, _ shown: String, _ configuration: Configuration,
                                       _ report: inout Report) {
        do {
            let applied = try database.hasTable("schema_migrations")
                ? Set(try database.query("SELECT id FROM schema_migrations").compactMap { $0.first?.string }) : []
            let expected = configuration.migrations.map(\.id)
            let pending = expected.filter { !applied.contains($0) }
            let unknown = applied.subtracting(expected).sorted()
            if !unknown.isEmpty {
                report.problem("database \(shown) has migrations this version does not know "
                    + "(\(unknown.joined(separator: ", "))): it was written by a newer flows-fcgi")
            }
            if pending.isEmpty {
                report.ok("database \(shown): all \(expected.count) migrations applied")
            } else {
                report.ok("database \(shown): \(pending.count) of \(expected.count) migrations not applied yet "
                    + "(\(pending.joined(separator: ", "))); the responder applies them at startup")
            }
        } catch {
            report.problem("database \(shown): cannot read its state: \(error.description)")
        }
    }

    /// The database and its `-wal` and `-shm` (personal data, all three) readable by the owner only, or by
    /// `DATABASE_GROUP` too; never by others, never writable by the group.
    private static func databaseModes(_ path: String, group: gid_t?, _ report: inout Report) {
        for file in [path, path + "-wal", path + "-shm"] {
            var info = stat()
            guard stat(file, &info) == 0 else { continue }
            let mode = info.st_mode & 0o7777
            let groupMayRead = group == info.st_gid
            guard mode & 0o037 != 0 || (mode & 0o040 != 0 && !groupMayRead) else { continue }
            let who = mode & 0o007 != 0 ? "others" : "group \(groupName(info.st_gid))"
            let fix = group.map { "chmod 640 \(file); chgrp \(groupName($0)) \(file)" } ?? "chmod 600 \(file)"
            report.problem("database file \(file) has mode \(octal(mode)): \(who) can read"
                + (mode & 0o022 != 0 ? " or change" : "") + " the personal data in it (\(fix)"
                + (group == nil ? ", or set DATABASE_GROUP for a group that must read it" : "") + ")")
        }
    }

    private static func groupName(_ gid: gid_t) -> String {
        getgrgid(gid).map { String(cString: $0.pointee.gr_name) } ?? String(gid)
    }

    private static func logFile(_ configuration: Configuration, _ report: inout Report) {
        guard let path = configuration.logFile else {
            report.ok("log lines go to standard error (spawn-fcgi discards it: set LOG_FILE there)")
            return
        }
        let fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY)
        if fd >= 0 {
            close(fd)
            report.ok("log file \(path) is writable")
            return
        }
        let reason = String(cString: strerror(errno))
        guard errno == ENOENT else {
            report.problem("log file \(path) is not writable: \(reason)")
            return
        }
        notCreatedYet("log file", path, &report)
    }

    /// A file the responder creates at startup that does not exist yet: fine when its directory is writable.
    private static func notCreatedYet(_ what: String, _ path: String, _ report: inout Report) {
        let slash = path.lastIndex(of: "/") ?? path.startIndex
        let directory = slash == path.startIndex ? "/" : String(path[..<slash])
        var info = stat()
        let why: String?
        if stat(directory, &info) != 0 {
            why = String(cString: strerror(errno))
        } else if info.st_mode & S_IFMT != S_IFDIR {
            why = "not a directory"
        } else if access(directory, W_OK | X_OK) != 0 {
            why = "not writable: \(String(cString: strerror(errno)))"
        } else {
            why = nil
        }
        if let why {
            report.problem("\(what) \(path) does not exist and cannot be created: directory \(directory): \(why)")
        } else {
            report.ok("\(what) \(path) does not exist yet; the responder creates it at startup (directory "
                + "\(directory) is writable)")
        }
    }

    private static func octal(_ mode: mode_t) -> String {
        let digits = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}
