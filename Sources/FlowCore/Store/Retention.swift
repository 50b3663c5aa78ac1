/// Retention of personal data: `RETENTION_DAYS` and the purge that removes what is older, run by the operator
/// (`flows-fcgi purge`) and automatically, at most once per `Retention.interval` per database, by the FastCGI
/// processes.
///
/// What a purge does, per table family, each in one `BEGIN IMMEDIATE` transaction (each served flow's `purge`, in
/// registration order, then the webhook tables'):
/// - appointment bookings whose slot started more than the period ago are anonymised (name, email, phone, details
///   emptied; the row stays for statistics); expenses older than the period lose their description (amounts stay);
/// - webhook messages, statuses, confirmations, Flows alerts and callback outbox items older than the period are
///   deleted;
/// - appointment sessions older than the period, and never younger than the session lifetime, are deleted, leaving
///   a tombstone (SHA-256 of the flow token) so an old token still gets 427 and can never start over; expense
///   sessions (their tokens do not expire) older than the period likewise, a tombstone for each completed one.
///
/// The purge connection uses `PRAGMA secure_delete=ON`, so removed text is overwritten in the database file. The file
/// does not shrink: free pages are reused by new rows; run `VACUUM` yourself (with the responders stopped, or at a
/// quiet time) to give the space back.
public enum Retention {
    /// The setting read here (listed in `Configuration.coreSettingNames`).
    public static let settingNames = ["RETENTION_DAYS"]
    /// The `maintenance` table (`last_purge_at`, the automatic purge's claim). Older versions created it at their
    /// first purge, hence `IF NOT EXISTS`.
    public static let migrations = [
        Migration(id: "maintenance-1", sqlite: """
            CREATE TABLE IF NOT EXISTS maintenance (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID
            """, postgres: """
            CREATE TABLE IF NOT EXISTS maintenance (name text PRIMARY KEY, value bigint NOT NULL)
            """),
    ]

    /// The retention period when `RETENTION_DAYS` is unset.
    public static let defaultDays = 90
    /// The shortest time between two automatic purges of one database, in seconds.
    public static let interval: Int64 = 3600

    /// The values `RETENTION_DAYS` (and `purge --days`) accept; 0 keeps everything forever.
    public static let dayRange = 0...36500

    /// `RETENTION_DAYS` (0 to 36500; 0 keeps everything forever).
    public static func days(_ settings: Settings) throws(ConfigError) -> Int {
        try settings.integer("RETENTION_DAYS", default: defaultDays, range: dayRange)
    }

    /// How a purge went: rows changed per table, in the order purged.
    public struct Report: Sendable, Equatable {
        /// `(table, rows)` pairs; a table's name says when rows were anonymised rather than deleted.
        public var counts: [Count] = []
        /// True when nothing was written (a dry run).
        public var dryRun = false

        /// One table's count.
        public struct Count: Sendable, Equatable {
            /// The table, e.g. `webhook_messages`.
            public let table: String
            /// Rows deleted or anonymised.
            public let rows: Int
        }

        /// The rows of `table` (0 when not purged).
        public func rows(_ table: String) -> Int {
            counts.first { $0.table == table || $0.table.hasPrefix(table + " ") }?.rows ?? 0
        }

        /// Every count added up.
        public var total: Int { counts.reduce(0) { $0 + $1.rows } }
    }

    /// Purges everything older than `days` days before `now` (nothing when `days` is 0).
    ///
    /// - Parameters:
    ///   - database: a connection to a migrated database; tables of flows or features not present are skipped.
    ///   - flows: the flows served, each purging its own data.
    ///   - days: the retention period.
    ///   - sessionLifetimeSeconds: sessions are kept at least this long; `nil`: the longest of `flows`.
    ///   - now: the current time in seconds since the epoch (a parameter so tests can move it).
    ///   - dryRun: count what would go, write nothing.
    public static func purge(database: Database, flows: [any Flow], days: Int, sessionLifetimeSeconds: Int64? = nil,
                             now: Int64, dryRun: Bool = false) throws(DatabaseError) -> Report
    {
        var report = Report(dryRun: dryRun)
        guard days > 0 else { return report }
        if database.dialect == .sqlite { try database.execute("PRAGMA secure_delete=ON") }
        let before = now - Int64(days) * 86400
        let sessionsBefore = min(before, now - (sessionLifetimeSeconds ?? Retention.sessionLifetimeSeconds(flows)))
        var counts: [(String, Int)] = []
        for flow in flows {
            counts += try flow.purge(database: database, before: before, sessionsBefore: sessionsBefore, dryRun: dryRun)
        }
        if try database.hasTable("webhook_outbox") {
            counts += try WebhookStore.purge(database: database, before: before, dryRun: dryRun)
        }
        report.counts = counts.map { Report.Count(table: $0.0, rows: $0.1) }
        return report
    }

    /// Purges when no process purged this database within `interval` seconds, else returns `nil`.
    ///
    /// The claim is the `maintenance` row `last_purge_at`, set by one conditional upsert (`... DO UPDATE ... WHERE
    /// value <= now - interval RETURNING 1`), so of several processes or hosts due at once exactly one purges; a
    /// cheap read comes first.
    public static func purgeIfDue(database: Database, flows: [any Flow], days: Int,
                                  sessionLifetimeSeconds: Int64? = nil, now: Int64,
                                  interval: Int64 = Retention.interval) throws(DatabaseError) -> Report?
    {
        guard days > 0 else { return nil }
        if try database.hasTable("maintenance") {
            if let last = try lastPurge(database), now - last < interval { return nil }
        } else {
            // A database opened without `Retention.migrations` (an operator command's).
            try database.writeTransaction { () throws(DatabaseError) in
                try database.execute(Retention.migrations[0].sql(database.dialect))
            }
        }
        // One statement, so of several processes (or hosts) due at once exactly one gets the row back.
        let claimed = try !database.query("""
            INSERT INTO maintenance (name, value) VALUES ('last_purge_at', ?1)
            ON CONFLICT (name) DO UPDATE SET value = excluded.value WHERE maintenance.value <= ?2
            RETURNING 1
            """, [.integer(now), .integer(now - interval)]).isEmpty
        guard claimed else { return nil }
        return try purge(database: database, flows: flows, days: days, sessionLifetimeSeconds: sessionLifetimeSeconds,
                         now: now)
    }

    /// When this database was last purged automatically (`nil`: never).
    public static func lastPurge(_ database: Database) throws(DatabaseError) -> Int64? {
        try database.query("SELECT value FROM maintenance WHERE name = 'last_purge_at'").first?.first?.int
    }

    /// The longest time a flow token may be used by one of `flows`, in seconds (sessions are kept this long).
    public static func sessionLifetimeSeconds(_ flows: [any Flow]) -> Int64 {
        flows.map(\.sessionLifetimeSeconds).max() ?? 0
    }

    /// The tombstone key of a flow token: lowercase hex SHA-256 (the token itself is not kept).
    public static func tokenDigest(_ token: String) -> String {
        Hex.encode(Digest.sha256(Array(token.utf8)))
    }

    /// True when table `name` exists (a flow's `purge` skips a database without its migrations).
    public static func hasTable(_ database: Database, _ name: String) throws(DatabaseError) -> Bool {
        try database.hasTable(name)
    }
}
