#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

import Synchronization

/// One HTTP request as the web server handed it over, independent of the transport (FastCGI or CGI).
public struct EndpointRequest: Sendable {
    /// `REQUEST_METHOD`.
    public var method: String
    /// The path the server routed (see `EndpointRequest.routedPath(params:)`).
    public var path: String
    /// Every CGI parameter in the order received (`HTTP_*` headers included; a name may repeat).
    public var params: [(String, String)]
    /// The exact raw body bytes (at most the configured limit).
    public var body: [UInt8]
    /// True when the body was longer than the limit and reading stopped.
    public var bodyTooLarge: Bool

    /// A request; `path` is derived from the parameters when not given.
    public init(method: String, path: String? = nil, params: [(String, String)], body: [UInt8], bodyTooLarge: Bool = false) {
        self.method = method
        self.params = params
        self.path = path ?? EndpointRequest.routedPath(params: params)
        self.body = body
        self.bodyTooLarge = bodyTooLarge
    }

    /// The CGI parameters the endpoint reads. A transport may pass only these: a web server sends thirty or so,
    /// and turning each into strings is a measurable part of a request (`CGIMessage.readParam`).
    public static let parameterNames: [StaticString] = [
        "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "DOCUMENT_URI", "REQUEST_URI", "QUERY_STRING", "CONTENT_LENGTH",
        "HTTP_X_HUB_SIGNATURE_256", "HTTP_X_REQUEST_ID", "HTTP_AUTHORIZATION",
    ]

    /// Every value of parameter `name`.
    public func values(of name: String) -> [String] {
        params.compactMap { $0.0 == name ? $0.1 : nil }
    }

    /// The path the server routed: `SCRIPT_NAME` followed by `PATH_INFO` (however the server splits it), else
    /// `DOCUMENT_URI`, else `REQUEST_URI` without its query.
    public static func routedPath(params: [(String, String)]) -> String {
        func first(_ name: String) -> String? { params.first { $0.0 == name }?.1 }
        let joined = (first("SCRIPT_NAME") ?? "") + (first("PATH_INFO") ?? "")
        if !joined.isEmpty { return joined }
        if let uri = first("DOCUMENT_URI"), !uri.isEmpty { return uri }
        if let uri = first("REQUEST_URI") { return String(uri.prefix { $0 != "?" }) }
        return ""
    }
}

/// The answer: status, headers and body; the transport writes them out.
public struct EndpointResponse: Sendable, Equatable {
    /// HTTP status code.
    public var status: Int
    /// Header lines (name, value), without `Status`.
    public var headers: [(String, String)]
    /// Body bytes.
    public var body: [UInt8]

    /// An answer with `status`, `headers` and `body`.
    public init(status: Int, headers: [(String, String)], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A plain-text answer with `message` and a newline as the body.
    public static func text(_ status: Int, _ message: String, extraHeaders: [(String, String)] = []) -> EndpointResponse {
        EndpointResponse(status: status, headers: [("Content-Type", "text/plain; charset=utf-8")] + extraHeaders,
                         body: Array((message + "\n").utf8))
    }

    /// The value of header `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    /// Compares status, headers and body.
    public static func == (a: EndpointResponse, b: EndpointResponse) -> Bool {
        a.status == b.status && a.body == b.body && a.headers.elementsEqual(b.headers, by: { $0 == $1 })
    }

    /// The reason phrase for `status`, for the `Status:` line.
    public static func reason(_ status: Int) -> String {
        switch status {
        case 200: return "OK"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 413: return "Payload Too Large"
        case 421: return "Misdirected Request"
        case 427: return "Flow Token Invalid"
        case 432: return "Signature Invalid"
        case 500: return "Internal Server Error"
        case 503: return "Service Unavailable"
        default: return "Status"
        }
    }
}

/// What one request was, for the access log line (no personal data).
public struct RequestSummary: Sendable {
    /// The flow name, or the route (`health`, ...).
    public var route = "-"
    /// The decrypted action, when known.
    public var action = "-"
    /// The decrypted screen, when known.
    public var screen = "-"
    /// Why an error status was given, in plain words.
    public var reason: String?
}

/// Per-thread state the endpoint uses: the database connection and the crypto contexts set up once (one per
/// private key, one per app secret). Owned by exactly one worker thread.
public final class Worker {
    /// This thread's connection, if a database is configured.
    public let database: Database?
    /// One OAEP decryptor per configured private key, newest first.
    public let decryptors: [OAEPDecryptor]
    /// One keyed HMAC per accepted app secret, current first.
    public let signatureKeys: [HMACSHA256]
    /// AES-GCM contexts reused for every request's decryption and answer.
    public let aesGCM = AESGCMContexts()
    /// The process's counters (shared by its workers).
    public let metrics: Metrics
    /// This worker's own counters.
    let slot: MetricsSlot

