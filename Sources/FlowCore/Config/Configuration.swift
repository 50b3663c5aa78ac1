import FlowStorePostgres

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The endpoint's validated configuration: keys parsed, secrets decoded, limits checked. Built once per process.
public struct Configuration: Sendable {
    /// Settings the core reads (flows add their own through `FlowFactory.settingNames`).
    public static let coreSettingNames: [String] = [
        "APP_SECRET", "APP_SECRET_PREVIOUS", "PRIVATE_KEY", "PRIVATE_KEY_FILE", "PASSPHRASE", "PASSPHRASE_FILE",
        "DATABASE_URL", "DATABASE_GROUP", "LOG_LEVEL", "LOG_FILE", "MAX_BODY_BYTES", "SIGNATURE_CHECK",
        "DATABASE_BUSY_TIMEOUT_MS", "DATABASE_PASSWORD_FILE", "FLOWS_DIR",
    ] + WebhookSettings.settingNames + Retention.settingNames + RuntimeSettings.settingNames + FormFlow.settingNames

    /// Every setting name known to the core and the registered flows.
    public static var allSettingNames: Set<String> {
        Set(coreSettingNames + FlowRegistry.all.flatMap(\.settingNames))
    }

    /// App secrets accepted for `X-Hub-Signature-256`, current first (empty only when the check is off).
    public let appSecrets: [[UInt8]]
    /// False only when the operator turned signature checking off for development.
    public let signatureCheck: Bool
    /// Private keys, newest first; each request is tried against each.
    public let keys: [PrivateKey]
    /// Where the data lives (`DATABASE_URL`), if configured.
    public let database: DatabaseLocation?
    /// SQLite file from `DATABASE_URL=sqlite:/path`, if configured (`nil` for PostgreSQL).
    public var databasePath: String? { database?.sqlitePath }
    /// `DATABASE_GROUP`: the group of a database file the responder creates (0640 instead of 0600), if any.
    public let databaseGroup: gid_t?
    /// How long a statement waits for another process's lock.
    public let busyTimeoutMilliseconds: Int32
    /// Least severe level logged.
    public let logLevel: LogLevel
    /// Log file, or `nil` for standard error.
    public let logFile: String?
    /// Request bodies above this many bytes get 413.
    public let maxBodyBytes: Int
    /// The webhook receiver's and read API's settings.
    public let webhook: WebhookSettings
    /// Log format, recycling, request deadline, metrics flushing.
    public let runtime: RuntimeSettings
    /// How many body bytes a transport reads before it stops and flags the body as too large: the larger of the
    /// flows' and the webhook's limits (each route then applies its own).
    public var transportBodyLimit: Int { max(maxBodyBytes, webhook.maxBodyBytes) }
    /// The flows served, by name.
    public private(set) var flows: [String: any Flow] = [:]
    /// The flows served, in the order added (registration order, then any added later): what retention, the read
    /// API's statistics and the metrics iterate over.
    public private(set) var servedFlows: [any Flow] = []
    /// The read API resources of the served flows, by path (`bookings`).
    public private(set) var readResources: [String: ReadResource] = [:]
    /// Things worth telling the operator that do not stop startup (unknown setting names, files ignored in
    /// `FLOWS_DIR`).
    public private(set) var warnings: [String]

    /// Validates `settings`: loads every key, decodes secrets, checks limits, builds the flows: `factories`' coded
    /// flows, then (`loadFormFlows`) every form flow of `FLOWS_DIR`, whose Flow JSON is checked with the coded
    /// flows' (see `FormFlows`).
    /// - Throws: `ConfigError` naming the setting or file and the reason (never key material or secrets); for Flow
    ///   JSON, every problem as `file: /pointer: message`.
    public init(settings: Settings, flows factories: [FlowFactory] = FlowRegistry.all,
                loadFormFlows: Bool = true) throws(ConfigError) {
        var warnings: [String] = []
        let known = Configuration.allSettingNames.union(factories.flatMap(\.settingNames))
        for key in settings.fileKeys where !known.contains(key) {
            // Setting names are upper case: a mixed-case "name" is more likely a line of a PEM pasted without
            // quotes (base64 ending in '='), which is not repeated.
            let looksLikeName = key.utf8.count <= 64
                && key.utf8.allSatisfy { ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F }
            warnings.append("\(settings.file ?? "config file"): "
                + (looksLikeName ? "unknown setting \(key) (ignored)"
                    : "a line that is not an upper-case setting name (ignored, not shown; a multi-line value such as "
                        + "a PEM goes in double quotes)"))
        }

        signatureCheck = try settings.flag("SIGNATURE_CHECK", default: true)
        appSecrets = [settings["APP_SECRET"], settings["APP_SECRET_PREVIOUS"]].compactMap { $0 }.map { Array($0.utf8) }
        if settings["APP_SECRET"] == nil, settings["APP_SECRET_PREVIOUS"] != nil {
            throw ConfigError("APP_SECRET_PREVIOUS is set but APP_SECRET is not: set the current secret too")
        }
        for name in ["APP_SECRET", "APP_SECRET_PREVIOUS"] {
            // Meta's app secrets are hex digits: a space or control character is a copy-and-paste accident.
            if let value = settings[name], !value.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) {
                throw ConfigError(setting: name, value: value, "contains spaces or characters other than printable "
                    + "ASCII: copy the app secret again from the Meta app dashboard (App settings, Basic)")
            }
        }
        if signatureCheck, appSecrets.isEmpty {
            throw ConfigError("APP_SECRET is not set: requests cannot be authenticated. Set APP_SECRET to the Meta "
                + "app secret (or SIGNATURE_CHECK=off for local development only)")
        }

