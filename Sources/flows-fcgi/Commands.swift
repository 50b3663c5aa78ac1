import FlowCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Operator subcommands: they read the same configuration as the responder and work on its database.
enum Command {
    /// Each command and what it does, in the order `--help` lists them.
    static let summaries: [(name: String, summary: String)] = [
        ("bookings", "list appointment bookings by start time (--all includes cancelled ones)"),
        ("cancel-booking", "cancel booking ID; its seat becomes free again"),
        ("expenses", "list expenses, newest first; --csv exports every expense (oldest first) as CSV"),
        ("purge", "remove personal data older than RETENTION_DAYS (or --days N); prints rows per table"),
        ("keygen", "write a new encrypted key pair to DIR and print the public key to upload"),
        ("check", "load the configuration as the responder would and report each problem (exit 0: all well)"),
        ("probe", "send a signed, encrypted ping or INIT to the endpoint as WhatsApp does; print the answer"),
        ("register-key", "upload the public key to Meta's Graph API for a phone number id"),
        ("upload-flow", "upload flow NAME's Flow JSON (FLOWS_DIR/NAME.json) to Meta as the JSON of Flow ID"),
    ]

    static let names = Set(summaries.map(\.name))

    static let bookingsUsage = """
        usage: flows-fcgi bookings [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--all] [--csv] [--config FILE]

        Lists appointment bookings by start time, from --from through --to (dates in the catalog's time zone);
        --all includes cancelled ones, --csv writes CSV. Prints personal data: keep the output away from logs.
        Reads the database only (DATABASE_URL); exit status 1 when there is none, 2 for a bad argument.
        """

    static let cancelUsage = """
        usage: flows-fcgi cancel-booking ID [--config FILE]

        Cancels booking ID (see flows-fcgi bookings); its seat becomes free again. Exit status 1 when there is no
        such booking, it was already cancelled or there is no database.
        """

    static let expensesUsage = """
        usage: flows-fcgi expenses [--limit N] [--offset N] [--csv] [--config FILE]

        Lists expenses, newest first: --limit N of them (\(ParameterRules.limit.lowerBound) to \
        \(ParameterRules.limit.upperBound), default \(ParameterRules.limit.upperBound), as the read API) after
        skipping --offset N. --csv exports every expense, oldest first, as CSV (cells starting with = + - @ get a
        leading '). Reads the database only (DATABASE_URL); exit status 1 when there is none, 2 for a bad argument.
        """

    /// Runs subcommand `name` with `arguments`; returns the exit status.
    static func run(_ name: String, _ arguments: [String]) -> Int32 {
        switch name {
        case "keygen": return Keygen.run(arguments)
        case "check": return Check.run(arguments)
        case "probe": return Probe.run(arguments)
        case "register-key": return RegisterKey.run(arguments)
        case "upload-flow": return UploadFlow.run(arguments)
        case "purge": return Purge.run(arguments)
        case "bookings": return bookings(arguments)
        case "cancel-booking": return cancelBooking(arguments)
        default: return expenses(arguments)
        }
    }

    private static func bookings(_ arguments: [String]) -> Int32 {
        guard let parsed = CommandArguments.parse(arguments, command: "bookings",
                                                  valued: ["--config", "--from", "--to"], switches: ["--all", "--csv"],
                                                  usage: bookingsUsage)
        else { return ExitStatus.usage }
        if parsed.help { return 0 }
        if let extra = parsed.positional.first { return parsed.usageError("unexpected argument \(extra)") }
        let from: String?, to: String?
        do throws(CommandArguments.Problem) {
            from = try parsed.date("--from")
            to = try parsed.date("--to")
        } catch {
            return parsed.usageError(error.message)
        }
        return withDatabase(parsed, access: .readOnly) { database throws in
            let list = try AppointmentStore.list(database: database, from: from, through: to,
                                                 includeCancelled: parsed.has("--all"))
            let header = ["id", "date", "time", "department", "location", "status", "name", "email", "phone"]
            let rows = list.map { [String($0.id), $0.date, $0.time, $0.department, $0.location, $0.status.rawValue,
                                   $0.name, $0.email, $0.phone] }
            print(table: [header] + rows, csv: parsed.has("--csv"))
            return 0
        }
    }