    /// Opens this thread's connection (applying migrations) when `configuration` has a database; counts into
    /// `metrics` (the process's; a fresh set when not given).
    public init(configuration: Configuration, metrics: Metrics? = nil) throws(DatabaseError) {
        decryptors = configuration.keys.map { OAEPDecryptor(key: $0) }
        signatureKeys = configuration.appSecrets.map { HMACSHA256(key: $0) }
        self.metrics = metrics ?? Metrics()
        slot = self.metrics.makeSlot()
        if let location = configuration.database {
            let database = try location.open(migrations: configuration.migrations,
                                             busyTimeoutMilliseconds: configuration.busyTimeoutMilliseconds,
                                             deadlineMilliseconds: configuration.runtime.requestDeadlineMilliseconds,
                                             fileGroup: configuration.databaseGroup)
            self.database = database
            slot.connection.withLock { $0 = database.interruptHandle }
            slot.canceller.withLock { $0 = database.canceller }
        } else {
            database = nil
        }
    }

    /// Closes the connection (call before the thread exits).
    public func close() {
        slot.connection.withLock { $0 = 0 }
        slot.canceller.withLock { $0 = nil }
        database?.close()
    }
}

/// The transport-independent entry point: (method, path, params, raw body) in, (status, headers, body) out.
public struct Endpoint: Sendable {
    /// The validated configuration (keys parsed once per process).
    public let configuration: Configuration
    /// Where request and error lines go.
    public let log: Logger
    /// The clock (seconds since the epoch); replaceable in tests.
    public let clock: @Sendable () -> Int64

    /// An endpoint for `configuration`.
    public init(configuration: Configuration, log: Logger, clock: @escaping @Sendable () -> Int64 = { Int64(time(nil)) }) {
        self.configuration = configuration
        self.log = log
        self.clock = clock
    }

    private enum Route {
        case flow(String)
        case health(ready: Bool)
        case webhook
        case readAPI(String)
        case metrics
        case notFound
    }

    /// Routes by the last path components (compared as bytes: this runs on every request).
    private static func route(_ path: String) -> Route {
        var path = path
        return path.withUTF8 { bytes -> Route in
            // The last three non-empty components, last first.
            var parts: [UnsafeBufferPointer<UInt8>] = []
            parts.reserveCapacity(3)
            var end = bytes.count
            while parts.count < 3, end > 0 {
                var start = end
                while start > 0, bytes[start - 1] != UInt8(ascii: "/") { start -= 1 }
                if start < end { parts.append(UnsafeBufferPointer(rebasing: bytes[start..<end])) }
                end = start - 1
            }
            func part(_ index: Int, is word: StaticString) -> Bool {
                index < parts.count && parts[index].count == word.utf8CodeUnitCount
                    && memcmp(parts[index].baseAddress!, word.utf8Start, word.utf8CodeUnitCount) == 0
            }
            if part(0, is: "live"), part(1, is: "health") { parts.removeFirst() }
            guard let last = parts.first else { return .notFound }
            if part(0, is: "health") { return .health(ready: false) }
            if part(0, is: "ready"), part(1, is: "health") { return .health(ready: true) }
            if part(1, is: "flows") { return .flow(String(decoding: last, as: UTF8.self)) }
            if part(0, is: "webhook") { return .webhook }
            if part(0, is: "metrics") { return .metrics }
            return .readAPI(String(decoding: last, as: UTF8.self))
        }
    }

    /// Answers one request, counting it in the worker's metrics and writing one access line to the log.
    public func handle(_ request: EndpointRequest, worker: Worker) -> EndpointResponse {
        let start = monotonicNanoseconds()
        let number = worker.metrics.nextRequestNumber()
        worker.slot.requestStart.store(start, ordering: .releasing)
        worker.database?.deadline = start + Int64(configuration.runtime.requestDeadlineMilliseconds) * 1_000_000
        var summary = RequestSummary()
        var response = respond(request, worker: worker, summary: &summary)
        let end = monotonicNanoseconds()
        worker.database?.deadline = 0
        worker.slot.requestStart.store(0, ordering: .releasing)
        if worker.slot.interrupted.exchange(false, ordering: .acquiringAndReleasing), response.status >= 500 {
            summary.reason = "request deadline exceeded (REQUEST_DEADLINE_MS)"
            response = .text(503, "request deadline exceeded, try again later")
        }
        let micros = Int(end - start) / 1000
        worker.slot.record(flow: metricsRoute(summary.route), action: Endpoint.metricsAction(summary.action),
                           status: response.status, micros: micros)
        let level: LogLevel = response.status >= 500 ? .error : (response.status >= 400 ? .warning : .info)
        guard level >= log.level else { return response }
        let milliseconds = "\(micros / 1000).\(String(micros % 1000 / 100))"
        let id = Endpoint.requestID(request) ?? "\(worker.metrics.pid)-\(number)"
        if let reason = summary.reason {
            log.log(level, "request", ["id": id, "route": summary.route, "action": summary.action,
                                       "screen": summary.screen, "status": String(response.status),
                                       "ms": milliseconds, "reason": reason])
        } else {
            log.log(level, "request", ["id": id, "route": summary.route, "action": summary.action,
                                       "screen": summary.screen, "status": String(response.status),
                                       "ms": milliseconds])
        }
        return response
    }

