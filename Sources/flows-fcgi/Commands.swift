import FlowCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Operator subcommands: they read the same configuration as the responder and work on its database.
enum Command {
    static let names: Set<String> = [
        "bookings", "cancel-booking", "expenses", "keygen", "check", "probe", "register-key", "purge",
    ]

    static let usage = """
        usage: flows-fcgi bookings [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--all] [--csv] [--config FILE]
               flows-fcgi cancel-booking ID [--config FILE]
               flows-fcgi expenses [--limit N] [--offset N] [--csv] [--config FILE]
               flows-fcgi keygen --out DIR [--bits 2048] [--format pkcs8|pkcs1] [--passphrase-file FILE]
               flows-fcgi check [--config FILE]
               flows-fcgi probe URL|unix:/path.sock [--flow NAME] [--init] [--config FILE] [--public-key FILE]
               flows-fcgi register-key --phone-number-id ID --token-file FILE [--public-key FILE | --config FILE]
               flows-fcgi purge [--days N] [--dry-run] [--config FILE]

        bookings         list appointment bookings by start time (--all includes cancelled ones)
        cancel-booking   cancel booking ID; its seat becomes free again
        expenses         list expenses, newest first; --csv exports every expense (oldest first) as CSV
        keygen           write a new encrypted key pair to DIR and print the public key to upload
        check            load the configuration as the responder would and report each problem (exit 0: all well)
        probe            send a signed, encrypted ping or INIT to the endpoint as WhatsApp does; print the answer
        register-key     upload the public key to Meta's Graph API for a phone number id
        purge            remove personal data older than RETENTION_DAYS (or --days N); prints rows per table
        bookings, cancel-booking and expenses print personal data (names, emails, phones): keep their output
        away from logs.
        """

    /// Runs subcommand `name` with `arguments`; returns the exit status.
    static func run(_ name: String, _ arguments: [String]) -> Int32 {
        if name == "keygen" { return Keygen.run(arguments) }
        if name == "check" { return Check.run(arguments) }
        if name == "probe" { return Probe.run(arguments) }
        if name == "register-key" { return RegisterKey.run(arguments) }
        if name == "purge" { return Purge.run(arguments) }
        var flags: [String: String] = [:]
        var positional: [String] = []
        var i = 0
        let valued: Set<String> = ["--config", "--from", "--to", "--limit", "--offset"]
        while i < arguments.count {
            let argument = arguments[i]
            if argument == "--help" || argument == "-h" {
                writeAll(1, Array((usage + "\n").utf8))
                return 0
            }
            if valued.contains(argument) {
                guard i + 1 < arguments.count else { return fail("\(argument) needs a value") }
                flags[argument] = arguments[i + 1]
                i += 2
            } else if argument.hasPrefix("--") {
                flags[argument] = ""
                i += 1
            } else {
                positional.append(argument)
                i += 1
            }
        }
        let database: Database
        do {
            let settings = try Settings(environment: currentEnvironment(), file: flags["--config"],
                                        names: Configuration.allSettingNames)
            guard let path = try Configuration.databasePath(settings) else {
                return fail("DATABASE_URL is not set (in the environment or the --config file)")
            }
            let migrations = try FlowRegistry.all.flatMap { factory throws(ConfigError) in
                try factory.make(settings).migrations
            }
            database = try Database(path: path, migrations: migrations,
                                    fileGroup: try Configuration.databaseGroup(settings))
        } catch let error as ConfigError {
            return fail("configuration error: \(error.description)")
        } catch {
            return fail(String(describing: error))
        }
        defer { database.close() }
        do {
            switch name {
            case "bookings":
                let list = try AppointmentStore.list(database: database, from: flags["--from"], through: flags["--to"],
                                                     includeCancelled: flags["--all"] != nil)
                let header = ["id", "date", "time", "department", "location", "status", "name", "email", "phone"]
                let rows = list.map { [String($0.id), $0.date, $0.time, $0.department, $0.location, $0.status.rawValue,
                                       $0.name, $0.email, $0.phone] }
                print(table: [header] + rows, csv: flags["--csv"] != nil)
            case "cancel-booking":
                guard positional.count == 1, let id = Int64(positional[0]) else {
                    return fail("cancel-booking needs one booking id (see flows-fcgi bookings)")
                }
                switch try AppointmentStore.cancel(database: database, id: id, now: Int64(time(nil))) {
                case .cancelled(let booking):
                    writeAll(1, Array("cancelled booking \(id) (\(booking.date) \(booking.time), \(booking.location)); the seat is free again\n".utf8))
                case .alreadyCancelled:
                    return fail("booking \(id) was already cancelled")
                case .notFound:
                    return fail("no booking \(id)")
                }
            default:
                if flags["--csv"] != nil {
                    writeAll(1, Array(try ExpenseStore.csv(database: database).utf8))
                } else {
                    let limit = Int(flags["--limit"] ?? "100") ?? 100
                    let offset = Int(flags["--offset"] ?? "0") ?? 0
                    let list = try ExpenseStore.list(database: database, limit: limit, offset: offset)
                    let header = ["id", "date", "amount", "currency", "category", "description"]
                    let rows = list.map { [String($0.id), $0.expenseDate, $0.amount, $0.currency, $0.category,
                                           $0.description ?? ""] }
                    print(table: [header] + rows, csv: false)
                }
            }
        } catch {
            return fail(String(describing: error))
        }
        return 0
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
