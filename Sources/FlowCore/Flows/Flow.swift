/// What WhatsApp asks a flow to do.
public enum FlowAction: String, Sendable {
    /// The user opened the Flow: answer the first screen.
    case initial = "INIT"
    /// A screen submitted data.
    case dataExchange = "data_exchange"
    /// The user went back to a screen with `refresh_on_back`.
    case back = "BACK"
}

/// A decrypted request for a flow (ping and error notifications never reach flows).
public struct FlowRequest: Sendable {
    /// `"3.0"` or `"4.0"`.
    public let version: String
    /// INIT, data_exchange or BACK.
    public let action: FlowAction
    /// The screen the request came from (empty for INIT).
    public let screen: String
    /// The screen's data (empty when absent).
    public let data: [String: JSONValue]
    /// The session key the business chose when it sent the Flow.
    public let flowToken: String

    /// A request as WhatsApp sends it, decrypted.
    public init(version: String, action: FlowAction, screen: String, data: [String: JSONValue], flowToken: String) {
        self.version = version
        self.action = action
        self.screen = screen
        self.data = data
        self.flowToken = flowToken
    }
}

/// A flow's answer.
public enum FlowAnswer: Sendable, Equatable {
    /// Show `screen` with `data` (the data must match what the screen declares in the Flow JSON).
    case screen(String, data: [String: JSONValue])
    /// Show a screen serialized once (an answer that is the same for every request, such as a first screen).
    case prepared(PreparedScreen)
    /// The flow token is no longer valid (completed or expired): HTTP 427 with an encrypted `error_msg`.
    case tokenNoLongerValid(message: String)

    /// The same answer with a prepared screen written as `.screen`.
    public var unprepared: FlowAnswer {
        if case .prepared(let screen) = self { return .screen(screen.id, data: screen.data) }
        return self
    }

    /// The screen shown; nil for a 427.
    public var screenID: String? {
        if case .screen(let id, _) = unprepared { return id }
        return nil
    }

    /// The data of the screen shown; nil for a 427.
    public var screenData: [String: JSONValue]? {
        if case .screen(_, let data) = unprepared { return data }
        return nil
    }

    /// Equal when they show the same screen with the same data (prepared or not), or give the same 427 message.
    public static func == (a: FlowAnswer, b: FlowAnswer) -> Bool {
        switch (a.unprepared, b.unprepared) {
        case (.screen(let id1, let data1), .screen(let id2, let data2)): return id1 == id2 && data1 == data2
        case (.tokenNoLongerValid(let m1), .tokenNoLongerValid(let m2)): return m1 == m2
        default: return false
        }
    }

    /// The clear text the endpoint encrypts for this answer, exactly as sent: `{"screen":...,"data":...}` (a
    /// prepared screen's bytes serialized once), or `{"error_msg":...}` for a 427.
    public var clearText: [UInt8] {
        switch self {
        case .screen(let id, let data):
            return JSONValue.object(["screen": .string(id), "data": .object(data)]).serialized
        case .prepared(let screen): return screen.clearText
        case .tokenNoLongerValid(let message): return JSONValue.object(["error_msg": .string(message)]).serialized
        }
    }

    /// The HTTP status the answer is sent with: 200, or 427 when the token is no longer valid.
    public var status: Int {
        if case .tokenNoLongerValid = self { return 427 }
        return 200
    }

    /// Show `screen` with `data` and, when `errorMessage` is given, the client's snackbar `error_message` (a field
    /// the Flow JSON does not declare: FLOWS-PROTOCOL.md section 3).
    public static func screen(_ id: String, data: [String: JSONValue], errorMessage: String?) -> FlowAnswer {
        guard let errorMessage else { return .screen(id, data: data) }
        var data = data
        data["error_message"] = .string(errorMessage)
        return .screen(id, data: data)
    }

    /// The reserved completion screen, carrying `params` back to the business in the `nfm_reply` webhook.
    public static func success(params: [String: JSONValue]) -> FlowAnswer {
        .screen("SUCCESS", data: ["extension_message_response": .object(["params": .object(params)])])
    }
}

/// A screen and its data with the answer's clear text (`{"data":...,"screen":...}`) serialized once: for an answer
/// that is the same for every request, the endpoint then only encrypts.
public struct PreparedScreen: Sendable, Equatable {
    /// The screen id.
    public let id: String
    /// The screen's data.
    public let data: [String: JSONValue]
    /// The answer's clear text.
    public let clearText: [UInt8]

    /// Serializes the answer showing `id` with `data`.
    public init(_ id: String, data: [String: JSONValue]) {
        self.id = id
        self.data = data
        clearText = FlowAnswer.screen(id, data: data).clearText
    }

    /// Equal when id and data are.
    public static func == (a: PreparedScreen, b: PreparedScreen) -> Bool { a.id == b.id && a.data == b.data }
}

/// What a flow may use while answering: the calling thread's database connection and the clock.
public struct FlowContext {
    /// This worker thread's connection; `nil` when no `DATABASE_URL` is configured.
    public let database: Database?
    /// The current time in seconds since the epoch (a parameter so tests can move it).
    public let now: Int64
    /// Where the flow can log (no personal data).
    public let log: Logger

    /// A context for one request.
    public init(database: Database?, now: Int64, log: Logger) {
        self.database = database
        self.now = now
        self.log = log
    }
}

