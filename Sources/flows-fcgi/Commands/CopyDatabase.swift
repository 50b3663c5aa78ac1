import FlowCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `flows-fcgi copy-database`: moves a one-host installation's SQLite database to PostgreSQL (see `DatabaseCopy`).
enum CopyDatabase {
    static let usage = """
        usage: flows-fcgi copy-database --from sqlite:/path/flows.db --to postgresql://user@host:5432/db [--config FILE]

        Copies every table of a SQLite database (--from: sqlite:/path or a plain path; opened read-only, never
        created) into a PostgreSQL database (--to: postgresql:// or postgres://, every libpq parameter accepted),
        for moving one host's installation to several hosts sharing PostgreSQL. The target's migrations run first
        (those of the flows the settings serve: give the responder's --config); then one transaction copies every
        row, ids kept and each identity sequence set past them, and commits only when every table has as many rows
        as in the source. A target that holds any row is refused, nothing changed. The source may be in use: it is
        read in one read transaction. Prints each table with its rows, then a summary.
        The password comes from the URL, DATABASE_PASSWORD_FILE or PGPASSFILE, and is never printed.
        Exit status: 0 copied, 1 not copied (the reason is printed), 2 usage error, 78 configuration error.
        """

    /// Runs `copy-database` with `arguments`; returns the exit status.
    static func run(_ arguments: [String]) -> Int32 {
        guard let parsed = CommandArguments.parse(arguments, command: "copy-database",
                                                  valued: ["--from", "--to", "--config"], usage: usage)
        else { return ExitStatus.usage }
        if parsed.help { return 0 }
        if let extra = parsed.positional.first {
            return parsed.usageError("unexpected argument \(Settings.hidingURLSecrets(extra))")
        }
        guard let from = parsed["--from"] else {
            return parsed.usageError("--from is required: the SQLite database, sqlite:/path/flows.db")
        }
        guard let to = parsed["--to"] else {
            return parsed.usageError("--to is required: the PostgreSQL database, postgresql://user@host:5432/db")
        }
        let path: String
        switch sourcePath(from) {
        case .success(let found): path = found
        case .failure(let problem): return parsed.usageError(problem.message)
        }
        guard to.hasPrefix("postgresql://") || to.hasPrefix("postgres://") else {
            return parsed.usageError("--to must be a PostgreSQL connection URI (postgresql://user@host:5432/db)")
        }
        if let problem = DatabaseLocation.postgresURLProblem(to) { return parsed.usageError("--to: \(problem)") }

        let location: DatabaseLocation
        let migrations: [Migration]
        do {
            // The responder's settings: DATABASE_PASSWORD_FILE for the target, and the flows whose tables it has.
            let settings = try Settings(environment: currentEnvironment(), file: parsed["--config"],
                                        names: Configuration.allSettingNames).overriding("DATABASE_URL", with: to)
            guard let parsedLocation = try Configuration.databaseLocation(settings) else { return 1 }
            location = parsedLocation
            migrations = Configuration.migrations(flows: try Command.servedFlows(settings))
        } catch {
            printError("configuration error: \(error.description)")
            return ExitStatus.config
        }

        // A path with nothing there is refused before SQLite could create a file.
        guard access(path, F_OK) == 0 else {
            printError("copy-database: --from \(path): there is no database there "
                + "(\(String(cString: strerror(errno))))")
            return 1
        }
        let source: Database
        let target: Database
        do {
            source = try Database(path: path, access: .readOnly)
        } catch {
            printError("copy-database: cannot open the source: \(error.description)")
            return 1
        }
        defer { source.close() }
        do {
            // No statement_timeout: a large table's statements may take longer than a request's deadline.
            target = try location.open(deadlineMilliseconds: 0, access: .create)
        } catch {
            printError("copy-database: cannot open the target: \(error.description)")
            return 1
        }
        defer { target.close() }

        let tables: [DatabaseCopy.Table]
        do {
            tables = try DatabaseCopy.run(from: source, to: target, migrations: migrations)
        } catch {
            printError("copy-database: not copied: \(error)")
            return 1
        }
        let width = tables.map(\.name.count).max() ?? 0
        var out = "copied \(path) to \(location.shown):\n"
        for table in tables {
            out += "  " + table.name + String(repeating: " ", count: width - table.name.count + 2)
                + String(table.rows) + "\n"
        }
        let rows = tables.reduce(0) { $0 + $1.rows }
        out += "\(rows) row\(rows == 1 ? "" : "s") in \(tables.count) tables, the counts verified in the target "
            + "before COMMIT; ids kept, identity sequences set past them\n"
        writeAll(1, Array(out.utf8))
        return 0
    }

    /// The file `--from` names: `sqlite:/path` (`sqlite:///path` too) or a plain path.
    private static func sourcePath(_ from: String) -> Result<String, CommandArguments.Problem> {
        if from.hasPrefix("postgresql://") || from.hasPrefix("postgres://") {
            return .failure(.init(message: "--from must be a SQLite database (sqlite:/path/flows.db or a path), "
                + "not PostgreSQL"))
        }
        var path = from
        if path.hasPrefix("sqlite:") {
            path.removeFirst("sqlite:".count)
            if path.hasPrefix("//") { path.removeFirst(2) }
        } else if path.contains("://") {
            return .failure(.init(message: "--from must be a SQLite database (sqlite:/path/flows.db or a path)"))
        }
        guard !path.isEmpty else { return .failure(.init(message: "--from names no file")) }
        return .success(path)
    }
}
