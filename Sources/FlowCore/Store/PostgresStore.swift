import FlowStorePostgres
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One PostgreSQL connection behind `Database`, owned by one worker thread (issue 18: several hosts, one database).
///
/// - Statements keep SQLite's `?N` placeholders: each SQL text is rewritten to `$N` once and prepared under a
///   generated name (`s1`, `s2`, ...), cached by its text like SQLite's statement cache.
/// - Values: integers travel as `bigint`, reals as `double precision`. Text holding U+0000 (which PostgreSQL text
///   cannot hold) is stored with a reversible escape (`Escape`): U+0000 becomes U+FDD0 `0`, U+FDD0 itself U+FDD0
///   `E`; read back, the text is whole again. Only texts holding either character change.
/// - Errors: `PostgresError.outcome` becomes `DatabaseError.outcome` (unavailable 503, conflict retried).
/// - Write transactions are read committed; one that loses a race (`.conflict`: serialization failure, deadlock,
///   a unique key taken meanwhile) runs again, up to `conflictRetries` times.
/// - An unreachable server is not fatal: while it is away each call answers `.unavailable` at once (at most one
///   connection attempt per `reconnectInterval`), and the first call after it is back reconnects, re-prepares and
///   migrates if this connection never could.
final class PostgresStore: StoreConnection {
    private let url: String
    private let passwordFile: String?
    private let migrations: [Migration]
    private let access: Database.Access
    private let statementTimeoutMilliseconds: Int
    private var connection: PostgresConnection?
    /// Cancels the running statement from the watchdog thread; follows every connection this store makes.
    let canceller = PostgresCanceller()
    private var statements: [String: PostgresStatement] = [:]
    private var inTransaction = false
    /// Monotonic nanoseconds before which no new connection attempt is made (0: none failed).
    private var retryAfter: Int64 = 0
    /// The last connection failure, answered while waiting for `retryAfter`.
    private var lastFailure: DatabaseError?

    let dialect = SQLDialect.postgres
    /// The URL with its password masked.
    let location: String
    var deadline: Int64 = 0

    /// How often a broken connection tries to connect again.
    static let reconnectInterval: Int64 = 250_000_000
    /// How many times a write transaction that lost a race runs again.
    static let conflictRetries = 3
    /// The `pg_advisory_xact_lock` key the migration runner holds ("flowsfcg" in ASCII).
    static let migrationLockKey: Int64 = 0x666C_6F77_7366_6367

    /// Connects to `url` and applies `migrations` (under an advisory lock, so hosts starting together apply each
    /// once). A server that does not answer (or is starting up) is not an error: the store connects at its first
    /// use. A refused login, a missing database, a bad URL or a failed migration is thrown.
    init(url: String, passwordFile: String?, migrations: [Migration], access: Database.Access,
         statementTimeoutMilliseconds: Int) throws(DatabaseError) {
        self.url = url
        self.passwordFile = passwordFile
        self.migrations = migrations
        self.access = access
        self.statementTimeoutMilliseconds = statementTimeoutMilliseconds
        location = PostgresURL.masked(url)
        PostgresCounter.inUse.store(true, ordering: .relaxed)
        do throws(PostgresError) {
            _ = try connect()
        } catch where error.kind == .unreachable || error.kind == .serverUnavailable {
            lastFailure = PostgresStore.map(error)
            retryAfter = monotonicNanoseconds() + PostgresStore.reconnectInterval
        } catch {
            throw PostgresStore.map(error)
        }
    }

    deinit { close() }

    func close() {
        connection?.close()
        connection = nil
        statements.removeAll()
    }

    // MARK: - Connecting

    /// A new connection, its timeouts set and the schema migrated (or checked, for a read-only store).
    private func connect() throws(PostgresError) -> PostgresConnection {
        let fresh = try PostgresConnection(url: url, passwordFile: passwordFile, canceller: canceller)
        // The lock wait ends a little before the statement limit, so it is reported as what it is.
        if statementTimeoutMilliseconds > 0 {
            try fresh.setTimeouts(statementMilliseconds: statementTimeoutMilliseconds,
                                  lockMilliseconds: max(statementTimeoutMilliseconds * 9 / 10, 1))
        }
        if access == .readOnly {
            try PostgresStore.checkMigrated(fresh, migrations)
        } else {
            try PostgresStore.migrate(fresh, migrations)
        }
        connection = fresh
        statements.removeAll()
        if retryAfter != 0 { PostgresCounter.reconnects.add() }  // the server was away when this store started
        retryAfter = 0
        lastFailure = nil
        return fresh
    }