        if settings["PASSPHRASE"] != nil, settings["PASSPHRASE_FILE"] != nil {
            throw ConfigError("PASSPHRASE and PASSPHRASE_FILE are both set: use one")
        }
        var passphrase = settings["PASSPHRASE"]
        if let file = settings["PASSPHRASE_FILE"] {
            var text = try readTextFile(file, what: "PASSPHRASE_FILE")
            while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
            passphrase = text
        }

        var keys: [PrivateKey] = []
        let files = (settings["PRIVATE_KEY_FILE"] ?? "").split(separator: ",").map { String($0).trimmingSpaces() }
            .filter { !$0.isEmpty }
        do {
            for file in files {
                let pem = try readFile(file, what: "PRIVATE_KEY_FILE")
                keys.append(try PrivateKey.load(pem: pem, passphrase: passphrase, file: file))
            }
            if var inline = settings["PRIVATE_KEY"] {
                // `.env` files often carry the PEM on one line with literal \n.
                if !inline.contains("\n") { inline = inline.replacingEscapes() }
                keys.append(try PrivateKey.load(pem: Array(inline.utf8), passphrase: passphrase, file: nil))
            }
        } catch let error as KeyError {
            throw ConfigError(error.description)
        } catch {
            throw error as! ConfigError
        }
        guard !keys.isEmpty else {
            throw ConfigError("no private key: set PRIVATE_KEY_FILE=/path/private.pem (or PRIVATE_KEY)")
        }
        self.keys = keys

        database = try Configuration.databaseLocation(settings)
        databaseGroup = try Configuration.databaseGroup(settings)
        busyTimeoutMilliseconds = Int32(try settings.integer("DATABASE_BUSY_TIMEOUT_MS", default: 5000, range: 0...60000))

        if let level = settings["LOG_LEVEL"] {
            guard let parsed = LogLevel(name: level) else {
                throw ConfigError(setting: "LOG_LEVEL", value: level, "expected debug, info, warning or error")
            }
            logLevel = parsed
        } else {
            logLevel = .info
        }
        logFile = settings["LOG_FILE"]
        maxBodyBytes = try settings.integer("MAX_BODY_BYTES", default: 1 << 20, range: 1024...(64 << 20))
        webhook = try WebhookSettings(settings: settings)
        retentionDays = try Retention.days(settings)
        runtime = try RuntimeSettings(settings: settings)
        if case .postgres? = database, runtime.metricsDirectory == nil {
            warnings.append("METRICS_DIR is not set: with a PostgreSQL DATABASE_URL there is no database file to keep "
                + "the metrics beside, so /metrics counts only the process answering it; set METRICS_DIR to a "
                + "host-local folder, e.g. /var/lib/flows-fcgi/metrics")
        }

