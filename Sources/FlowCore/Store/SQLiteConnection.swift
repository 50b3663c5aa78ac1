import CFlowsSQLite
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One SQLite connection, owned by one thread. WAL, `synchronous=NORMAL`, a busy timeout, and every write
/// transaction `BEGIN IMMEDIATE`. Used through `Database`.
///
/// Statements are cached per connection and finalized on `close()`; call `close()` explicitly before exiting
/// so the WAL is checkpointed and removed.
final class SQLiteConnection: StoreConnection {
    private var handle: OpaquePointer?
    private var cache: [String: OpaquePointer] = [:]
    private let busyTimeoutMilliseconds: Int32
    /// The file path.
    let path: String
    let dialect = SQLDialect.sqlite
    var location: String { path }
    /// Monotonic nanoseconds after which lock waits stop (the request deadline); 0 for none.
    var deadline: Int64 = 0

    /// The connection as a bit pattern, for `sqlite3_interrupt` from a watchdog thread (0 when closed).
    var interruptHandle: UInt { handle.map { UInt(bitPattern: Int(bitPattern: UnsafeRawPointer($0))) } ?? 0 }

    /// Opens (creating if needed, unless `access` says otherwise) the database at `path`, switches it to WAL and
    /// applies `migrations`.
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
    init(path: String, busyTimeoutMilliseconds: Int32, migrations: [Migration], brief: Bool,
         access mode: Database.Access, fileGroup: gid_t?) throws(DatabaseError) {
        self.path = path
        self.busyTimeoutMilliseconds = busyTimeoutMilliseconds
        if mode == .create { try createDatabaseFileIfMissing(path, group: fileGroup) }
        var db: OpaquePointer?
        let flags = switch mode {
        case .create: SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        case .existing: SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX
        case .readOnly: SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX
        }
        if mode != .create, access(path, F_OK) != 0, errno == ENOENT {
            throw DatabaseError(code: SQLITE_CANTOPEN, message: "there is no database there (the responder creates "
                + "it when it starts; check DATABASE_URL)", context: "opening \(path)")
        }
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(db)
            throw DatabaseError(code: rc, message: message, context: "opening \(path)")
        }
        if mode == .readOnly {
            handle = db
            sqlite3_extended_result_codes(db, 1)
            sqlite3_busy_timeout(db, busyTimeoutMilliseconds)
            do throws(DatabaseError) {
                try checkMigrated(migrations)
            } catch {
                close()
                throw error
            }
            return
        }
        // SQLite silently opens a file this process may not write read-only, and that connection would create the
        // -wal and -shm files with the file's read-only mode, which keeps every later writer read-only, even once
        // the file is fixed. Refused before anything is read.
        if sqlite3_db_readonly(db, "main") == 1 {
            sqlite3_close_v2(db)
            throw DatabaseError(code: SQLITE_READONLY, message: "the database file is read-only for this process "
                + "(check its owner and mode, and the file system)", context: "opening \(path)")
        }
        handle = db
        sqlite3_extended_result_codes(db, 1)
        if brief { _ = cflows_sqlite_disable_lookaside(db) }
        // Busy timeout first: switching to WAL itself needs a lock another process may hold.
        sqlite3_busy_handler(db, { context, count in
            Unmanaged<SQLiteConnection>.fromOpaque(context!).takeUnretainedValue().waitForLock(attempt: count)
        }, Unmanaged.passUnretained(self).toOpaque())
        do throws(DatabaseError) {
            let mode = try switchToWAL(timeoutMilliseconds: busyTimeoutMilliseconds)
            guard mode.lowercased() == "wal" else {
                throw DatabaseError(code: SQLITE_ERROR, message: "journal_mode is \(mode), WAL is required",
                                    context: "opening \(path)")
            }
            try execute("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON")
            // Each worker thread has its own connection: 1 MiB of page cache each (SQLite's default is 2 MiB), so a
            // process with the default two workers holds what one held before. Pages beyond it are read again from
            // the kernel's page cache.
            try execute(brief ? "PRAGMA cache_size=8" : "PRAGMA cache_size=-1024")
            try migrate(migrations)
        } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    /// The waits between lock attempts, in microseconds. A write transaction holds the lock for well under a
    /// millisecond, so the first waits are short (`sqlite3_busy_timeout` starts at 1 ms, which left a process idle
    /// for most of that millisecond whenever two processes wrote at once); then they grow like SQLite's own.
    private static let busyDelays: [Int64] = [20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 20_000,
                                              25_000, 25_000, 25_000, 50_000, 50_000, 100_000]
    /// The sum of all `busyDelays`.
    private static let busyDelaysTotal = busyDelays.reduce(0, +)

