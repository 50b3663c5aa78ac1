import CFlowsSQLite
import FlowStorePostgres

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A storage failure, engine-neutral: what it means for the request (`outcome`), the engine's code (a SQLite
/// result code, or a PostgreSQL SQLSTATE), its message and what was being done.
public struct DatabaseError: Error, Sendable, CustomStringConvertible {
    /// What a failure means for the request, whichever engine raised it.
    public enum Outcome: Sendable, Equatable {
        /// The database cannot be used right now (locked, read-only, full, unreachable, restarting, timed out):
        /// 503, the process keeps serving and the client retries.
        case unavailable
        /// A concurrent writer won a race (a serialization failure, a deadlock, a unique key taken meanwhile): the
        /// store retries the transaction; one that still reaches the endpoint answers 503 (retryable).
        case conflict
        /// A value the database cannot hold: 400.
        case invalidInput
        /// A bug or a broken database: 500 (exit 78 at startup).
        case failure
    }

    /// The SQLite result code (extended when available); 0 for an error of another engine.
    public let code: Int32
    /// The PostgreSQL SQLSTATE, when the server gave one.
    public let sqlState: String?
    /// What this failure means for the request.
    public let outcome: Outcome
    /// The engine's message (never a password, never row values).
    public let message: String
    /// What the store was doing, e.g. `opening /var/lib/flows/flows.db`.
    public let context: String

    /// A SQLite error with result `code`, its `message`, and what was being done; the outcome follows the code.
    public init(code: Int32, message: String, context: String) {
        self.code = code
        self.sqlState = nil
        self.message = message
        self.context = context
        switch code & 0xFF {
        case SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY, SQLITE_FULL, SQLITE_IOERR, SQLITE_CANTOPEN,
            SQLITE_PERM, SQLITE_PROTOCOL, SQLITE_INTERRUPT:
            outcome = .unavailable
        default:
            outcome = .failure
        }
    }

    /// An error of another engine (PostgreSQL): its `outcome`, `sqlState` if any, `message` and context.
    public init(outcome: Outcome, sqlState: String?, message: String, context: String) {
        self.code = 0
        self.sqlState = sqlState
        self.outcome = outcome
        self.message = message
        self.context = context
    }

    /// True when the request may succeed if retried later (`outcome` unavailable or conflict): the endpoint answers
    /// 503 and the process keeps serving.
    public var isUnavailable: Bool { outcome == .unavailable || outcome == .conflict }

    /// `SQLite code N` or `SQLSTATE XXXXX`, for messages.
    public var engineCode: String {
        if let sqlState { return "SQLSTATE \(sqlState)" }
        return code == 0 ? "PostgreSQL" : "SQLite code \(code)"
    }

    /// `context: message (SQLite code N)`, or `(SQLSTATE XXXXX)`.
    public var description: String { "\(context): \(message) (\(engineCode))" }
}

/// A value bound to or read from a statement.
public enum SQLValue: Sendable, Equatable {
    /// `NULL`
    case null
    /// An integer.
    case integer(Int64)
    /// Text.
    case text(String)
    /// A real number (avoid for money: use integer minor units).
    case real(Double)

    /// The integer, when this is one.
    public var int: Int64? {
        if case .integer(let v) = self { return v }
        return nil
    }

    /// The text, when this is text.
    public var string: String? {
        if case .text(let v) = self { return v }
        return nil
    }
}

/// The SQL dialect of a connection: the few texts that differ between engines.
public enum SQLDialect: Sendable, Equatable {
    /// SQLite 3 (one host; every write transaction serialized by `BEGIN IMMEDIATE`).
    case sqlite
    /// PostgreSQL (several hosts; read committed: races are decided by constraints and row locks).
    case postgres
}

/// One schema change, applied once per database and recorded in `schema_migrations`. DDL is where the engines
/// differ most, so each migration carries both texts, written out; the id is shared.
public struct Migration: Sendable {
    /// A name unique across the whole schema, e.g. `expense-1`.
    public let id: String
    /// The SQLite SQL to run (several statements allowed).
    public let sqlite: String
    /// The PostgreSQL SQL to run (several statements allowed; it runs in the migration transaction).
    public let postgres: String

