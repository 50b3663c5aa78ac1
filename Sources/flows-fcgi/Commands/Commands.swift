import FlowCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Operator subcommands: they read the same configuration as the responder and work on its database.
enum Command {
    /// Each command and what it does, in the order `--help` lists them: the registered flows' commands, then the
    /// core's.
    static let summaries: [(name: String, summary: String)] = (FlowRegistry.all.flatMap(\.commands)
        + [FormSubmissions.command(flows: [])]).map { ($0.name, $0.summary) } + [
        ("purge", "remove personal data older than RETENTION_DAYS (or --days N); prints rows per table"),
        ("copy-database", "copy a SQLite database into an empty PostgreSQL one (moving to several hosts); verifies "
            + "the counts"),
        ("keygen", "write a new encrypted key pair to DIR and print the public key to upload"),
        ("check", "load the configuration as the responder would and report each problem (exit 0: all well)"),
        ("probe", "send a signed, encrypted ping or INIT to the endpoint as WhatsApp does; print the answer"),
        ("register-key", "upload the public key to Meta's Graph API for a phone number id"),
        ("upload-flow", "upload flow NAME's Flow JSON (FLOWS_DIR/NAME.json) to Meta as the JSON of Flow ID"),
    ]

    static let names = Set(summaries.map(\.name))

    /// Runs subcommand `name` with `arguments`; returns the exit status.
    static func run(_ name: String, _ arguments: [String]) -> Int32 {
        switch name {
        case "keygen": return Keygen.run(arguments)
        case "check": return Check.run(arguments)
        case "probe": return Probe.run(arguments)
        case "register-key": return RegisterKey.run(arguments)
        case "upload-flow": return UploadFlow.run(arguments)
        case "purge": return Purge.run(arguments)
        case "copy-database": return CopyDatabase.run(arguments)
        case "submissions":
            // The form flows it may list are those FLOWS_DIR serves: loaded before the arguments are checked.
            let names: [String]
            do {
                let settings = try Settings(environment: currentEnvironment(), file: configFile(arguments),
                                            names: Configuration.allSettingNames)
                names = try servedFlows(settings).compactMap { ($0 as? FormFlow)?.name }
            } catch {
                printError("configuration error: \(error.description)")
                return ExitStatus.config
            }
            return run(FormSubmissions.command(flows: names), arguments)
        default:
            guard let command = FlowCommand.find(name, in: FlowRegistry.all) else { return ExitStatus.usage }
            return run(command, arguments)
        }
    }

    /// Runs a flow's command: arguments checked first (exit status 2), then the database opened with the
    /// command's access; its outcome printed (standard output, 0) or its failure (standard error, 1).
    private static func run(_ command: FlowCommand, _ arguments: [String]) -> Int32 {
        let parsed: CommandArguments
        let work: FlowCommand.Work
        do throws(CommandArguments.Problem) {
            let (arguments, prepared) = try command.parse(arguments)
            guard let prepared else {
                writeAll(1, Array((command.usage + "\n").utf8))
                return 0
            }
            (parsed, work) = (arguments, prepared)
        } catch {
            return CommandArguments(command: command.name).usageError(error.message)
        }
        return withDatabase(parsed, access: command.access) { database throws in
            switch try work(database, Int64(time(nil))) {
            case .done(let text):
                writeAll(1, Array(text.utf8))
                return 0
            case .failed(let message):
                return fail(message)
            }
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
        guard let location = try Configuration.databaseLocation(settings) else {
            throw CommandFailure(description: "DATABASE_URL is not set (in the environment or the --config file)")
        }
        let migrations = try servedFlows(settings).flatMap(\.migrations)
        let timeout = try settings.integer("DATABASE_BUSY_TIMEOUT_MS", default: 5000, range: 0...60000)
        return try location.open(migrations: migrations + WebhookStore.migrations + Metrics.migrations,
                                 busyTimeoutMilliseconds: Int32(timeout), access: access)
    }

    /// The flows the responder would serve with `settings` (each validating its settings), in order: what the
    /// operator commands migrate and purge.
    static func servedFlows(_ settings: Settings) throws(ConfigError) -> [any Flow] {
        let coded = try FlowRegistry.all.map { factory throws(ConfigError) in try factory.make(settings) }
        var warnings: [String] = []
        let forms = try FormFlows.load(settings, coded: Set(FlowRegistry.all.map(\.name)), warnings: &warnings)
        return coded + forms
    }

    /// The value of `--config` in `arguments` (`--config FILE` or `--config=FILE`), read before they are checked.
    static func configFile(_ arguments: [String]) -> String? {
        for (i, argument) in arguments.enumerated() {
            if argument.hasPrefix("--config=") { return String(argument.dropFirst("--config=".count)) }
            if argument == "--config", i + 1 < arguments.count { return arguments[i + 1] }
        }
        return nil
    }

    private static func fail(_ message: String) -> Int32 {
        printError(message)
        return 1
    }
}