    /// The connection, connecting first when there is none (at most once per `reconnectInterval`).
    private func connected() throws(DatabaseError) -> PostgresConnection {
        if retryAfter != 0, monotonicNanoseconds() < retryAfter, let lastFailure { throw lastFailure }
        // A broken connection resets itself at its next call (a failed reset is answered by `failed`).
        if let connection { return connection }
        do throws(PostgresError) {
            return try connect()
        } catch {
            throw failed(error)
        }
    }

    /// Maps `error`; a lost server also starts the reconnect interval.
    private func failed(_ error: PostgresError) -> DatabaseError {
        let mapped = PostgresStore.map(error)
        switch error.kind {
        case .unreachable, .serverUnavailable, .connectionLost: PostgresCounter.connectionFailures.add()
        case .statementTimeout: PostgresCounter.statementTimeouts.add()
        case .lockTimeout: PostgresCounter.lockTimeouts.add()
        default: break
        }
        if error.kind == .unreachable || error.kind == .serverUnavailable || error.kind == .connectionLost {
            retryAfter = monotonicNanoseconds() + PostgresStore.reconnectInterval
            lastFailure = mapped
        } else if retryAfter != 0, connection?.isConnected == true {
            retryAfter = 0
            lastFailure = nil
        }
        return mapped
    }

    // MARK: - Statements

    func query(_ sql: String, _ arguments: [SQLValue]) throws(DatabaseError) -> [[SQLValue]] {
        do throws(DatabaseError) {
            return try run(sql, arguments)
        } catch where error.sqlState == nil && !inTransaction && connection?.isConnected == false
            && sql.utf8.starts(with: "SELECT".utf8)
        {
            // After a server restart the old socket fails once; a read outside a transaction is safe to repeat
            // on the new connection (never a write: its outcome is unknown). The reconnect interval is waived for it
            // (a past instant, so its success still counts as a reconnect).
            retryAfter = 1
            return try run(sql, arguments)
        }
    }

    private func run(_ sql: String, _ arguments: [SQLValue]) throws(DatabaseError) -> [[SQLValue]] {
        // Each statement is bounded by statement_timeout; a request of several stops at its deadline between them.
        if deadline != 0, monotonicNanoseconds() >= deadline {
            throw DatabaseError(outcome: .unavailable, sqlState: nil, message: "the request deadline passed "
                + "(REQUEST_DEADLINE_MS)", context: "running a statement on \(location)")
        }
        let connection = try connected()
        do throws(PostgresError) {
            let statement: PostgresStatement
            if let cached = statements[sql] {
                statement = cached
            } else {
                // As SQLite's cache: a text built from values (a bug) must not add statements forever.
                if statements.count >= Database.statementCacheLimit {
                    try connection.deallocateAll()
                    statements.removeAll()
                }
                statement = try connection.prepare("s\(statements.count + 1)", PostgresStore.numbered(sql))
                statements[sql] = statement
            }
            var parameters: [PostgresValue] = []
            parameters.reserveCapacity(arguments.count)
            for argument in arguments {
                switch argument {
                case .null: parameters.append(.null)
                case .integer(let value): parameters.append(.int8(value))
                case .real(let value): parameters.append(.float8(value))
                case .text(let value): parameters.append(.text(Escape.encode(value)))
                }
            }
            let rows = try connection.execute(statement, parameters)
            if retryAfter != 0 {
                // Serving again after a failure (the connection reset itself, or a new one was made).
                retryAfter = 0
                lastFailure = nil
                PostgresCounter.reconnects.add()
            }
            return rows.map { row in
                row.map { value -> SQLValue in
                    switch value {
                    case .null: return .null
                    case .int8(let value): return .integer(value)
                    case .float8(let value): return .real(value)
                    case .text(let value): return .text(Escape.decode(value))
                    }
                }
            }
        } catch {
            throw failed(error)
        }
    }

    func execute(_ sql: String) throws(DatabaseError) {
        let connection = try connected()
        do throws(PostgresError) {
            try connection.execute(sql)
        } catch {
            throw failed(error)
        }
    }