    /// The `flow` label: a served flow or a known route, else `other` (the path is the client's choice).
    private func metricsRoute(_ route: String) -> String {
        switch route {
        case "-", "health", "health/ready", "webhook", "metrics", "messages", "stats":
            return route
        default:
            return configuration.flows[route] != nil || configuration.readResources[route] != nil ? route : "other"
        }
    }

    /// The `action` label: one of the protocol's actions, else `other`.
    private static func metricsAction(_ action: String) -> String {
        switch action {
        case "-", "ping", "INIT", "data_exchange", "BACK": return action
        default: return "other"
        }
    }

    /// The web server's `X-Request-ID` when it passes a plain one (letters, digits, `-_.:`, at most 64).
    private static func requestID(_ request: EndpointRequest) -> String? {
        guard let value = request.params.first(where: { $0.0 == "HTTP_X_REQUEST_ID" })?.1, !value.isEmpty,
            value.utf8.count <= 64,
            value.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x3A) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A)
                || $0 == 0x2D || $0 == 0x5F || $0 == 0x2E })
        else { return nil }
        return value
    }

    /// Read API and metrics answers (personal data, live figures): never stored by a cache, never content-sniffed.
    static let privateAnswerHeaders = [("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")]

    private func respond(_ request: EndpointRequest, worker: Worker, summary: inout RequestSummary) -> EndpointResponse {
        func fail(_ status: Int, _ message: String, _ headers: [(String, String)] = []) -> EndpointResponse {
            summary.reason = message
            return .text(status, message, extraHeaders: headers)
        }
        switch Endpoint.route(request.path) {
        case .notFound:
            return fail(404, "not found: no flows-fcgi route ends like \(request.path.isEmpty ? "/" : request.path)")
        case .health(let ready):
            return health(request, ready: ready, worker: worker, summary: &summary)
        case .webhook:
            return webhook(request, worker: worker, summary: &summary)
        case .readAPI(let name):
            guard name == "messages" || name == "stats" || configuration.readResources[name] != nil else {
                return fail(404, "not found: no flows-fcgi route ends like \(request.path)")
            }
            var response = readAPI(name, request, worker: worker, summary: &summary)
            response.headers += Endpoint.privateAnswerHeaders
            return response
        case .metrics:
            var response = metrics(request, worker: worker, summary: &summary)
            response.headers += Endpoint.privateAnswerHeaders
            return response
        case .flow(let name):
            summary.route = name
            guard let flow = configuration.flows[name] else {
                return fail(404, "unknown flow '\(name)' (served: \(configuration.flows.keys.sorted().joined(separator: ", ")))")
            }
            guard request.method == "POST" else {
                return fail(405, "method \(request.method) not allowed", [("Allow", "POST")])
            }
            if let (status, message) = signedBodyProblem(request, worker: worker, limit: configuration.maxBodyBytes,
                                                         limitSetting: "MAX_BODY_BYTES", signatureStatus: 432) {
                return fail(status, message)
            }
            guard let envelope = Envelope.parse(request.body) else {
                return fail(400, "the body is not a Flows envelope (a JSON object with encrypted_flow_data, "
                    + "encrypted_aes_key and initial_vector strings)")
            }
            let decrypted: DecryptedRequest
            do {
                decrypted = try FlowCrypto.decrypt(envelope, decryptors: worker.decryptors, contexts: worker.aesGCM)
            } catch {
                return fail(421, "cannot decrypt: \(Endpoint.describe(error))")
            }
            return answer(decrypted, flow: flow, worker: worker, summary: &summary)
        }
    }

    /// The health check's answer, serialized once.
    private static let pingAnswer = JSONValue.object(["data": ["status": "active"]]).serialized

    /// Answers a decrypted request (internal, not private: `answerClearText` fuzzes it without encryption).
    func answer(_ decrypted: DecryptedRequest, flow: any Flow, worker: Worker,
                        summary: inout RequestSummary) -> EndpointResponse {
        let json = decrypted.json
        let action = json["action"]?.stringValue
        summary.action = action.map { String($0.prefix(32)) } ?? "-"
        summary.screen = json["screen"]?.stringValue.map { String($0.prefix(64)) } ?? "-"
        func fail(_ status: Int, _ message: String) -> EndpointResponse {
            summary.reason = message
            return .text(status, message)
        }
        func encrypted(_ status: Int, _ value: JSONValue) -> EndpointResponse {
            encrypted(status, clearText: value.serialized)
        }
        func encrypted(_ status: Int, clearText: [UInt8]) -> EndpointResponse {
            do {
                let body = try decrypted.sealBytes(clearText, contexts: worker.aesGCM)
                return EndpointResponse(status: status, headers: [("Content-Type", "text/plain")], body: body)
            } catch {
                return fail(500, "internal error")
            }
        }
        guard let version = json["version"]?.stringValue, version == "3.0" || version == "4.0" else {
            return fail(400, "unsupported or missing version (expected \"3.0\" or \"4.0\")")
        }
        guard let action else { return fail(400, "missing action") }
        if action == "ping" {
            return encrypted(200, clearText: Endpoint.pingAnswer)
        }
        let data = json["data"]?.objectValue ?? [:]
        if let errorKey = data["error_key"] ?? data["error"], errorKey != .null {
            let detail = data["error_message"]?.stringValue ?? data["error"]?.stringValue ?? errorKey.text
            log.warning("client reported an error with an earlier answer",
                        ["flow": flow.name, "screen": summary.screen, "error": String(detail.prefix(200))])
            return encrypted(200, ["data": ["acknowledged": true]])
        }
        guard let flowAction = FlowAction(rawValue: action) else {
            return fail(400, "unknown action '\(summary.action)' (expected ping, INIT, data_exchange or BACK)")
        }
        guard let token = json["flow_token"]?.stringValue, !token.isEmpty else {
            return fail(400, "missing flow_token")
        }
        if let problem = FlowToken.problem(token) { return fail(400, problem) }
        if let tokenSignature = json["flow_token_signature"], configuration.signatureCheck {
            guard let jwt = tokenSignature.stringValue,
                FlowTokenSignature.isValid(jwt, flowToken: token, secrets: configuration.appSecrets)
            else {
                summary.reason = "flow_token_signature does not match the flow token"
                return encrypted(427, ["error_msg": "This form link is not valid. Please request a new one."])
            }
        }
        let screen = json["screen"]?.stringValue ?? ""
        let request = FlowRequest(version: version, action: flowAction, screen: screen, data: data, flowToken: token)
        let context = FlowContext(database: worker.database, now: clock(), log: log)
        do {
            let answer = try flow.handle(request, context: context)
            if answer.status == 427 { summary.reason = "flow token no longer valid" }
            return encrypted(answer.status, clearText: answer.clearText)
        } catch let error as DatabaseError where error.isUnavailable {
            log.error("storage unavailable", ["flow": flow.name, "error": error.description])
            return fail(503, "storage unavailable, try again later")
        } catch let error as DatabaseError where error.outcome == .invalidInput {
            log.warning("a value the database cannot hold", ["flow": flow.name, "error": error.description])
            return fail(400, "a value in the request cannot be stored")
        } catch {
            log.error("flow failed", ["flow": flow.name, "error": String(describing: error)])
            return fail(500, "internal error")
        }
    }

    /// Checks a signed POST body before anything parses it: within `limit` (else 413), complete (a body shorter
    /// than `CONTENT_LENGTH` means the client went away: 400), and signed with a configured app secret (else
    /// `signatureStatus`: 432 for Flows, 401 for webhooks). `nil` when the body may be used.
    func signedBodyProblem(_ request: EndpointRequest, worker: Worker, limit: Int, limitSetting: String,
                           signatureStatus: Int) -> (Int, String)? {
        guard !request.bodyTooLarge, request.body.count <= limit else {
            return (413, "request body larger than \(limit) bytes (\(limitSetting))")
        }
        // The body is read to the end of the stream; a shorter body than announced means the client went away.
        if let announced = request.values(of: "CONTENT_LENGTH").first.flatMap({ Int($0) }), announced > request.body.count {
            return (400, "request body ended early (\(request.body.count) of \(announced) bytes): client went away")
        }
        if configuration.signatureCheck {
            do {
                try Signature.verify(values: request.values(of: Signature.parameterName), body: request.body,
                                     keys: worker.signatureKeys)
            } catch {
                return (signatureStatus, error.description)
            }
        }
        return nil
    }

    private static func describe(_ failure: DecryptionFailure) -> String {
        switch failure {
        case .keyUnwrapFailed: return "the AES key does not unwrap with any configured private key"
        case .badKeyLength(let n): return "the unwrapped AES key has \(n) bytes, expected 16"
        case .badIVLength(let n): return "initial_vector has \(n) bytes, expected 16"
        case .badBase64(let field): return "\(field) is not valid base64"
        case .ciphertextTooShort: return "encrypted_flow_data is shorter than the GCM tag"
        case .tagMismatch: return "the GCM tag does not verify"
        case .notJSONObject(let why): return why
        }
    }
}
