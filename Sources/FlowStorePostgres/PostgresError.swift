/// A PostgreSQL failure: what kind it is (for the endpoint's answer), the SQLSTATE when the server gave one, the
/// server's or libpq's message, and what was being done.
///
/// Never holds a password: connection URIs in messages are masked (`PostgresURL.masked`), and the server's DETAIL
/// (which quotes row values, so personal data) and the value quoted by a data exception are left out.
public struct PostgresError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, in the terms the endpoint answers with.
    public enum Kind: Sendable, Equatable {
        /// No server answered: connection refused, no route, name not resolved, no answer within `connect_timeout`,
        /// or the connection was down and reconnecting failed that way.
        case unreachable
        /// The connection broke during the call (the server or the network went away). The outcome of a `COMMIT`
        /// that failed this way is unknown: the caller must not report success, and a retry must be idempotent.
        case connectionLost
        /// The server answered but cannot serve now: shutting down (57P01 admin shutdown, 57P02 crash shutdown),
        /// starting up or in recovery (57P03), out of resources (class 53: too many connections, disk full), a
        /// read-only standby (25006).
        case serverUnavailable
        /// `statement_timeout` ended the statement (57014; also a cancel request).
        case statementTimeout
        /// `lock_timeout` ended a wait for a row or table lock (55P03).
        case lockTimeout
        /// A serializable transaction lost a race (40001) or a deadlock was broken (40P01): retrying the whole
        /// transaction may succeed.
        case serializationFailure
        /// A unique constraint refused the row (23505); `constraint` names it.
        case uniqueViolation
        /// The server refused this client: authentication failed or needs a password (class 28), the database
        /// does not exist (3D000). A configuration problem, not a passing one.
        case rejected
        /// A value was refused before it was sent (text with U+0000, which PostgreSQL text cannot hold).
        case invalidValue
        /// The connection settings are unusable: a malformed URI, an unreadable password file, a password given twice.
        case invalidConfiguration
        /// Any other error (a SQL error in a statement: a bug, not a state of the database).
        case other
    }

    /// The answer an endpoint gives for an error of this kind.
    public enum Outcome: Sendable, Equatable {
        /// The database cannot be used right now: 503, the process keeps serving and reconnects.
        case unavailable
        /// Another writer won (the last seat, the same key twice, a serialization race): re-read and answer from
        /// the winner's state, or retry the transaction (a 409-style outcome, never a 500).
        case conflict
        /// The request carried a value the database cannot store: 400.
        case invalidInput
        /// A bug or a configuration error: 500 at request time, exit 78 at startup.
        case failure
    }

    /// The kind of failure.
    public let kind: Kind
    /// The five-character SQLSTATE, when the server sent one (nil for client-side failures like a lost connection).
    public let sqlState: String?
    /// The message, on one line, without DETAIL and without quoted values.
    public let message: String
    /// The constraint named by an integrity error (23xxx), e.g. `appointment_bookings_flow_token_key`.
    public let constraint: String?
    /// What was being done, e.g. `running statement 'book'` or `connecting to postgresql://flows:***@db/flows`.
    public let context: String

    /// An error of `kind` with `message` while doing `context`; `sqlState` and `constraint` when known.
    public init(_ kind: Kind, sqlState: String? = nil, message: String, constraint: String? = nil, context: String) {
        self.kind = kind
        self.sqlState = sqlState
        self.message = message
        self.constraint = constraint
        self.context = context
    }

    /// How an endpoint answers this error.
    public var outcome: Outcome {
        switch kind {
        case .unreachable, .connectionLost, .serverUnavailable, .statementTimeout, .lockTimeout, .rejected:
            return .unavailable
        case .serializationFailure, .uniqueViolation:
            return .conflict
        case .invalidValue:
            return .invalidInput
        case .invalidConfiguration, .other:
            return .failure
        }
    }

    /// True when the endpoint should answer 503 (`outcome == .unavailable`).
    public var isUnavailable: Bool { outcome == .unavailable }

    /// `context: message (SQLSTATE X)`.
    public var description: String {
        "\(context): \(message)" + (sqlState.map { " (SQLSTATE \($0))" } ?? "")
    }

    /// The kind of error a SQLSTATE stands for.
    public static func kind(sqlState: String) -> Kind {
        switch sqlState {
        case "57P01", "57P02", "57P03", "25006": return .serverUnavailable
        case "57014": return .statementTimeout
        case "55P03": return .lockTimeout
        case "40001", "40P01": return .serializationFailure
        case "23505": return .uniqueViolation
        case "3D000": return .rejected
        default:
            switch sqlState.prefix(2) {
            case "08": return .connectionLost
            case "53": return .serverUnavailable
            case "28": return .rejected
            default: return .other
            }
        }
    }
}