    /// The busy handler: sleeps `busyDelays` (the last one repeated) until the busy timeout is spent, never past
    /// `deadline`, and counts each wait for `/metrics`. Returns 0 to give up (the statement fails with SQLITE_BUSY).
    private func waitForLock(attempt: Int32) -> Int32 {
        let delays = SQLiteConnection.busyDelays
        let index = min(Int(attempt), delays.count - 1)
        let prior = Int(attempt) < delays.count
            ? delays[..<index].reduce(0, +)
            : SQLiteConnection.busyDelaysTotal + delays[delays.count - 1] * Int64(Int(attempt) - delays.count)
        var delay = delays[index]
        let budget = Int64(busyTimeoutMilliseconds) * 1_000
        if prior + delay > budget {
            delay = budget - prior
            if delay <= 0 { return 0 }
        }
        if deadline != 0 {
            let left = (deadline - monotonicNanoseconds()) / 1_000
            if left <= 0 { return 0 }
            delay = min(delay, left)
        }
        sqliteBusyRetries.add(1, ordering: .relaxed)
        var pause = timespec(tv_sec: Int(delay / 1_000_000), tv_nsec: Int(delay % 1_000_000) * 1_000)
        var left = timespec()
        while nanosleep(&pause, &left) != 0 && errno == EINTR { pause = left }
        return 1
    }

    /// Finalizes every statement and closes the connection (checkpointing the WAL when this is the last one).
    func close() {
        for (_, statement) in cache { sqlite3_finalize(statement) }
        cache.removeAll()
        if let handle { sqlite3_close_v2(handle) }
        handle = nil
    }

    private func fail(_ rc: Int32, _ context: String) -> DatabaseError {
        let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "database is closed"
        return DatabaseError(code: handle.map { sqlite3_extended_errcode($0) } ?? rc, message: message,
                             context: "\(context) in \(path)")
    }

    /// Runs one or more statements without results.
    func execute(_ sql: String) throws(DatabaseError) {
        guard let handle else { throw DatabaseError(code: SQLITE_MISUSE, message: "closed", context: path) }
        let rc = sqlite3_exec(handle, sql, nil, nil, nil)
        guard rc == SQLITE_OK else { throw fail(rc, "running \(SQLiteConnection.summary(sql))") }
    }

    /// Runs one statement with `arguments` bound to `?1...` and returns every row.
    @discardableResult
    func query(_ sql: String, _ arguments: [SQLValue] = []) throws(DatabaseError) -> [[SQLValue]] {
        let statement = try prepared(sql)
        defer {
            sqlite3_reset(statement)
            sqlite3_clear_bindings(statement)
        }
        try bind(arguments, to: statement, sql)
        var rows: [[SQLValue]] = []
        while try step(statement, sql) { rows.append(row(of: statement)) }
        return rows
    }

    /// Runs one statement with `arguments` bound to `?1...` and hands each row to `body` as it is read, so a large
    /// table is never held whole (`copy-database`). `body` must not run statements on this connection.
    func forEachRow(_ sql: String, _ arguments: [SQLValue],
                    _ body: ([SQLValue]) throws(DatabaseError) -> Void) throws(DatabaseError) {
        let statement = try prepared(sql)
        defer {
            sqlite3_reset(statement)
            sqlite3_clear_bindings(statement)
        }
        try bind(arguments, to: statement, sql)
        while try step(statement, sql) { try body(row(of: statement)) }
    }

    /// Binds `arguments` to `?1...` of `statement`.
    @inline(__always)
    private func bind(_ arguments: [SQLValue], to statement: OpaquePointer, _ sql: String) throws(DatabaseError) {
        for (i, argument) in arguments.enumerated() {
            let index = Int32(i + 1)
            let rc: Int32
            switch argument {
            case .null: rc = sqlite3_bind_null(statement, index)
            case .integer(let v): rc = sqlite3_bind_int64(statement, index, v)
            case .real(let v): rc = sqlite3_bind_double(statement, index, v)
            case .text(let v):
                // The full UTF-8 length, never -1: SQLite would stop at the first U+0000 and store a shorter text.
                // An empty buffer may have no address, which would bind NULL: "" is bound as an empty text.
                var text = v
                rc = text.withUTF8 { bytes in
                    bytes.withMemoryRebound(to: CChar.self) { chars in
                        guard let start = chars.baseAddress, !chars.isEmpty else {
                            return sqlite3_bind_text(statement, index, "", 0, cflows_sqlite_transient())
                        }
                        return sqlite3_bind_text64(statement, index, start, UInt64(chars.count),
                                                   cflows_sqlite_transient(), UInt8(SQLITE_UTF8))
                    }
                }
            }
            guard rc == SQLITE_OK else {
                throw fail(rc, "binding argument \(index) of \(SQLiteConnection.summary(sql))")
            }
        }
    }