    private static func cancelBooking(_ arguments: [String]) -> Int32 {
        guard let parsed = CommandArguments.parse(arguments, command: "cancel-booking", valued: ["--config"],
                                                  usage: cancelUsage)
        else { return ExitStatus.usage }
        if parsed.help { return 0 }
        guard parsed.positional.count == 1, let id = Int64(parsed.positional[0]), id > 0 else {
            return parsed.usageError("needs one booking id, a whole number (see flows-fcgi bookings)")
        }
        return withDatabase(parsed, access: .existing) { database throws in
            switch try AppointmentStore.cancel(database: database, id: id, now: Int64(time(nil))) {
            case .cancelled(let booking):
                writeAll(1, Array(("cancelled booking \(id) (\(booking.date) \(booking.time), \(booking.location)); "
                    + "the seat is free again\n").utf8))
                return 0
            case .alreadyCancelled:
                return fail("booking \(id) was already cancelled")
            case .notFound:
                return fail("no booking \(id)")
            }
        }
    }

    private static func expenses(_ arguments: [String]) -> Int32 {
        guard let parsed = CommandArguments.parse(arguments, command: "expenses",
                                                  valued: ["--config", "--limit", "--offset"], switches: ["--csv"],
                                                  usage: expensesUsage)
        else { return ExitStatus.usage }
        if parsed.help { return 0 }
        if let extra = parsed.positional.first { return parsed.usageError("unexpected argument \(extra)") }
        let limit: Int, offset: Int
        do throws(CommandArguments.Problem) {
            limit = try parsed.integer("--limit", range: ParameterRules.limit) ?? ParameterRules.limit.upperBound
            offset = try parsed.integer("--offset", range: ParameterRules.offset) ?? 0
        } catch {
            return parsed.usageError(error.message)
        }
        return withDatabase(parsed, access: .readOnly) { database throws in
            if parsed.has("--csv") {
                writeAll(1, Array(try ExpenseStore.csv(database: database).utf8))
                return 0
            }
            let list = try ExpenseStore.list(database: database, limit: limit, offset: offset)
            let header = ["id", "date", "amount", "currency", "category", "description"]
            let rows = list.map { [String($0.id), $0.expenseDate, $0.amount, $0.currency, $0.category,
                                   $0.description ?? ""] }
            print(table: [header] + rows, csv: false)
            return 0
        }
    }

    /// Opens the configured database (`--config` and the environment) with `access` and runs `body` on it: exit
    /// status 78 for a configuration error, 1 when there is no database or it fails.
    private static func withDatabase(_ parsed: CommandArguments, access: Database.Access,
                                     _ body: (Database) throws -> Int32) -> Int32 {
        let database: Database
        do {
            let settings = try Settings(environment: currentEnvironment(), file: parsed["--config"],
                                        names: Configuration.allSettingNames)
            database = try openDatabase(settings, access: access)
        } catch let error as ConfigError {
            printError("configuration error: \(error.description)")
            return ExitStatus.config
        } catch {
            return fail(String(describing: error))
        }
        defer { database.close() }
        do {
            return try body(database)
        } catch {
            return fail(String(describing: error))
        }
    }

    /// The database an operator command works on: `DATABASE_URL` from `settings`, opened with `access` (never
    /// created) and the busy timeout, every flow's and the webhook tables' migrations applied or (read-only)
    /// required.
    static func openDatabase(_ settings: Settings, access: Database.Access) throws -> Database {
        guard let path = try Configuration.databasePath(settings) else {
            throw CommandFailure(description: "DATABASE_URL is not set (in the environment or the --config file)")
        }
        let migrations = try FlowRegistry.all.flatMap { factory throws(ConfigError) in
            try factory.make(settings).migrations
        }
        let timeout = try settings.integer("DATABASE_BUSY_TIMEOUT_MS", default: 5000, range: 0...60000)
        return try Database(path: path, busyTimeoutMilliseconds: Int32(timeout),
                            migrations: migrations + WebhookStore.migrations + Metrics.migrations, access: access)
    }

    private static func fail(_ message: String) -> Int32 {
        printError(message)
        return 1
    }

    /// Aligned columns, or CSV.
    private static func print(table: [[String]], csv: Bool) {
        var out = ""
        if csv {
            for row in table { out += CSV.line(row) }
        } else {
            var widths = [Int](repeating: 0, count: table.first?.count ?? 0)
            for row in table { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], min(cell.count, 40)) } }
            for row in table {
                let cells = row.enumerated().map { i, cell in
                    let shown = cell.count > 40 ? String(cell.prefix(39)) + "…" : cell
                    return i == row.count - 1 ? shown : shown + String(repeating: " ", count: widths[i] - shown.count)
                }
                out += cells.joined(separator: "  ") + "\n"
            }
            if table.count == 1 { out += "(none)\n" }
        }
        writeAll(1, Array(out.utf8))
    }
}
