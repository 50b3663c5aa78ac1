import CFlowsPostgres

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One libpq connection, owned by one thread (a worker's, like its SQLite connection): statements prepared once
/// and executed per request, transactions, per-connection timeouts, and recovery after the server went away.
///
/// When a call finds the connection broken (`PQstatus` is `CONNECTION_BAD`, after a lost connection or a server
/// restart), it first reconnects with `PQreset` and prepares its statements and settings again, then runs: the
/// same object serves again once the server is back, without the caller creating a new one. Inside `transaction`
/// it never reconnects (the transaction is gone): the call fails with `.connectionLost` and the whole transaction
/// must be retried or answered 503.
public final class PostgresConnection {
    private let pq: cflows_pq
    private var handle: OpaquePointer?
    private var statements: [String: PostgresStatement] = [:]
    private var settings: [(String, String)] = []
    private var inTransaction = false
    private let connectTimeoutMilliseconds: Int64
    /// The URI with its password masked, for messages.
    public let maskedURL: String
    /// Cancels this connection's running statement from another thread.
    public let canceller: PostgresCanceller

    /// How long a connection attempt waits when the URI sets no `connect_timeout`, in seconds.
    public static let defaultConnectTimeoutSeconds = 5

    /// Connects to the server `url` names: a libpq connection URI (`postgresql://user@host:port/db?sslmode=...`,
    /// `postgres://` too, a unix socket folder as `?host=/run/postgresql`, and every parameter libpq accepts, such
    /// as `connect_timeout`, `application_name`, `sslrootcert`, `passfile`).
    ///
    /// The password comes from the URI, from `passwordFile` (`DATABASE_PASSWORD_FILE`: the file's one line), or
    /// from libpq's password file (`PGPASSFILE`, `~/.pgpass`); giving it both in the URI and in `passwordFile` is
    /// refused. Without `application_name` the server sees `flows-fcgi`. The attempt waits at most `connect_timeout`
    /// seconds (default `defaultConnectTimeoutSeconds`) in all, however many hosts the URI lists. `canceller`
    /// follows this connection (give one that outlives several connections, e.g. a store's).
    public init(url: String, passwordFile: String? = nil,
                canceller: PostgresCanceller = PostgresCanceller()) throws(PostgresError) {
        maskedURL = PostgresURL.masked(url)
        self.canceller = canceller
        pq = try LibPQ.load()
        var parameters = try PostgresURL.parameters(url)
        if let passwordFile {
            guard !parameters.contains(where: { $0.0 == "password" }) else {
                throw PostgresError(.invalidConfiguration, message: "the URI holds a password and a password file "
                    + "is given too: give it once", context: "connecting to \(maskedURL)")
            }
            parameters.append(("password", try PostgresURL.readPassword(file: passwordFile)))
        }
        if !parameters.contains(where: { $0.0 == "application_name" }) {
            parameters.append(("fallback_application_name", "flows-fcgi"))
        }
        let seconds = parameters.last(where: { $0.0 == "connect_timeout" }).flatMap { Int($0.1) }
            ?? PostgresConnection.defaultConnectTimeoutSeconds
        connectTimeoutMilliseconds = Int64(max(seconds, 1)) * 1000
        handle = PostgresConnection.start(pq, parameters)
        guard let handle else {
            throw PostgresError(.other, message: "out of memory", context: "connecting to \(maskedURL)")
        }
        // Errors while connecting then carry the server's SQLSTATE in their text (there is no field for them).
        _ = pq.PQsetErrorVerbosity(handle, PQERRORS_VERBOSE)
        // libpq prints the server's notices (WARNING, NOTICE: "terminating connection due to immediate shutdown")
        // to stderr, which nginx and lighttpd log as errors: dropped. Errors still arrive as errors.
        _ = pq.PQsetNoticeProcessor(handle, { _, _ in }, nil)
        do throws(PostgresError) {
            try finishConnecting(resetting: false, context: "connecting to \(maskedURL)")
        } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    /// Closes the connection; later calls fail with `.other` ("closed").
    public func close() {
        if let handle {
            canceller.replace(with: nil)
            pq.PQfinish(handle)
        }
        handle = nil
    }

    /// True while the connection is usable as far as libpq knows (`PQstatus` is `CONNECTION_OK`); it learns of a
    /// server that went away only on the next call.
    public var isConnected: Bool { handle.map { pq.PQstatus($0) == CONNECTION_OK } ?? false }

    // MARK: - Connecting

    private static func start(_ pq: cflows_pq, _ parameters: [(String, String)]) -> OpaquePointer? {
        let keywords = parameters.map { strdup($0.0) }
        let values = parameters.map { strdup($0.1) }
        defer {
            for pointer in keywords { free(pointer) }
            for pointer in values {
                // The password is among them: wiped before it is freed.
                if let pointer { memset(pointer, 0, strlen(pointer)) }
                free(pointer)
            }
        }
        let keywordArray: [UnsafePointer<CChar>?] = keywords.map { UnsafePointer($0) } + [nil]
        let valueArray: [UnsafePointer<CChar>?] = values.map { UnsafePointer($0) } + [nil]
        return pq.PQconnectStartParams(keywordArray, valueArray, 0)
    }

    /// Drives `PQconnectPoll` (or `PQresetPoll`) to the end, waiting on the socket at most the connect timeout.
    private func finishConnecting(resetting: Bool, context: String) throws(PostgresError) {
        guard let handle else { throw closedError(context) }
        let deadline = monotonicMilliseconds() + connectTimeoutMilliseconds
        var state = PGRES_POLLING_WRITING
        if pq.PQstatus(handle) == CONNECTION_BAD { state = PGRES_POLLING_FAILED }
        while true {
            if state == PGRES_POLLING_OK {
                canceller.replace(with: handle)  // the new server process
                return
            }
            if state == PGRES_POLLING_FAILED { throw connectionFailure(context) }
            let left = deadline - monotonicMilliseconds()
            guard left > 0 else {
                throw PostgresError(.unreachable, message: "no answer within \(connectTimeoutMilliseconds / 1000) s "
                    + "(connect_timeout)", context: context)
            }
            let events = Int16(state == PGRES_POLLING_READING ? POLLIN : POLLOUT)
            var descriptor = pollfd(fd: pq.PQsocket(handle), events: events, revents: 0)
            let ready = poll(&descriptor, 1, Int32(min(left, 60_000)))
            if ready < 0, errno != EINTR {
                throw PostgresError(.unreachable, message: String(cString: strerror(errno)), context: context)
            }
            if ready > 0 { state = resetting ? pq.PQresetPoll(handle) : pq.PQconnectPoll(handle) }
        }
    }

    /// The error of a failed connection attempt, classified by the SQLSTATE in libpq's verbose message (the server
    /// answered and refused) or by its absence (no server answered).
    private func connectionFailure(_ context: String) -> PostgresError {
        guard let handle else { return closedError(context) }
        let (sqlState, message) = PostgresConnection.parseVerbose(cText(pq.PQerrorMessage(handle)))
        if let sqlState {
            let kind = PostgresError.kind(sqlState: sqlState)
            return PostgresError(kind == .connectionLost ? .unreachable : kind, sqlState: sqlState, message: message,
                                 context: context)
        }
        if pq.PQconnectionNeedsPassword(handle) == 1 {
            return PostgresError(.rejected, message: message + " (the server wants a password: give it in the URI, "
                + "a password file or PGPASSFILE)", context: context)
        }
        return PostgresError(.unreachable, message: message, context: context)
    }

    /// The SQLSTATE and the message of a verbose libpq error text (`...failed: FATAL:  28P01: password
    /// authentication failed...`), without its LOCATION lines, on one line.
    static func parseVerbose(_ text: String) -> (String?, String) {
        var sqlState: String?
        var lines: [String] = []
        for line in text.split(separator: "\n") where !line.hasPrefix("LOCATION:") {
            var line = String(line)
            if let marker = line.firstRange(of: ":  ") {
                let code = line[marker.upperBound...].prefix(7)
                if code.count == 7, code.hasSuffix(": "),
                    code.prefix(5).allSatisfy({ $0.isASCII && ($0.isNumber || $0.isUppercase) })
                {
                    sqlState = sqlState ?? String(code.prefix(5))
                    line.removeSubrange(marker.upperBound..<line.index(marker.upperBound, offsetBy: 7))
                }
            }
            lines.append(line)
        }
        return (sqlState, PostgresURL.oneLine(lines.joined(separator: " ")))
    }

    /// Reconnects with `PQreset` (the same parameters), then prepares every statement again and restores the
    /// settings made with `setTimeouts`. Throws `.unreachable` (or what the server said) when the server is still
    /// away; the connection stays usable for a later attempt.
    public func reset() throws(PostgresError) {
        let context = "reconnecting to \(maskedURL)"
        guard let handle else { throw closedError(context) }
        inTransaction = false
        guard pq.PQresetStart(handle) == 1 else { throw connectionFailure(context) }
        try finishConnecting(resetting: true, context: context)
        for (name, value) in settings { try execute("SET \(name) = \(value)") }
        for statement in statements.values { try prepareOnServer(statement) }
    }

    /// Outside a transaction: reconnects first when libpq knows the connection is broken.
    private func reconnectIfBroken() throws(PostgresError) {
        guard !inTransaction, let handle, pq.PQstatus(handle) == CONNECTION_BAD else { return }
        try reset()
    }

    // MARK: - Settings

    /// Sets `statement_timeout` and `lock_timeout` for this connection (milliseconds, 0 for none), kept across
    /// reconnects: a statement running longer fails with `.statementTimeout`, a lock wait with `.lockTimeout`.
    /// Set them once from the request deadline, so a busy database never holds a request past it.
    public func setTimeouts(statementMilliseconds: Int, lockMilliseconds: Int) throws(PostgresError) {
        let wanted = [("statement_timeout", String(max(statementMilliseconds, 0))),
                      ("lock_timeout", String(max(lockMilliseconds, 0)))]
        for (name, value) in wanted { try execute("SET \(name) = \(value)") }
        settings = wanted
    }

    // MARK: - Statements

    /// Prepares `sql` (placeholders `$1`, `$2`, ...; the server infers their types from the statement, so cast
    /// where it cannot, as in `$1::bigint`) under `name` on this connection. Preparing the same name and SQL again
    /// returns the statement already prepared; another SQL under a name in use is refused.
    public func prepare(_ name: String, _ sql: String) throws(PostgresError) -> PostgresStatement {
        let statement = PostgresStatement(name: name, sql: sql)
        if let existing = statements[name] {
            guard existing == statement else {
                throw PostgresError(.other, message: "another statement is prepared under this name",
                                    context: "preparing '\(name)'")
            }
            return existing
        }
        try reconnectIfBroken()
        try prepareOnServer(statement)
        statements[name] = statement
        return statement
    }

    private func prepareOnServer(_ statement: PostgresStatement) throws(PostgresError) {
        let context = "preparing '\(statement.name)'"
        guard let handle else { throw closedError(context) }
        pq.PQclear(try check(pq.PQprepare(handle, statement.name, statement.sql, 0, nil), context))
    }

    /// Forgets every prepared statement, on the server (`DEALLOCATE ALL`) and here; their names may be used again.
    public func deallocateAll() throws(PostgresError) {
        try execute("DEALLOCATE ALL")
        statements.removeAll()
    }

    /// Runs the prepared `statement` with `parameters` (for `$1`, `$2`, ...) and returns its rows (none for a
    /// statement without `RETURNING`). Text with U+0000 is refused with `.invalidValue` before anything is sent.
    @discardableResult
    public func execute(_ statement: PostgresStatement, _ parameters: [PostgresValue] = [])
        throws(PostgresError) -> [[PostgresValue]]
    {
        let context = "running statement '\(statement.name)'"
        var buffer: [UInt8] = []
        var offsets: [Int?] = []
        offsets.reserveCapacity(parameters.count)
        for (index, parameter) in parameters.enumerated() {
            switch parameter {
            case .null:
                offsets.append(nil)
                continue
            case .int8(let value):
                offsets.append(buffer.count)
                buffer += String(value).utf8
            case .float8(let value):
                offsets.append(buffer.count)
                buffer += String(value).utf8
            case .text(let value):
                guard !value.utf8.contains(0) else {
                    throw PostgresError(.invalidValue, message: "parameter \(index + 1) is text with U+0000, which "
                        + "PostgreSQL text cannot hold", context: context)
                }
                offsets.append(buffer.count)
                buffer += value.utf8
            }
            buffer.append(0)
        }
        try reconnectIfBroken()
        guard let handle else { throw closedError(context) }
        let result = buffer.withUnsafeBufferPointer { bytes -> OpaquePointer? in
            let values: [UnsafePointer<CChar>?] = offsets.map { offset in
                offset.map { UnsafeRawPointer(bytes.baseAddress! + $0).assumingMemoryBound(to: CChar.self) }
            }
            return pq.PQexecPrepared(handle, statement.name, Int32(values.count), values, nil, nil, 0)
        }
        let checked = try check(result, context)
        defer { pq.PQclear(checked) }
        return PostgresConnection.rows(pq, checked)
    }

    /// Runs `sql` with the simple query protocol (no parameters; several statements separated by `;` allowed, as in
    /// a migration) and returns the last statement's rows.
    @discardableResult
    public func execute(_ sql: String) throws(PostgresError) -> [[PostgresValue]] {
        let context = "running '\(PostgresConnection.summary(sql))'"
        try reconnectIfBroken()
        guard let handle else { throw closedError(context) }
        let result = try check(pq.PQexec(handle, sql), context)
        defer { pq.PQclear(result) }
        return PostgresConnection.rows(pq, result)
    }

    // MARK: - Transactions

    /// How a transaction sees others' writes.
    public enum Isolation: Sendable {
        /// Each statement sees what was committed before it began (PostgreSQL's default); use row locks
        /// (`SELECT ... FOR UPDATE`) or constraints to decide races.
        case readCommitted
        /// One snapshot for the whole transaction; a write racing another fails with `.serializationFailure`.
        case repeatableRead
        /// As if transactions ran one after another; a race fails with `.serializationFailure`.
        case serializable
    }

    /// Runs `body` between `BEGIN` and `COMMIT` (`ROLLBACK` when it throws, or when `commit` is false, for dry
    /// runs). A transaction in which a statement failed is rolled back and its error thrown, even if `body` caught
    /// it. If `COMMIT` itself fails with `.connectionLost`, whether it was applied is unknown.
    @discardableResult
    public func transaction<T>(_ isolation: Isolation = .readCommitted, commit: Bool = true,
                               _ body: () throws(PostgresError) -> T) throws(PostgresError) -> T
    {
        guard !inTransaction else {
            throw PostgresError(.other, message: "a transaction is already open", context: "beginning a transaction")
        }
        switch isolation {
        case .readCommitted: try execute("BEGIN")
        case .repeatableRead: try execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        case .serializable: try execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
        }
        inTransaction = true
        do throws(PostgresError) {
            let value = try body()
            if let handle, pq.PQtransactionStatus(handle) == PQTRANS_INERROR {
                throw PostgresError(.other, message: "a statement failed inside the transaction",
                                    context: "committing")
            }
            try execute(commit ? "COMMIT" : "ROLLBACK")
            inTransaction = false
            return value
        } catch {
            if let handle, pq.PQstatus(handle) == CONNECTION_OK { _ = try? execute("ROLLBACK") }
            inTransaction = false
            throw error
        }
    }

    // MARK: - Results and errors

    /// The result when it succeeded; otherwise it is freed and its error thrown.
    private func check(_ result: OpaquePointer?, _ context: String) throws(PostgresError) -> OpaquePointer {
        guard let result else {
            let message = handle.map { PostgresURL.oneLine(cText(pq.PQerrorMessage($0))) } ?? "closed"
            let lost = handle.map { pq.PQstatus($0) == CONNECTION_BAD } ?? true
            throw PostgresError(lost ? .connectionLost : .other, message: message, context: context)
        }
        switch pq.PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            return result
        default:
            let error = failure(result, context)
            pq.PQclear(result)
            throw error
        }
    }

    private func failure(_ result: OpaquePointer, _ context: String) -> PostgresError {
        func field(_ code: UInt8) -> String? {
            pq.PQresultErrorField(result, Int32(code)).map { String(cString: $0) }
        }
        guard let sqlState = field(UInt8(ascii: "C")) else {
            // Made by libpq itself: the connection broke (or another client-side failure).
            let message = PostgresURL.oneLine(cText(pq.PQresultErrorMessage(result)))
            let lost = handle.map { pq.PQstatus($0) == CONNECTION_BAD } ?? true
            return PostgresError(lost ? .connectionLost : .other, message: message, context: context)
        }
        var message = field(UInt8(ascii: "M")) ?? "error"
        // A data exception quotes the value it refused (`invalid input syntax for type bigint: "..."`), which may
        // be personal data: cut at the quote. DETAIL (row values) is never read.
        if sqlState.hasPrefix("22"), let quote = message.firstRange(of: ": \"") {
            message = String(message[..<quote.lowerBound])
        }
        var kind = PostgresError.kind(sqlState: sqlState)
        if kind == .other, let handle, pq.PQstatus(handle) == CONNECTION_BAD { kind = .connectionLost }
        return PostgresError(kind, sqlState: sqlState, message: PostgresURL.oneLine(message),
                             constraint: field(UInt8(ascii: "n")), context: context)
    }

    private func closedError(_ context: String) -> PostgresError {
        PostgresError(.other, message: "the connection is closed", context: context)
    }

    private static func rows(_ pq: cflows_pq, _ result: OpaquePointer) -> [[PostgresValue]] {
        let count = pq.PQntuples(result)
        let columns = pq.PQnfields(result)
        guard count > 0, columns > 0 else { return [] }
        let types = (0..<columns).map { pq.PQftype(result, $0) }
        var rows: [[PostgresValue]] = []
        rows.reserveCapacity(Int(count))
        for row in 0..<count {
            var values: [PostgresValue] = []
            values.reserveCapacity(Int(columns))
            for column in 0..<columns {
                if pq.PQgetisnull(result, row, column) == 1 {
                    values.append(.null)
                    continue
                }
                let bytes = UnsafeRawBufferPointer(start: pq.PQgetvalue(result, row, column),
                                                   count: Int(pq.PQgetlength(result, row, column)))
                values.append(value(bytes, type: types[Int(column)]))
            }
            rows.append(values)
        }
        return rows
    }

    /// Type OIDs (pg_type.dat): bool 16, int8 20, int2 21, int4 23, oid 26, float4 700, float8 701.
    private static func value(_ bytes: UnsafeRawBufferPointer, type: Oid) -> PostgresValue {
        switch type {
        case 16:
            return .int8(bytes.first == UInt8(ascii: "t") ? 1 : 0)
        case 20, 21, 23, 26:
            if let value = integer(bytes) { return .int8(value) }
        case 700, 701:
            if let value = Double(String(decoding: bytes, as: UTF8.self)) { return .float8(value) }
        default:
            break
        }
        return .text(String(decoding: bytes, as: UTF8.self))
    }

    private static func integer(_ bytes: UnsafeRawBufferPointer) -> Int64? {
        var digits = bytes[...]
        let negative = digits.first == UInt8(ascii: "-")
        if negative { digits = digits.dropFirst() }
        guard !digits.isEmpty else { return nil }
        var value: Int64 = 0
        for byte in digits {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let digit = Int64(byte - UInt8(ascii: "0"))
            // Accumulated negatively, so Int64.min parses too.
            let (times, overflow) = value.multipliedReportingOverflow(by: 10)
            let (next, overflow2) = times.subtractingReportingOverflow(digit)
            guard !overflow, !overflow2 else { return nil }
            value = next
        }
        if negative { return value }
        return value == .min ? nil : -value
    }

    private static func summary(_ sql: String) -> String {
        sql.split(whereSeparator: { $0 == " " || $0 == "\n" }).prefix(4).joined(separator: " ")
    }
}

/// A C string libpq returned, empty when there is none.
private func cText(_ text: UnsafeMutablePointer<CChar>?) -> String {
    text.map { String(cString: $0) } ?? ""
}

private func monotonicMilliseconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
}