    /// Steps `statement`: true when a row is ready, false when done.
    @inline(__always)
    private func step(_ statement: OpaquePointer, _ sql: String) throws(DatabaseError) -> Bool {
        let rc = sqlite3_step(statement)
        if rc == SQLITE_DONE { return false }
        guard rc == SQLITE_ROW else { throw fail(rc, "running \(SQLiteConnection.summary(sql))") }
        return true
    }

    /// The current row of `statement`.
    @inline(__always)
    private func row(of statement: OpaquePointer) -> [SQLValue] {
        let count = sqlite3_column_count(statement)
        var row: [SQLValue] = []
        row.reserveCapacity(Int(count))
        for column in 0..<count {
            switch sqlite3_column_type(statement, column) {
            case SQLITE_INTEGER: row.append(.integer(sqlite3_column_int64(statement, column)))
            case SQLITE_FLOAT: row.append(.real(sqlite3_column_double(statement, column)))
            case SQLITE_NULL: row.append(.null)
            default:
                // By the byte count, not up to the first U+0000 (text is stored whole, see binding).
                if let text = sqlite3_column_text(statement, column) {
                    let count = Int(sqlite3_column_bytes(statement, column))
                    row.append(.text(String(decoding: UnsafeBufferPointer(start: text, count: count),
                                            as: UTF8.self)))
                } else {
                    row.append(.null)
                }
            }
        }
        return row
    }

    /// Runs `body` in a `BEGIN IMMEDIATE` transaction: committed when it returns (rolled back instead with
    /// `commit: false`, for dry runs), rolled back when it throws. The one place transactions are written.
    func writeTransaction<T>(commit: Bool, _ body: () throws(DatabaseError) -> T)
        throws(DatabaseError) -> T
    {
        try ensureWritable()
        // Through the statement cache (`query`), not `execute`: prepared once, not parsed again for every transaction.
        try query("BEGIN IMMEDIATE")
        do throws(DatabaseError) {
            let result = try body()
            try query(commit ? "COMMIT" : "ROLLBACK")
            return result
        } catch {
            _ = try? query("ROLLBACK")
            throw error
        }
    }

    /// Before a write: a file made read-only (or a read-only mount) since it was opened is refused with SQLITE_READONLY
    /// and the cause (Linux checks permissions at open only: the open descriptor would still write), a deleted one
    /// with SQLITE_CANTOPEN (the writes would go to a file nobody reads). Fixed, the next write goes through.
    private func ensureWritable() throws(DatabaseError) {
        guard access(path, W_OK) != 0 else { return }
        let missing = errno == ENOENT
        let cause = String(cString: strerror(errno))
        throw DatabaseError(code: missing ? SQLITE_CANTOPEN : SQLITE_READONLY,
                            message: "the database file is \(missing ? "gone" : "read-only") (\(cause))",
                            context: "writing \(path)")
    }

    /// How many prepared statements this connection keeps (at most `statementCacheLimit`).
    var cachedStatementCount: Int { cache.count }

    /// Statements are cached by their SQL text; the program has a few dozen. A text built from values (a bug) would
    /// otherwise add one statement per distinct value for the life of the process: past this many, the cache starts
    /// over (between statements: `query` leaves none running).
    static let statementCacheLimit = 200

    private func prepared(_ sql: String) throws(DatabaseError) -> OpaquePointer {
        if let statement = cache[sql] { return statement }
        guard let handle else { throw DatabaseError(code: SQLITE_MISUSE, message: "closed", context: path) }
        if cache.count >= SQLiteConnection.statementCacheLimit {
            for (_, statement) in cache { sqlite3_finalize(statement) }
            cache.removeAll()
        }
        var statement: OpaquePointer?
        let rc = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard rc == SQLITE_OK, let statement else { throw fail(rc, "preparing \(SQLiteConnection.summary(sql))") }
        cache[sql] = statement
        return statement
    }

    /// `PRAGMA journal_mode=WAL`, retried within the busy timeout: while another connection converts a new file,
    /// SQLite answers this pragma with SQLITE_BUSY without calling the busy handler.
    private func switchToWAL(timeoutMilliseconds: Int32) throws(DatabaseError) -> String {
        var waited: Int32 = 0
        while true {
            do throws(DatabaseError) {
                return try query("PRAGMA journal_mode=WAL").first?.first?.string ?? ""
            } catch where error.code & 0xFF == SQLITE_BUSY && waited < timeoutMilliseconds {
                sqlite3_sleep(5)
                waited += 5
            }
        }
    }