    /// How many statements this store has prepared on its connection (at most `Database.statementCacheLimit`).
    var cachedStatementCount: Int { statements.count }

    func writeTransaction<T>(commit: Bool, _ body: () throws(DatabaseError) -> T) throws(DatabaseError) -> T {
        var attempt = 0
        while true {
            do throws(DatabaseError) {
                return try transaction(commit: commit, body)
            } catch where error.outcome == .conflict && attempt < PostgresStore.conflictRetries {
                attempt += 1
                PostgresCounter.conflictRetries.add()
            }
        }
    }

    private func transaction<T>(commit: Bool, _ body: () throws(DatabaseError) -> T) throws(DatabaseError) -> T {
        let connection = try connected()
        var bodyError: DatabaseError?
        inTransaction = true
        defer { inTransaction = false }
        do throws(PostgresError) {
            return try connection.transaction(commit: commit) { () throws(PostgresError) -> T in
                do throws(DatabaseError) {
                    return try body()
                } catch {
                    bodyError = error
                    throw PostgresError(.other, message: error.message, context: error.context)
                }
            }
        } catch {
            if let bodyError { throw bodyError }
            throw failed(error)
        }
    }

    func hasTable(_ name: String) throws(DatabaseError) -> Bool {
        try !query("SELECT 1 WHERE to_regclass(?1) IS NOT NULL", [.text(name)]).isEmpty
    }

    /// One round trip (`SELECT 1`); the reason names the server's answer, never the password.
    func readinessProblem() -> String? {
        do throws(DatabaseError) {
            _ = try query("SELECT 1", [])
            return nil
        } catch {
            return "the database is unavailable: \(error.message) (\(error.engineCode))"
        }
    }

    // MARK: - Migrations

    func migrate(_ migrations: [Migration]) throws(DatabaseError) {
        let connection = try connected()
        do throws(PostgresError) {
            try PostgresStore.migrate(connection, migrations)
        } catch {
            throw failed(error)
        }
    }

    /// Applies the missing `migrations` in one transaction holding the advisory lock `migrationLockKey`, so hosts
    /// and processes starting together apply each once (two concurrent `CREATE TABLE IF NOT EXISTS` can otherwise
    /// fail). PostgreSQL's DDL is transactional: a failed migration leaves nothing half-applied.
    private static func migrate(_ connection: PostgresConnection, _ migrations: [Migration]) throws(PostgresError) {
        guard !migrations.isEmpty else { return }
        if let applied = try appliedMigrations(connection), migrations.allSatisfy({ applied.contains($0.id) }) {
            return
        }
        try connection.transaction { () throws(PostgresError) in
            try connection.execute("SELECT pg_advisory_xact_lock(\(migrationLockKey))")
            try connection.execute("""
                CREATE TABLE IF NOT EXISTS schema_migrations (id text PRIMARY KEY, applied_at bigint NOT NULL)
                """)
            var current = Set(try connection.execute("SELECT id FROM schema_migrations").compactMap(\.first?.string))
            let now = Int64(time(nil))
            for migration in migrations where current.insert(migration.id).inserted {
                try connection.execute(migration.postgres)
                let id = migration.id.replacing("'", with: "''")
                try connection.execute("INSERT INTO schema_migrations (id, applied_at) VALUES ('\(id)', \(now))")
            }
        }
    }

    private static func checkMigrated(_ connection: PostgresConnection,
                                      _ migrations: [Migration]) throws(PostgresError) {
        let applied = try appliedMigrations(connection) ?? []
        if let missing = migrations.first(where: { !applied.contains($0.id) }) {
            throw PostgresError(.invalidConfiguration, message: "not a flows-fcgi database of this version "
                + "(migration \(missing.id) not applied; the responder applies it when it starts)",
                                context: "opening \(connection.maskedURL)")
        }
    }

    private static func appliedMigrations(_ connection: PostgresConnection) throws(PostgresError) -> Set<String>? {
        guard try connection.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").first?.first?.int == 1
        else { return nil }
        return Set(try connection.execute("SELECT id FROM schema_migrations").compactMap(\.first?.string))
    }

    // MARK: - Mapping