        self.warnings = warnings
        for factory in factories {
            try add(try factory.make(settings))
        }
        if loadFormFlows {
            let coded = Set((FlowRegistry.all + factories).map(\.name))
            let forms = try FormFlows.load(settings, coded: coded, warnings: &self.warnings)
            try add(forms: forms)
        }
    }

    /// Serves the form flows `forms` (after the coded ones) and, when there is any, `GET .../submissions`.
    public mutating func add(forms: [FormFlow]) throws(ConfigError) {
        for flow in forms { try add(flow) }
        let names = servedFlows.compactMap { ($0 as? FormFlow)?.name }
        guard !names.isEmpty else { return }
        let resource = FormSubmissions.resource(flows: names)
        if let taken = readResources[resource.path], taken.parameters != resource.parameters {
            throw ConfigError("the read API path '\(resource.path)' of the form flows is already taken by a coded flow")
        }
        readResources[resource.path] = resource
    }

    /// Serves `flow` too (after the registered ones): its name and read resources must be new.
    public mutating func add(_ flow: any Flow) throws(ConfigError) {
        guard flows[flow.name] == nil else { throw ConfigError("two flows are named '\(flow.name)'") }
        for resource in flow.readResources {
            guard !ReadResource.corePaths.contains(resource.path), readResources[resource.path] == nil else {
                throw ConfigError("flow '\(flow.name)': the read API path '\(resource.path)' is already taken")
            }
            readResources[resource.path] = resource
        }
        flows[flow.name] = flow
        servedFlows.append(flow)
    }

    /// The SQLite path of `DATABASE_URL=sqlite:/path` (`nil` when unset or PostgreSQL).
    public static func databasePath(_ settings: Settings) throws(ConfigError) -> String? {
        try databaseLocation(settings)?.sqlitePath
    }

    /// `DATABASE_URL` (`nil` when unset), for the responder and operator commands: `sqlite:/absolute/path`, or a
    /// PostgreSQL connection URI (`postgresql://` or `postgres://`, every libpq parameter accepted) with the
    /// password in it, in `DATABASE_PASSWORD_FILE`, or in libpq's `PGPASSFILE`.
    public static func databaseLocation(_ settings: Settings) throws(ConfigError) -> DatabaseLocation? {
        guard let url = settings["DATABASE_URL"] else { return nil }
        if url.hasPrefix("postgresql://") || url.hasPrefix("postgres://") {
            let passwordFile = settings["DATABASE_PASSWORD_FILE"]
            if let passwordFile, !passwordFile.hasPrefix("/") {
                throw ConfigError(setting: "DATABASE_PASSWORD_FILE", value: passwordFile, "give an absolute path")
            }
            // Parsed by libpq now (loaded only here), so a malformed URI stops startup rather than every request.
            if let problem = DatabaseLocation.postgresURLProblem(url) {
                throw ConfigError(setting: "DATABASE_URL", value: url, problem)
            }
            return .postgres(url: url, passwordFile: passwordFile)
        }
        guard url.hasPrefix("sqlite:") else {
            throw ConfigError(setting: "DATABASE_URL", value: url,
                              "expected sqlite:/path/to/flows.db or postgresql://user@host/dbname")
        }
        if settings["DATABASE_PASSWORD_FILE"] != nil {
            throw ConfigError(setting: "DATABASE_PASSWORD_FILE", value: settings["DATABASE_PASSWORD_FILE"] ?? "",
                              "only for a PostgreSQL DATABASE_URL")
        }
        var path = String(url.dropFirst("sqlite:".count))
        if path.hasPrefix("//") { path.removeFirst(2) }
        guard path.hasPrefix("/") else {
            throw ConfigError(setting: "DATABASE_URL", value: url,
                              "give an absolute path, e.g. sqlite:/var/lib/flows-fcgi/flows.db")
        }
        return .sqlite(path: path)
    }

    /// The group id of `DATABASE_GROUP` (a group name or number; `nil` when unset), for every process that may
    /// create the database file.
    public static func databaseGroup(_ settings: Settings) throws(ConfigError) -> gid_t? {
        guard let name = settings["DATABASE_GROUP"] else { return nil }
        if let entry = getgrnam(name) { return entry.pointee.gr_gid }
        if let number = gid_t(name), number != gid_t.max { return number }
        throw ConfigError(setting: "DATABASE_GROUP", value: name, "no such group")
    }

    /// Flow names in the order served.
    public var flowOrder: [String] { servedFlows.map(\.name) }

    /// `RETENTION_DAYS`: personal data older than this many days is purged (0: kept forever; see `Retention`).
    public let retentionDays: Int

    /// The migrations of every flow, in registration order, then the webhook tables'.
    public var migrations: [Migration] { Configuration.migrations(flows: servedFlows) }

    /// The migrations the responder applies when it serves `flows`: each flow's, in order, then the webhook,
    /// metrics and maintenance tables'; a migration several flows name (the form flows' shared tables) once.
    public static func migrations(flows: [any Flow]) -> [Migration] {
        var seen: Set<String> = []
        return (flows.flatMap(\.migrations) + WebhookStore.migrations + Metrics.migrations + Retention.migrations)
            .filter { seen.insert($0.id).inserted }
    }
}

/// How a flow is built from the settings.
public struct FlowFactory: Sendable {
    /// The path name, e.g. `expense`.
    public let name: String
    /// The settings this flow reads (so they are not reported as unknown).
    public let settingNames: [String]
    /// The operator commands this flow adds (`flows-fcgi bookings`), listed by `flows-fcgi --help`.
    public let commands: [FlowCommand]
    /// Builds the flow, validating its settings.
    public let make: @Sendable (Settings) throws(ConfigError) -> any Flow

    /// A factory for the flow at `.../flows/<name>`.
    public init(name: String, settingNames: [String], commands: [FlowCommand] = [],
                make: @escaping @Sendable (Settings) throws(ConfigError) -> any Flow) {
        self.name = name
        self.settingNames = settingNames
        self.commands = commands
        self.make = make
    }
}