    /// A read-only connection's check that the file is a database of this program with `migrations` applied.
    private func checkMigrated(_ migrations: [Migration]) throws(DatabaseError) {
        let applied = try appliedMigrations() ?? []
        if let missing = migrations.first(where: { !applied.contains($0.id) }) {
            throw DatabaseError(code: SQLITE_ERROR, message: "not a flows-fcgi database of this version (migration "
                + "\(missing.id) not applied; the responder applies it when it starts)", context: "opening \(path)")
        }
    }

    /// The ids in `schema_migrations`, `nil` when the table does not exist.
    private func appliedMigrations() throws(DatabaseError) -> Set<String>? {
        guard try hasTable("schema_migrations") else { return nil }
        return Set(try query("SELECT id FROM schema_migrations").compactMap { $0.first?.string })
    }

    func migrate(_ migrations: [Migration]) throws(DatabaseError) {
        if let applied = try appliedMigrations(), migrations.allSatisfy({ applied.contains($0.id) }) { return }
        // Creating the table in the same BEGIN IMMEDIATE: an autocommit CREATE racing another process's would
        // fail with SQLITE_BUSY_SNAPSHOT, which the busy handler does not retry.
        try writeTransaction(commit: true) { () throws(DatabaseError) in
            try execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                + "(id TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)")
            // Re-read under the write lock: another process may have applied some meanwhile. A migration listed
            // twice (the tables all form flows share) runs once.
            var current = Set(try query("SELECT id FROM schema_migrations").compactMap { $0.first?.string })
            for migration in migrations where current.insert(migration.id).inserted {
                try execute(migration.sqlite)
                try query("INSERT INTO schema_migrations (id, applied_at) VALUES (?1, ?2)",
                          [.text(migration.id), .integer(Int64(time(nil)))])
            }
        }
    }

    func hasTable(_ name: String) throws(DatabaseError) -> Bool {
        try !query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", [.text(name)]).isEmpty
    }

    /// The file still in place and writable (a deleted or moved file would take writes nobody reads; a read-only
    /// file, folder or mount, or a full disk fails only the next write, not the lock: asked of the kernel), then
    /// the write lock obtainable within the busy timeout (`BEGIN IMMEDIATE`, rolled back at once: nothing is
    /// written, so probing often costs no I/O).
    func readinessProblem() -> String? {
        var info = stat()
        guard stat(path, &info) == 0 else {
            return "the database file is missing (\(String(cString: strerror(errno))))"
        }
        // (Root passes access(2) whatever the mode; a read-only mount it does not.)
        let folder = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        if access(path, W_OK) != 0 {
            return "the database file is read-only (\(String(cString: strerror(errno))))"
        }
        if access(folder.isEmpty ? "/" : folder, W_OK) != 0 {
            return "the database folder is read-only (\(String(cString: strerror(errno))))"
        }
        var fs = statvfs()
        if statvfs(path, &fs) == 0 {
            if fs.f_flag & UInt(ST_RDONLY) != 0 { return "the database's file system is mounted read-only" }
            // A full disk fails every write with SQLITE_FULL, yet the lock is free. Root may use the reserved blocks.
            let free = (geteuid() == 0 ? fs.f_bfree : fs.f_bavail) * fs.f_frsize
            if free < 65536 { return "the database's file system is full (\(free) bytes free)" }
        }
        do {
            try writeTransaction(commit: false) { () throws(DatabaseError) in }
        } catch {
            return "the database is not writable: \(error.message) (SQLite code \(error.code))"
        }
        return nil
    }

    private static func summary(_ sql: String) -> String {
        let words = sql.split(whereSeparator: { $0 == " " || $0 == "\n" }).prefix(4).joined(separator: " ")
        return "'\(words)...'"
    }
}

/// Creates the database file, when there is none, before SQLite would (with 0644 under the usual umask): 0600,
/// or 0640 owned by `group`, whatever the umask. SQLite gives the `-wal` and `-shm` files the database file's
/// mode, so they follow. An existing file is left as it is; a failure to create is left to SQLite to report.
private func createDatabaseFileIfMissing(_ path: String, group: gid_t?) throws(DatabaseError) {
    let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
    guard fd >= 0 else { return }
    defer { close(fd) }
    var failure: String?
    if let group, fchown(fd, uid_t.max, group) != 0 {
        failure = "cannot give the new file to DATABASE_GROUP (gid \(group)): \(String(cString: strerror(errno)))"
    } else if fchmod(fd, group == nil ? 0o600 : 0o640) != 0 {
        failure = "cannot set the new file's mode: \(String(cString: strerror(errno)))"
    }
    if let failure {
        unlink(path)
        throw DatabaseError(code: SQLITE_CANTOPEN, message: failure, context: "creating \(path)")
    }
}
