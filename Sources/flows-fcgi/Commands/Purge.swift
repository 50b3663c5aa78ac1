import FlowCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `flows-fcgi purge` and the automatic purge thread of each FastCGI process (see `Retention` for what is purged).
enum Purge {
    static let usage = """
        usage: flows-fcgi purge [--days N] [--dry-run] [--config FILE]

        Removes personal data older than N days (default: RETENTION_DAYS, else \(Retention.defaultDays); 0 keeps
        everything): anonymises appointment bookings whose slot started before then, removes expense descriptions,
        deletes webhook messages, statuses, confirmations, alerts, outbox items and flow sessions (sessions are
        kept at least one session lifetime; a purged flow token keeps getting 427). Prints the rows per table;
        --dry-run counts without changing anything. The database file does not shrink: VACUUM it at a quiet time.
        """

    /// Runs `purge` with `arguments`; returns the exit status.
    static func run(_ arguments: [String]) -> Int32 {
        guard let parsed = CommandArguments.parse(arguments, command: "purge", valued: ["--config", "--days"],
                                                  switches: ["--dry-run"], usage: usage)
        else { return ExitStatus.usage }
        if parsed.help { return 0 }
        if let extra = parsed.positional.first { return parsed.usageError("unexpected argument \(extra)") }
        let dryRun = parsed.has("--dry-run")
        let daysOption: Int?
        do throws(CommandArguments.Problem) {
            daysOption = try parsed.integer("--days", range: Retention.dayRange)
        } catch {
            return parsed.usageError(error.message)
        }
        let database: Database
        let days: Int
        let flows: [any Flow]
        do {
            let settings = try Settings(environment: currentEnvironment(), file: parsed["--config"],
                                        names: Configuration.allSettingNames)
            days = try daysOption ?? Retention.days(settings)
            flows = try Command.servedFlows(settings)
            database = try Command.openDatabase(settings, access: .existing)
        } catch let error as ConfigError {
            printError("configuration error: \(error.description)")
            return ExitStatus.config
        } catch {
            printError(String(describing: error))
            return 1
        }
        defer { database.close() }
        guard days > 0 else {
            writeAll(1, Array("retention is 0 days (RETENTION_DAYS=0): nothing purged\n".utf8))
            return 0
        }
        do {
            let report = try Retention.purge(database: database, flows: flows, days: days, now: Int64(time(nil)),
                                             dryRun: dryRun)
            var out = (dryRun ? "dry run, nothing changed; would purge" : "purged") + ", older than \(days) days:\n"
            let width = report.counts.map(\.table.count).max() ?? 0
            for count in report.counts {
                out += "  " + count.table + String(repeating: " ", count: width - count.table.count + 2)
                    + String(count.rows) + "\n"
            }
            writeAll(1, Array(out.utf8))
        } catch {
            printError("purge failed, nothing of the failing table family changed: \(error)")
            return 1
        }
        return 0
    }

    /// Starts the automatic purge thread of a FastCGI process when a database is configured and `RETENTION_DAYS`
    /// is not 0. A few seconds after start and then every minute it asks `Retention.purgeIfDue`: a read first,
    /// and only when an hour has passed since the last purge of this database (by any process) a `BEGIN
    /// IMMEDIATE` claim, so one process purges per hour. It stops when the process is asked to stop.
    static func start(configuration: Configuration, log: Logger, firstCheckSeconds: Int = 5,
                      everySeconds: Int = 60) -> pthread_t? {
        guard let location = configuration.database, configuration.retentionDays > 0 else { return nil }
        let days = configuration.retentionDays
        let flows = configuration.servedFlows
        let timeout = configuration.busyTimeoutMilliseconds
        return startThread {
            var wait = firstCheckSeconds
            while pauseUnlessStopping(seconds: wait) {
                wait = everySeconds
                do {
                    let database = try location.open(busyTimeoutMilliseconds: timeout, brief: true)
                    defer { database.close() }
                    guard let report = try Retention.purgeIfDue(database: database, flows: flows, days: days,
                                                                now: Int64(time(nil)))
                    else { continue }
                    let tables = report.counts.map { "\($0.table.prefix { $0 != " " })=\($0.rows)" }
                    log.info("purge done", ["days": String(days), "rows": String(report.total),
                                            "tables": tables.joined(separator: ",")])
                } catch {
                    log.warning("automatic purge failed; retrying later", ["error": String(describing: error)])
                }
            }
        }
    }
}