    /// A migration named `id`, running `sqlite` on SQLite and `postgres` on PostgreSQL.
    public init(id: String, sqlite: String, postgres: String) {
        self.id = id
        self.sqlite = sqlite
        self.postgres = postgres
    }

    /// The text for `dialect`.
    public func sql(_ dialect: SQLDialect) -> String { dialect == .sqlite ? sqlite : postgres }
}

/// One connection to a store, owned by one worker thread: what `Database` needs of an engine.
public protocol StoreConnection: AnyObject {
    /// The engine's dialect.
    var dialect: SQLDialect { get }
    /// Where the data lives, for messages: the file path, or the URL with its password masked.
    var location: String { get }
    /// Monotonic nanoseconds after which waits for the database stop (the request deadline); 0 for none.
    var deadline: Int64 { get set }
    /// Runs one statement with `arguments` bound to `?1...` and returns every row.
    func query(_ sql: String, _ arguments: [SQLValue]) throws(DatabaseError) -> [[SQLValue]]
    /// Runs one or more statements without arguments or results.
    func execute(_ sql: String) throws(DatabaseError)
    /// Runs `body` in a write transaction: committed when it returns (rolled back with `commit: false`), rolled
    /// back when it throws.
    func writeTransaction<T>(commit: Bool, _ body: () throws(DatabaseError) -> T) throws(DatabaseError) -> T
    /// True when table `name` exists.
    func hasTable(_ name: String) throws(DatabaseError) -> Bool
    /// Applies the missing `migrations` in one write transaction, each once however many processes do it at once.
    func migrate(_ migrations: [Migration]) throws(DatabaseError)
    /// Why this connection cannot serve a write right now (no secret in it), or `nil` when it can.
    func readinessProblem() -> String?
    /// Closes the connection.
    func close()
}

/// One worker thread's connection to the store, SQLite or PostgreSQL: the API every flow uses (`query`, `execute`,
/// `writeTransaction`, `deadline`).
///
/// The SQLite connection is called directly (no dynamic dispatch on the hot path); another engine through
/// `StoreConnection`. Call `close()` explicitly before exiting so SQLite's WAL is checkpointed and removed.
public final class Database {
    /// The SQLite connection, when this is SQLite.
    let sqlite: SQLiteConnection?
    /// The connection of another engine.
    private let other: (any StoreConnection)?
    /// The engine's dialect.
    public let dialect: SQLDialect

    /// How a connection may use its file.
    public enum Access: Sendable {
        /// Read and write, creating the file if needed (the responder).
        case create
        /// Read and write a file that must exist already (an operator command that writes).
        case existing
        /// Read only a file that must exist already; nothing is created, migrated or written (an operator command
        /// that only reads). A file without every migration applied is refused, naming the missing one.
        case readOnly
    }

    /// Opens (creating if needed, unless `access` says otherwise) the SQLite database at `path`, switches it to
    /// WAL and applies `migrations`.
    ///
    /// - Parameters:
    ///   - path: the database file.
    ///   - busyTimeoutMilliseconds: how long a statement waits for another process's lock.
    ///   - migrations: schema changes, applied in order inside one `BEGIN IMMEDIATE` transaction, so several
    ///     processes opening a new file at once apply each exactly once.
    ///   - brief: a connection for one short job (a metrics flush, a purge check): no lookaside allocator and a
    ///     small page cache, so opening it now and then adds little to the process's resident memory.
    ///   - access: whether the file may be created, and whether this connection writes.
    ///   - fileGroup: `DATABASE_GROUP`: a file created here is 0640 in this group instead of 0600.
    public init(path: String, busyTimeoutMilliseconds: Int32 = 5000, migrations: [Migration] = [],
                brief: Bool = false, access mode: Access = .create, fileGroup: gid_t? = nil) throws(DatabaseError) {
        sqlite = try SQLiteConnection(path: path, busyTimeoutMilliseconds: busyTimeoutMilliseconds,
                                      migrations: migrations, brief: brief, access: mode, fileGroup: fileGroup)
        other = nil
        dialect = .sqlite
    }

    /// A facade over `connection` (an engine other than SQLite, already migrated).
    public init(connection: any StoreConnection) {
        sqlite = nil
        other = connection
        dialect = connection.dialect
    }

    /// Where the data lives, for messages: the SQLite file, or the URL with its password masked.
    public var location: String { sqlite?.path ?? other?.location ?? "" }

