/// A read API resource a flow adds: `GET .../<path>` behind `API_TOKEN`, answering JSON.
public struct ReadResource: Sendable {
    /// The last path component, e.g. `bookings`.
    public let path: String
    /// The query parameters accepted; any other is refused with 400 naming the accepted ones.
    public let parameters: Set<String>
    /// The answer over the worker's database and the checked parameters. Throwing `BadParameter` gives 400 with
    /// its message, an unavailable `DatabaseError` 503, anything else 500.
    public let answer: @Sendable (ReadParameters, Database) throws -> JSONValue

    /// A resource at `.../<path>` accepting `parameters`.
    public init(path: String, parameters: Set<String>,
                answer: @escaping @Sendable (ReadParameters, Database) throws -> JSONValue) {
        self.path = path
        self.parameters = parameters
        self.answer = answer
    }

    /// The paths the core answers itself; a flow's resource may not take them.
    public static let corePaths: Set<String> = ["messages", "stats", "metrics", "webhook", "health", "ready", "live"]

    /// A listing page as every read API listing answers it: `{"data":[...],"total":N,"limit":N,"offset":N}`.
    public static func page(_ data: [JSONValue], total: Int64, limit: Int, offset: Int) -> JSONValue {
        ["data": .array(data), "total": .number(String(total)), "limit": .int(limit), "offset": .int(offset)]
    }
}

/// A gauge a flow adds to `.../metrics`: one number read from the database at scrape time.
public struct FlowGauge: Sendable {
    /// The metric name, e.g. `flows_bookings_total`.
    public let name: String
    /// The `# HELP` text.
    public let help: String
    /// SQL answering one integer, e.g. `SELECT count(*) FROM appointment_bookings`.
    public let query: String

    /// A gauge `name` whose value `query` reads.
    public init(name: String, help: String, query: String) {
        self.name = name
        self.help = help
        self.query = query
    }
}

/// A read API parameter that is missing its mark: answered 400 with the message.
public struct BadParameter: Error {
    /// What is wrong, naming the parameter.
    public let message: String
    /// The problem `message`.
    public init(_ message: String) { self.message = message }
}

/// The checked query parameters of one read API request.
public struct ReadParameters {
    private let query: QueryString

    init(_ request: EndpointRequest, allowed: Set<String>) throws(BadParameter) {
        do {
            query = try QueryString(request: request)
        } catch {
            throw BadParameter(error.description)
        }
        for (name, _) in query.pairs where !allowed.contains(name) {
            let known = allowed.isEmpty ? "none" : allowed.sorted().joined(separator: ", ")
            throw BadParameter("unknown parameter '\(String(name.prefix(40)))' (accepted: \(known))")
        }
    }

    /// The value of `name`, `nil` when absent (given twice is a `BadParameter`).
    public func text(_ name: String) throws(BadParameter) -> String? {
        do {
            return try query.single(name)
        } catch {
            throw BadParameter(error.description)
        }
    }

    /// The whole number given for `name` within `range`, else `value` when absent.
    public func integer(_ name: String, default value: Int, range: ClosedRange<Int>) throws(BadParameter) -> Int {
        guard let text = try text(name) else { return value }
        guard let number = ParameterRules.integer(text, in: range) else {
            throw BadParameter(ParameterRules.integerProblem(name, range))
        }
        return number
    }

    /// The date (`YYYY-MM-DD`) given for `name`, `nil` when absent.
    public func date(_ name: String) throws(BadParameter) -> String? {
        guard let value = try text(name) else { return nil }
        guard ParameterRules.isDate(value) else { throw BadParameter(ParameterRules.dateProblem(name)) }
        return value
    }

    /// The ISO 8601 time given for `name` (`2026-11-23`, `2026-11-23T12:00:00Z`) in seconds since the epoch, `nil`
    /// when absent.
    public func time(_ name: String) throws(BadParameter) -> Int64? {
        guard let text = try text(name) else { return nil }
        guard let epoch = ISOTime.parse(text) else {
            throw BadParameter("\(name) must be an ISO 8601 time such as 2026-11-23 or 2026-11-23T12:00:00Z "
                + "(an offset's + written %2B in the query string)")
        }
        return epoch
    }

    /// `limit` (1-100, default 50) and `offset` (0 or more).
    public func page() throws(BadParameter) -> (limit: Int, offset: Int) {
        (try integer("limit", default: 50, range: ParameterRules.limit),
         try integer("offset", default: 0, range: ParameterRules.offset))
    }
}