    static func map(_ error: PostgresError) -> DatabaseError {
        let outcome: DatabaseError.Outcome = switch error.outcome {
        case .unavailable: .unavailable
        case .conflict: .conflict
        case .invalidInput: .invalidInput
        case .failure: .failure
        }
        return DatabaseError(outcome: outcome, sqlState: error.sqlState, message: error.message,
                             context: error.context)
    }

    /// `sql` with each `?N` placeholder outside quotes written `$N`.
    static func numbered(_ sql: String) -> String {
        var out: [UInt8] = []
        let bytes = Array(sql.utf8)
        out.reserveCapacity(bytes.count)
        var quote: UInt8 = 0
        for (i, byte) in bytes.enumerated() {
            if quote != 0 {
                if byte == quote { quote = 0 }
                out.append(byte)
            } else if byte == UInt8(ascii: "'") || byte == UInt8(ascii: "\"") {
                quote = byte
                out.append(byte)
            } else if byte == UInt8(ascii: "?"), i + 1 < bytes.count, bytes[i + 1] >= 0x30, bytes[i + 1] <= 0x39 {
                out.append(UInt8(ascii: "$"))
            } else {
                out.append(byte)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The reversible escape that lets text holding U+0000 be stored in PostgreSQL `text` (which cannot hold it):
    /// U+0000 is written U+FDD0 `0` and U+FDD0 (a noncharacter) U+FDD0 `E`. Text without either is unchanged, and
    /// costs one scan of its bytes.
    enum Escape {
        /// U+FDD0 in UTF-8.
        static let mark: [UInt8] = [0xEF, 0xB7, 0x90]

        static func encode(_ text: String) -> String {
            guard text.utf8.contains(where: { $0 == 0 || $0 == 0xEF }) else { return text }
            var out: [UInt8] = []
            var changed = false
            let bytes = Array(text.utf8)
            var i = 0
            while i < bytes.count {
                if bytes[i] == 0 {
                    out += mark + [UInt8(ascii: "0")]
                    changed = true
                    i += 1
                } else if isMark(bytes, at: i) {
                    out += mark + [UInt8(ascii: "E")]
                    changed = true
                    i += 3
                } else {
                    out.append(bytes[i])
                    i += 1
                }
            }
            return changed ? String(decoding: out, as: UTF8.self) : text
        }

        static func decode(_ text: String) -> String {
            guard text.utf8.contains(0xEF) else { return text }
            let bytes = Array(text.utf8)
            guard bytes.indices.contains(where: { isMark(bytes, at: $0) }) else { return text }
            var out: [UInt8] = []
            var i = 0
            while i < bytes.count {
                if isMark(bytes, at: i), i + 3 < bytes.count {
                    if bytes[i + 3] == UInt8(ascii: "0") { out.append(0) } else { out += mark }
                    i += 4
                } else {
                    out.append(bytes[i])
                    i += 1
                }
            }
            return String(decoding: out, as: UTF8.self)
        }

        private static func isMark(_ bytes: [UInt8], at i: Int) -> Bool {
            i + 2 < bytes.count && bytes[i] == 0xEF && bytes[i + 1] == 0xB7 && bytes[i + 2] == 0x90
        }
    }
}

extension Database {
    /// Connects to the PostgreSQL server `url` names (a libpq URI: `postgresql://user@host:5432/db?sslmode=...`)
    /// and applies `migrations` (checks them, for `.readOnly`).
    ///
    /// - Parameters:
    ///   - passwordFile: `DATABASE_PASSWORD_FILE`, when set (else the URL's password or `PGPASSFILE`).
    ///   - statementTimeoutMilliseconds: `statement_timeout` (and `lock_timeout`, a little lower) of the
    ///     connection: the request deadline, so a busy database never holds a request past it.
    /// - Throws: a refused login, a missing database, a bad URL, a failed migration. A server that does not answer
    ///   is not thrown: the connection is made at the first use, which answers 503 until it succeeds.
    public static func postgres(url: String, passwordFile: String? = nil, migrations: [Migration] = [],
                                access: Access = .create,
                                statementTimeoutMilliseconds: Int = 0) throws(DatabaseError) -> Database {
        Database(connection: try PostgresStore(url: url, passwordFile: passwordFile, migrations: migrations,
                                               access: access,
                                               statementTimeoutMilliseconds: statementTimeoutMilliseconds))
    }
}