/// Screen logic for one flow, served at `.../flows/<name>`, and what the core needs from it besides answering:
/// its tables, how to purge its personal data, its read API resources, its statistics and gauges (its operator
/// commands are on its `FlowFactory`). The core iterates over the served flows and names none of them. A new coded
/// flow is one folder under `Flows/` with a type conforming to this protocol, one line in `FlowRegistry.all`, and
/// its Flow JSON under `flows/`.
///
/// The `nfm_reply` webhook that closes a flow is linked by flow token: the core records each confirmed token in
/// `webhook_confirmations` (and queues its callback) and tells every served flow through `confirmed`; a flow reads
/// it with `WebhookStore.isConfirmed` and counts it through `sessionTable`.
public protocol Flow: Sendable {
    /// The last path component the flow is served at, e.g. `expense`.
    var name: String { get }
    /// The tables this flow needs; applied when a worker opens its database.
    var migrations: [Migration] { get }
    /// Answers one request. Throwing `DatabaseError` gives 503 when storage is unavailable (or lost a race), 400 for
    /// a value it cannot hold; anything else 500.
    func handle(_ request: FlowRequest, context: FlowContext) throws -> FlowAnswer
    /// The table holding this flow's sessions, one row per flow token with `flow_token` and a 0/1 `completed`
    /// column, for the read API's statistics (started, completed, confirmed by webhook); `nil` leaves the flow
    /// out of them.
    var sessionTable: String? { get }
    /// The longest time one of this flow's tokens may be used, in seconds: a purge keeps sessions at least this
    /// long (0: no limit of its own).
    var sessionLifetimeSeconds: Int64 { get }
    /// Removes or anonymises this flow's personal data older than the cutoffs in one `BEGIN IMMEDIATE` transaction
    /// (rolled back when `dryRun`), leaving a tombstone for each purged flow token so it keeps getting 427.
    /// Tables that are not there (a database without this flow's migrations) are skipped.
    ///
    /// - Parameters:
    ///   - before: data (bookings, submissions) created or taking place before this time goes.
    ///   - sessionsBefore: sessions created before this time go (never later than `before`, and at least one
    ///     session lifetime of every flow ago).
    /// - Returns: `(table, rows)` per table, in the order purged; a table's name may say how rows were purged,
    ///   e.g. `appointment_bookings (anonymised)`.
    func purge(database: Database, before: Int64, sessionsBefore: Int64, dryRun: Bool)
        throws(DatabaseError) -> [(String, Int)]
    /// Called in the webhook's write transaction when an `nfm_reply` first confirms `token` (whichever flow it
    /// belongs to: a flow ignores tokens it does not hold), e.g. to mark its submission confirmed.
    func confirmed(token: String, messageID: String, database: Database, now: Int64) throws(DatabaseError)
    /// The name the callback of `token`'s `nfm_reply` carries as `flow` when this flow holds the token's completion
    /// (a form flow's submission), else `nil`. Called in the webhook's write transaction, when forwarding.
    func callbackFlowName(token: String, database: Database) throws(DatabaseError) -> String?
    /// Started, completed and confirmed sessions, for the read API's statistics: by default counted in
    /// `sessionTable`; `nil` leaves the flow out.
    func sessionCounts(database: Database)
        throws(DatabaseError) -> (started: Int64, completed: Int64, confirmed: Int64)?
    /// The read API resources this flow adds (e.g. `GET .../bookings`), behind `API_TOKEN`.
    var readResources: [ReadResource] { get }
    /// The gauges this flow adds to `.../metrics` (e.g. `flows_bookings_total`).
    var gauges: [FlowGauge] { get }
}

extension Flow {
    /// No session table: the flow is left out of the statistics.
    public var sessionTable: String? { nil }
    /// No session lifetime of its own.
    public var sessionLifetimeSeconds: Int64 { 0 }
    /// No personal data stored.
    public func purge(database: Database, before: Int64, sessionsBefore: Int64, dryRun: Bool)
        throws(DatabaseError) -> [(String, Int)] { [] }
    /// Nothing to mark: `webhook_confirmations` holds the confirmation.
    public func confirmed(token: String, messageID: String, database: Database, now: Int64) throws(DatabaseError) {}
    /// The callback carries no flow name.
    public func callbackFlowName(token: String, database: Database) throws(DatabaseError) -> String? { nil }
    /// Counted in `sessionTable` (a `flow_token` and a 0/1 `completed` column), if any.
    public func sessionCounts(database: Database)
        throws(DatabaseError) -> (started: Int64, completed: Int64, confirmed: Int64)?
    {
        guard let sessionTable else { return nil }
        return try WebhookStore.flowCounts(database: database, sessionTable: sessionTable)
    }
    /// No read API resources.
    public var readResources: [ReadResource] { [] }
    /// No gauges.
    public var gauges: [FlowGauge] { [] }
}

/// Raised by a flow that needs a database when none is configured.
public struct StorageNotConfigured: Error, Sendable, CustomStringConvertible {
    /// The flow that needed it.
    public let flow: String
    /// Creates the error for `flow`.
    public init(flow: String) { self.flow = flow }
    /// Plain words for the log.
    public var description: String { "flow '\(flow)' needs a database: set DATABASE_URL=sqlite:/path/flows.db" }
}

extension FlowContext {
    /// The database, or `StorageNotConfigured` for `flow`.
    public func requireDatabase(for flow: String) throws -> Database {
        guard let database else { throw StorageNotConfigured(flow: flow) }
        return database
    }
}