    /// Monotonic nanoseconds after which lock waits stop (the request deadline); 0 for none.
    public var deadline: Int64 {
        get { sqlite?.deadline ?? other?.deadline ?? 0 }
        set {
            if let sqlite { sqlite.deadline = newValue } else { other?.deadline = newValue }
        }
    }

    /// The SQLite connection as a bit pattern, for `sqlite3_interrupt` from a watchdog thread (0 when closed, and
    /// for other engines: their statements end by their own `statement_timeout`).
    var interruptHandle: UInt { sqlite?.interruptHandle ?? 0 }

    /// For a PostgreSQL store: cancels its running statement from a watchdog thread (`PQcancel`).
    var canceller: PostgresCanceller? { (other as? PostgresStore)?.canceller }

    /// Closes the connection (for SQLite: finalizing every statement and checkpointing the WAL when this is the
    /// last connection).
    public func close() {
        if let sqlite { sqlite.close() } else { other?.close() }
    }

    /// Runs one or more statements without results.
    public func execute(_ sql: String) throws(DatabaseError) {
        if let sqlite { return try sqlite.execute(sql) }
        try connection.execute(sql)
    }

    /// Runs one statement with `arguments` bound to `?1...` and returns every row.
    @discardableResult
    public func query(_ sql: String, _ arguments: [SQLValue] = []) throws(DatabaseError) -> [[SQLValue]] {
        if let sqlite { return try sqlite.query(sql, arguments) }
        return try connection.query(sql, arguments)
    }

    /// Runs `body` in a write transaction: committed when it returns (rolled back instead with `commit: false`, for
    /// dry runs), rolled back when it throws. The one place transactions are written.
    ///
    /// On SQLite it is `BEGIN IMMEDIATE`: every writer on the file is serialized. On PostgreSQL it is read
    /// committed, and the whole transaction is run again (a few times at most) when it loses a race (`.conflict`:
    /// a serialization failure, a deadlock, a unique key another host took meanwhile): `body` must read what it
    /// decides on, so the retry sees the winner's rows.
    public func writeTransaction<T>(commit: Bool = true, _ body: () throws(DatabaseError) -> T)
        throws(DatabaseError) -> T
    {
        if let sqlite { return try sqlite.writeTransaction(commit: commit, body) }
        return try connection.writeTransaction(commit: commit, body)
    }

    /// Runs one statement with `arguments` bound to `?1...` and hands each row to `body`: on SQLite as each is
    /// read, so a large table is never held whole; `body` must not use this connection.
    public func forEachRow(_ sql: String, _ arguments: [SQLValue] = [],
                           _ body: ([SQLValue]) throws(DatabaseError) -> Void) throws(DatabaseError) {
        if let sqlite { return try sqlite.forEachRow(sql, arguments, body) }
        for row in try connection.query(sql, arguments) { try body(row) }
    }

    /// Applies the missing `migrations`, as the responder does when it opens the database: in one write transaction
    /// (on PostgreSQL under the migrations' advisory lock), each once however many processes do it at once.
    public func migrate(_ migrations: [Migration]) throws(DatabaseError) {
        if let sqlite { return try sqlite.migrate(migrations) }
        try connection.migrate(migrations)
    }

    /// True when table `name` exists (a flow's `purge` skips a database without its migrations).
    public func hasTable(_ name: String) throws(DatabaseError) -> Bool {
        if let sqlite { return try sqlite.hasTable(name) }
        return try connection.hasTable(name)
    }

    /// Why this connection cannot serve a write right now (no secret, no file name in it), or `nil` when it can.
    public func readinessProblem() -> String? {
        if let sqlite { return sqlite.readinessProblem() }
        return connection.readinessProblem()
    }

    /// How many prepared statements this connection keeps (at most `statementCacheLimit`).
    public var cachedStatementCount: Int {
        sqlite?.cachedStatementCount ?? (other as? PostgresStore)?.cachedStatementCount ?? 0
    }

    /// Statements are cached by their SQL text; the program has a few dozen. A text built from values (a bug) would
    /// otherwise add one statement per distinct value for the life of the process: past this many, the cache starts
    /// over (between statements: `query` leaves none running).
    public static let statementCacheLimit = SQLiteConnection.statementCacheLimit

    private var connection: any StoreConnection { other! }
}
