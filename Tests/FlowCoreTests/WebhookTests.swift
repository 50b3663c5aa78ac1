#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Testing
@testable import FlowCore

// MARK: - Harness

let webhookAPIToken = "api-token-0123456789abcdef"

/// Both real flows on a SQLite file in a fresh temporary directory, with a verify token, an API token and a log
/// file; requests go through `Endpoint.handle`.
final class WebhookHarness {
    let directory: String
    let endpoint: Endpoint
    let worker: Worker
    let logPath: String

    init(_ extra: [String: String?] = [:], flows: [FlowFactory] = [AppointmentFlow.factory, ExpenseFlow.factory],
         now: Int64 = appointmentMonday, engine: Engine = .sqlite) throws {
        directory = temporaryDirectory()
        logPath = directory + "/responder.log"
        var values = [
            "APP_SECRET": "secret", "APP_SECRET_PREVIOUS": "old-secret",
            "PRIVATE_KEY_FILE": fixturesDirectory + "/keys/pkcs8.pem",
            "DATABASE_URL": try TestStore(engine, directory: directory).databaseURL,
            "VERIFY_TOKEN": "verify me", "API_TOKEN": webhookAPIToken,
        ]
        for (key, value) in extra { values[key] = value }
        let configuration = try Configuration(settings: Settings(values), flows: flows)
        endpoint = Endpoint(configuration: configuration, log: Logger(level: .debug, sink: try LogSink.file(logPath)),
                            clock: { now })
        worker = try Worker(configuration: configuration)
    }

    /// The flow tokens, phone numbers and texts this harness sent (at least 4 characters: shorter ones would match
    /// unrelated log text); checked against the log when the harness goes away.
    private(set) var personal: [String] = []

    private func remember(_ value: String) {
        if value.count >= 4, !personal.contains(value) { personal.append(value) }
    }

    /// Remembers the personal values in a webhook body: senders, recipients, texts, and `response_json`'s values.
    private func remember(webhook body: [UInt8]) {
        func walk(_ value: JSONValue, key: String) {
            switch value {
            case .object(let members): for (k, v) in members { walk(v, key: k) }
            case .array(let items): for item in items { walk(item, key: key) }
            case .string(let text) where key == "response_json":
                if let parsed = try? JSONParser.parse(text) { walk(parsed, key: "") }
            case .string(let text) where ["from", "recipient_id", "body", "flow_token", ""].contains(key):
                remember(text)
            default: break
            }
        }
        if let json = try? JSONParser.parse(body) { walk(json, key: "-") }
    }

    deinit {
        expectNoPersonalData(inLog: logPath, personal)
        worker.close()
        for suffix in ["", "-wal", "-shm"] { unlink(directory + "/flows.db" + suffix) }
        unlink(logPath)
        rmdir(directory)
    }

    var database: Database { worker.database! }

    func count(_ table: String) throws -> Int64 {
        try database.query("SELECT count(*) FROM \(table)").first?.first?.int ?? -1
    }

    /// POST `body` to `.../webhook`, signed with `secret` (unsigned when `nil`).
    func post(_ body: [UInt8], secret: String? = "secret", path: String = "/hooks/webhook") -> EndpointResponse {
        remember(webhook: body)
        var params: [(String, String)] = [("CONTENT_LENGTH", String(body.count))]
        if let secret {
            params.append((Signature.parameterName, Signature.header(for: body, secret: Array(secret.utf8))))
        }
        return endpoint.handle(EndpointRequest(method: "POST", path: path, params: params, body: body), worker: worker)
    }

    /// A request with `QUERY_STRING` `query` and, when given, an `Authorization` header.
    func get(_ path: String, _ query: String = "", authorization: String? = "Bearer " + webhookAPIToken,
             method: String = "GET") -> EndpointResponse {
        var params: [(String, String)] = [("QUERY_STRING", query)]
        if let authorization { params.append(("HTTP_AUTHORIZATION", authorization)) }
        return endpoint.handle(EndpointRequest(method: method, path: path, params: params, body: []), worker: worker)
    }

    /// A read API answer parsed (expects 200).
    func read(_ path: String, _ query: String = "", sourceLocation: SourceLocation = #_sourceLocation) throws
        -> JSONValue
    {
        let response = get(path, query)
        #expect(response.status == 200, "\(String(decoding: response.body, as: UTF8.self))",
                sourceLocation: sourceLocation)
        #expect(response.header("Content-Type") == "application/json", sourceLocation: sourceLocation)
        return try JSONParser.parse(response.body)
    }

    func logText() throws -> String { (try? readTextFile(logPath, what: "log")) ?? "" }

    /// One encrypted exchange with a real flow.
    @discardableResult
    func exchange(_ flow: String, _ action: String, screen: String = "", data: [String: JSONValue] = [:],
                  token: String) throws -> JSONValue {
        remember(token)
        for key in ["name", "email", "phone", "more_details", "description"] {
            if case .string(let value)? = data[key] { remember(value) }
        }
        let call = ClientCall(["version": "3.0", "action": .string(action), "screen": .string(screen),
                               "data": .object(data), "flow_token": .string(token)])
        let response = endpoint.handle(call.request(path: "/flows/\(flow)"), worker: worker)
        #expect(response.status == 200)
        return try call.open(response)
    }
}

// MARK: - Webhook bodies

enum Hook {
    static func text(_ id: String, from: String = "15550001111", at timestamp: Int64 = 1_772_000_000,
                     _ body: String = "hello") -> JSONValue {
        ["from": .string(from), "id": .string(id), "timestamp": .string(String(timestamp)), "type": "text",
         "text": ["body": .string(body)]]
    }

    static func flowReply(_ id: String, from: String = "15550001111", at timestamp: Int64 = 1_772_000_000,
                          params: JSONValue) -> JSONValue {
        ["from": .string(from), "id": .string(id), "timestamp": .string(String(timestamp)), "type": "interactive",
         "interactive": ["type": "nfm_reply",
                         "nfm_reply": ["name": "flow", "body": "Sent", "response_json": .string(params.text)]]]
    }

    static func status(_ id: String, _ status: String) -> JSONValue {
        ["id": .string(id), "status": .string(status), "timestamp": "1772000100", "recipient_id": "15550001111"]
    }

    static func messages(_ messages: [JSONValue] = [], statuses: [JSONValue] = []) -> JSONValue {
        var value: [String: JSONValue] = [
            "messaging_product": "whatsapp",
            "metadata": ["display_phone_number": "15550009999", "phone_number_id": "123456"],
        ]
        if !messages.isEmpty { value["messages"] = .array(messages) }
        if !statuses.isEmpty { value["statuses"] = .array(statuses) }
        return ["field": "messages", "value": .object(value)]
    }

    static func flowsAlert(_ event: String) -> JSONValue {
        ["field": "flows", "value": ["event": .string(event), "flow_id": "987654321", "message": "Flow status changed",
                                     "old_status": "DRAFT", "new_status": "PUBLISHED"]]
    }

    /// A body with one entry per element of `entries` (each a list of changes).
    static func body(_ entries: [[JSONValue]]) -> [UInt8] {
        let list: [JSONValue] = entries.enumerated().map { i, changes in
            ["id": .string("10\(i)"), "changes": .array(changes)]
        }
        return JSONValue.object(["object": "whatsapp_business_account", "entry": .array(list)]).serialized
    }

    static func body(_ changes: JSONValue...) -> [UInt8] { body([changes]) }
}

func bodyText(_ response: EndpointResponse) -> String { String(decoding: response.body, as: UTF8.self) }

// MARK: - Verification handshake

@Suite("Webhook verification handshake")
struct WebhookHandshakeTests {
    @Test(arguments: Engine.all) func matchingTokenEchoesTheChallenge(engine: Engine) throws {
        let harness = try WebhookHarness(engine: engine)
        let ok = harness.get("/x/webhook", "hub.mode=subscribe&hub.verify_token=verify+me&hub.challenge=1158201444",
                             authorization: nil)
        #expect(ok.status == 200)
        #expect(bodyText(ok) == "1158201444")
        let escaped = harness.get("/webhook", "hub.challenge=a%2Bb%20c&hub.verify_token=verify%20me&hub.mode=subscribe",
                                  authorization: nil)
        #expect(escaped.status == 200)
        #expect(bodyText(escaped) == "a+b c")
    }

    @Test(arguments: Engine.all) func otherTokensAndModesAreRefused(engine: Engine) throws {
        let harness = try WebhookHarness(engine: engine)
        for query in ["hub.mode=subscribe&hub.verify_token=verify+you&hub.challenge=1",
                      "hub.mode=unsubscribe&hub.verify_token=verify+me&hub.challenge=1",
                      "hub.mode=subscribe&hub.challenge=1", ""] {
            #expect(harness.get("/webhook", query, authorization: nil).status == 403, "\(query)")
        }
        #expect(harness.get("/webhook", "hub.mode=subscribe&hub.verify_token=%zz", authorization: nil).status == 400)
        #expect(harness.get("/webhook", "hub.mode=subscribe&hub.verify_token=verify+me", authorization: nil).status
            == 400)
    }

    @Test(arguments: Engine.all) func withoutVerifyTokenEveryHandshakeIsRefused(engine: Engine) throws {
        let harness = try WebhookHarness(["VERIFY_TOKEN": nil], engine: engine)
        for token in ["", "verify+me", "anything"] {
            let response = harness.get("/webhook", "hub.mode=subscribe&hub.verify_token=\(token)&hub.challenge=7",
                                       authorization: nil)
            #expect(response.status == 403)
        }
    }

    @Test(arguments: Engine.all) func otherMethodsGet405(engine: Engine) throws {
        let harness = try WebhookHarness(engine: engine)
        for method in ["PUT", "DELETE", "HEAD"] {
            let response = harness.get("/webhook", "", authorization: nil, method: method)
            #expect(response.status == 405)
            #expect(response.header("Allow") == "GET, POST")
        }
    }

    @Test func queryStringDecoding() throws {
        let query = try QueryString("a=1&b=x+y%21&&c&a=%C3%A9")
        #expect(query.values("a") == ["1", "é"])
        #expect(query.values("b") == ["x y!"])
        #expect(query.values("c") == [""])
        #expect(throws: QueryString.Invalid.self) { try query.single("a") }
        #expect(throws: QueryString.Invalid.self) { try QueryString("a=%4") }
        #expect(throws: QueryString.Invalid.self) { try QueryString("a=%FF") }
    }
}

// MARK: - Deliveries

@Suite("Webhook deliveries")
struct WebhookDeliveryTests {
    @Test(arguments: Engine.all) func signedBatchWithSeveralEntriesChangesAndKinds(engine: Engine) throws {
        let harness = try WebhookHarness(engine: engine)
        let body = Hook.body([
            [
                Hook.messages([Hook.text("wamid.1", "Hi there"),
                               Hook.flowReply("wamid.2", params: ["flow_token": "tok-9", "booking_id": 4])],
                              statuses: [Hook.status("wamid.out1", "sent"), Hook.status("wamid.out1", "delivered")]),
                ["field": "message_template_status_update", "value": ["event": "APPROVED"]],
            ],
            [
                Hook.flowsAlert("ENDPOINT_ERROR_RATE"),
                Hook.messages([Hook.text("wamid.3", from: "15550002222", "Second entry"),
                               ["from": "15550002222", "id": "wamid.4", "timestamp": "1772000005", "type": "image",
                                "image": ["caption": "receipt", "id": "media-1", "mime_type": "image/jpeg"]]]),
            ],
        ])
        let response = harness.post(body)
        #expect(response.status == 200)
        #expect(try JSONParser.parse(response.body) == ["received": 7])
        #expect(try harness.count("webhook_messages") == 4)
        #expect(try harness.count("webhook_statuses") == 2)
        #expect(try harness.count("webhook_flow_events") == 1)
        #expect(try harness.count("webhook_confirmations") == 1)
        let reply = try harness.database.query(
            "SELECT type, text, flow_token, response_json, raw FROM webhook_messages WHERE id = 'wamid.2'")
        #expect(reply.first?[0] == .text("interactive"))
        #expect(reply.first?[1] == .text("[flow reply] Sent"))
        #expect(reply.first?[2] == .text("tok-9"))
        #expect(reply.first?[3] == .text(#"{"booking_id":4,"flow_token":"tok-9"}"#))
        #expect(try JSONParser.parse(reply.first?[4].string ?? "")["id"] == "wamid.2")
        let image = try harness.database.query("SELECT text FROM webhook_messages WHERE id = 'wamid.4'")
        #expect(image.first?.first == .text("[image] receipt"))
        #expect(try WebhookStore.isConfirmed(database: harness.database, token: "tok-9"))

        let log = try harness.logText()
        #expect(log.contains("flows alert webhook"))
        #expect(log.contains("ENDPOINT_ERROR_RATE"))
        #expect(!log.contains("15550001111"))
        #expect(!log.contains("Hi there"))
        #expect(log.contains("route=webhook") || log.contains("\"route\":\"webhook\""))
    }

    @Test(arguments: Engine.all) func sameMessageDeliveredThreeTimesIsStoredOnce(engine: Engine) throws {
        let harness = try WebhookHarness(engine: engine)
        let body = Hook.body(Hook.messages([Hook.flowReply("wamid.same", params: ["flow_token": "tok-1"])],
                                           statuses: [Hook.status("wamid.out", "read")]),
                             Hook.flowsAlert("FLOW_STATUS_CHANGE"))
        for _ in 0..<3 {
            let response = harness.post(body)
            #expect(response.status == 200)
            #expect(try JSONParser.parse(response.body) == ["received": 3])
        }
        // Redelivered inside a larger batch too.
        #expect(harness.post(Hook.body(Hook.messages([Hook.text("wamid.new"),
                                                      Hook.flowReply("wamid.same", params: ["flow_token": "tok-1"])])))
            .status == 200)
        #expect(try harness.count("webhook_messages") == 2)
        #expect(try harness.count("webhook_confirmations") == 1)
        #expect(try harness.count("webhook_statuses") == 1)
        #expect(try harness.count("webhook_flow_events") == 1)
        let warnings = try harness.logText().split(separator: "\n").filter { $0.contains("flows alert webhook") }
        #expect(warnings.count == 1)
    }

    @Test(arguments: Engine.all) func signatureIsChecked(engine: Engine) throws {
        let harness = try WebhookHarness(engine: engine)
        let body = Hook.body(Hook.messages([Hook.text("wamid.1")]))
        #expect(harness.post(body, secret: "wrong").status == 401)
        #expect(harness.post(body, secret: nil).status == 401)
        var tampered = body
        tampered[tampered.count - 3] = UInt8(ascii: " ")
        let header = Signature.header(for: body, secret: Array("secret".utf8))
        let request = EndpointRequest(method: "POST", path: "/webhook", params: [(Signature.parameterName, header)],
                                      body: tampered)
        #expect(harness.endpoint.handle(request, worker: harness.worker).status == 401)
        #expect(try harness.count("webhook_messages") == 0)
        #expect(harness.post(body, secret: "old-secret").status == 200)
        #expect(try harness.count("webhook_messages") == 1)
    }

    @Test(arguments: [
        "not json",
        #"{"object":"whatsapp_business_account"}"#,
        #"{"entry":{}}"#,
        #"{"entry":[{"changes":[{"field":"messages"}]}]}"#,
        #"{"entry":[{"changes":[{"value":{}}]}]}"#,
        #"{"entry":[{"changes":[{"field":"messages","value":{"messages":[{"id":"w","from":"1","timestamp":"1","#
            + #""type":"text","text":{}}]}}]}]}"#,
        #"{"entry":[{"changes":[{"field":"messages","value":{"messages":[{"id":"w","from":"1","timestamp":"soon","#
            + #""type":"text","text":{"body":"x"}}]}}]}]}"#,
        #"{"entry":[{"changes":[{"field":"messages","value":{"statuses":[{"id":"w","timestamp":"1"}]}}]}]}"#,
        #"{"entry":[{"changes":[{"field":"flows","value":{"flow_id":"1"}}]}]}"#,
    ])
    func malformedBodiesAre400(_ text: String) throws {
        let harness = try WebhookHarness()
        let response = harness.post(Array(text.utf8))
        #expect(response.status == 400)
        #expect(bodyText(response).hasPrefix("malformed webhook"))
    }

    @Test(arguments: Engine.all) func aBadMessageLateInTheBatchStoresNothing(engine: Engine) throws {
        let harness = try WebhookHarness(engine: engine)
        let badReply: JSONValue = ["from": "1", "id": "wamid.bad", "timestamp": "1", "type": "interactive",
                                   "interactive": ["type": "nfm_reply",
                                                   "nfm_reply": ["name": "flow", "response_json": "{not json"]]]
        let body = Hook.body([[Hook.messages([Hook.text("wamid.ok1"), Hook.flowReply("wamid.ok2", params: [
            "flow_token": "t"])], statuses: [Hook.status("s", "sent")]), Hook.flowsAlert("ENDPOINT_LATENCY")],
                              [Hook.messages([Hook.text("wamid.ok3"), badReply])]])
        let response = harness.post(body)
        #expect(response.status == 400)
        #expect(bodyText(response).contains(
            "entry[1].changes[0].value.messages[1].interactive.nfm_reply.response_json"))
        for table in ["webhook_messages", "webhook_statuses", "webhook_confirmations", "webhook_flow_events"] {
            #expect(try harness.count(table) == 0)
        }
    }

    @Test(arguments: Engine.all) func bodiesAboveTheWebhookCapAre413(engine: Engine) throws {
        let harness = try WebhookHarness(["WEBHOOK_MAX_BODY_BYTES": "2048", "MAX_BODY_BYTES": "1024"], engine: engine)
        let big = Hook.body(Hook.messages([Hook.text("wamid.big", String(repeating: "x", count: 2100))]))
        #expect(harness.post(big).status == 413)
        // Between MAX_BODY_BYTES and the webhook cap is fine for the webhook.
        let medium = Hook.body(Hook.messages([Hook.text("wamid.medium", String(repeating: "x", count: 1200))]))
        #expect(medium.count > 1024)
        #expect(harness.post(medium).status == 200)
        let flagged = EndpointRequest(method: "POST", path: "/webhook", params: [], body: [], bodyTooLarge: true)
        #expect(harness.endpoint.handle(flagged, worker: harness.worker).status == 413)
        #expect(harness.endpoint.configuration.transportBodyLimit == 2048)
    }

    @Test func lockedDatabaseIs503() throws {
        let harness = try WebhookHarness(["DATABASE_BUSY_TIMEOUT_MS": "0"])
        let other = try Database(path: harness.directory + "/flows.db")
        defer { other.close() }
        try other.execute("BEGIN IMMEDIATE")
        #expect(harness.post(Hook.body(Hook.messages([Hook.text("wamid.1")]))).status == 503)
        try other.execute("ROLLBACK")
        #expect(harness.post(Hook.body(Hook.messages([Hook.text("wamid.1")]))).status == 200)
    }

    @Test func pywaInteropWebhookBody() throws {
        let vector = try JSONParser.parse(try fixtureText("pywa-interop.json"))["webhook_signature"]
        let secret = try #require(vector?["app_secret"]?.stringValue)
        let body = Array(try #require(vector?["body"]?.stringValue).utf8)
        let signature = try #require(vector?["x_hub_signature_256"]?.stringValue)
        let harness = try WebhookHarness(["APP_SECRET": secret, "APP_SECRET_PREVIOUS": nil])
        let request = EndpointRequest(method: "POST", path: "/flows-fcgi/webhook",
                                      params: [(Signature.parameterName, signature)], body: body)
        let response = harness.endpoint.handle(request, worker: harness.worker)
        #expect(response.status == 200)
        #expect(try JSONParser.parse(response.body) == ["received": 1])
        let messages = try harness.read("/flows-fcgi/messages")
        #expect(messages["total"] == 1)
        let first = messages["data"]?.arrayValue?.first
        #expect(first?["from"] == "972544401243")
        #expect(first?["text"] == "Hey there! I am using PyWa.")
        #expect(first?["timestamp"] == 1730231903)
        #expect(first?["time"] == "2024-10-29T19:58:23Z")
        #expect(first?["id"] == "wamid.HBgMOTcyNTQ0NDAxMjQzFQIAEhggM0RFQTNCMEEwRTY3QzUwODYzMDc4NjQ4QzM4ODAxM0YA")
    }

    @Test func settingsAreValidated() throws {
        // An empty FLOWS_DIR: no form flow, so no form tables.
        let base = ["APP_SECRET": "s", "PRIVATE_KEY_FILE": fixturesDirectory + "/keys/pkcs8.pem",
                    "FLOWS_DIR": temporaryDirectory()]
        func configure(_ extra: [String: String]) throws -> Configuration {
            try Configuration(settings: Settings(base.merging(extra) { $1 }), flows: [])
        }
        #expect(throws: ConfigError.self) { try configure(["API_TOKEN": "short"]) }
        #expect(throws: ConfigError.self) { try configure(["API_TOKEN": "has a space in it, long enough"]) }
        #expect(throws: ConfigError.self) { try configure(["WEBHOOK_MAX_BODY_BYTES": "12"]) }
        let defaults = try configure([:])
        #expect(defaults.webhook.maxBodyBytes == 4_194_304)
        #expect(defaults.webhook.apiToken == nil)
        #expect(defaults.webhook.verifyToken == nil)
        #expect(defaults.transportBodyLimit == 4_194_304)
        #expect(defaults.migrations.map(\.id) == ["webhook-1", "webhook-outbox-1", "metrics-1", "maintenance-1"])
        for name in WebhookSettings.settingNames { #expect(Configuration.coreSettingNames.contains(name)) }
    }
}

// MARK: - Read API

@Suite("Webhook read API")
struct ReadAPITests {
    /// Seven messages from three senders, one a minute from 2026-11-23T12:00:00Z (1795435200).
    static func seeded() throws -> WebhookHarness {
        let harness = try WebhookHarness()
        let start: Int64 = 1_795_435_200
        let texts = ["Hello", "100% sure", "under_score", "HELLO again", "bye", "help me", "hello_world"]
        let senders = ["111", "222", "111", "333", "111", "222", "111"]
        let messages = (0..<7).map {
            Hook.text("wamid.\($0)", from: senders[$0], at: start + Int64($0) * 60, texts[$0])
        }
        #expect(harness.post(Hook.body(Hook.messages(messages))).status == 200)
        return harness
    }

    static func ids(_ answer: JSONValue) -> [String] {
        answer["data"]?.arrayValue?.compactMap { $0["id"]?.stringValue } ?? []
    }

    @Test func paginationNewestFirst() throws {
        let harness = try Self.seeded()
        let all = try harness.read("/api/messages")
        #expect(all["total"] == 7)
        #expect(all["limit"] == 50)
        #expect(all["offset"] == 0)
        #expect(Self.ids(all) == (0..<7).reversed().map { "wamid.\($0)" })
        let pages = try [0, 3, 6].map { try harness.read("/api/messages", "limit=3&offset=\($0)") }
        #expect(pages.map(Self.ids) == [["wamid.6", "wamid.5", "wamid.4"], ["wamid.3", "wamid.2", "wamid.1"],
                                        ["wamid.0"]])
        #expect(pages.allSatisfy { $0["total"] == 7 && $0["limit"] == 3 })
        #expect(Self.ids(try harness.read("/api/messages", "offset=7")) == [])
        #expect(Self.ids(try harness.read("/api/messages", "limit=100")).count == 7)
    }

    @Test func filters() throws {
        let harness = try Self.seeded()
        #expect(Self.ids(try harness.read("/api/messages", "from=111")) == ["wamid.6", "wamid.4", "wamid.2", "wamid.0"])
        #expect(try harness.read("/api/messages", "from=111&limit=1")["total"] == 4)
        #expect(Self.ids(try harness.read("/api/messages", "since=2026-11-23T12:04:00Z")) == ["wamid.6", "wamid.5",
                                                                                           "wamid.4"])
        #expect(Self.ids(try harness.read("/api/messages", "since=2026-11-23T13%3A04%3A00%2B01%3A00")).count == 3)
        #expect(Self.ids(try harness.read("/api/messages", "since=2026-11-23")).count == 7)
        #expect(Self.ids(try harness.read("/api/messages", "since=2026-11-24")) == [])
        // Case-insensitive (ASCII), with LIKE's wildcards taken literally.
        #expect(Self.ids(try harness.read("/api/messages", "q=hello")) == ["wamid.6", "wamid.3", "wamid.0"])
        #expect(Self.ids(try harness.read("/api/messages", "q=HEL")) == ["wamid.6", "wamid.5", "wamid.3", "wamid.0"])
        #expect(Self.ids(try harness.read("/api/messages", "q=100%25")) == ["wamid.1"])
        #expect(Self.ids(try harness.read("/api/messages", "q=o_w")) == ["wamid.6"])
        #expect(Self.ids(try harness.read("/api/messages", "q=%25")) == ["wamid.1"])
        #expect(Self.ids(try harness.read("/api/messages", "q=hello+again")) == ["wamid.3"])
        let combined = try harness.read("/api/messages", "from=111&q=hello&since=2026-11-23T12:01:00Z&limit=1")
        #expect(Self.ids(combined) == ["wamid.6"])
        #expect(combined["total"] == 1)
    }

    @Test(arguments: ["limit=0", "limit=101", "limit=abc", "limit=", "offset=-1", "offset=x", "since=yesterday",
                      "since=2026-02-30", "since=2026-11-23T25:00:00Z", "q=", "from=", "sort=asc", "limit=1&limit=2"])
    func invalidParametersAre400(_ query: String) throws {
        let harness = try WebhookHarness()
        let response = harness.get("/api/messages", query)
        #expect(response.status == 400)
        #expect(try JSONParser.parse(response.body)["error"]?.stringValue?.isEmpty == false)
    }

    @Test func authorization() throws {
        let harness = try Self.seeded()
        for path in ["/api/messages", "/api/stats", "/api/bookings", "/api/expenses"] {
            let missing = harness.get(path, authorization: nil)
            #expect(missing.status == 401)
            #expect(missing.header("WWW-Authenticate") == "Bearer")
            #expect(harness.get(path, authorization: "Bearer wrong-token-0123456789").status == 401)
            #expect(harness.get(path, authorization: "Bearer " + webhookAPIToken + "x").status == 401)
            #expect(harness.get(path, authorization: "Basic " + webhookAPIToken).status == 401)
            #expect(harness.get(path, authorization: "bearer " + webhookAPIToken).status == 200)
            #expect(harness.get(path, method: "POST").status == 405)
            #expect(harness.get(path, method: "POST").header("Allow") == "GET")
        }
        let disabled = try WebhookHarness(["API_TOKEN": nil])
        for path in ["/api/messages", "/api/stats", "/api/bookings", "/api/expenses"] {
            #expect(disabled.get(path).status == 404)
            #expect(disabled.get(path, authorization: nil).status == 404)
        }
    }

    @Test func statsAfterAKnownSequence() throws {
        let harness = try Self.seeded()
        // An expense completed through the real flow, then its nfm_reply; another session left open.
        try harness.exchange("expense", "INIT", token: "exp-1")
        let success = try harness.exchange("expense", "data_exchange", screen: ExpenseFlow.formScreen,
                                           data: validSubmit, token: "exp-1")
        let params = try #require(success["data"]?["extension_message_response"]?["params"])
        #expect(params["flow_token"] == "exp-1")
        try harness.exchange("expense", "INIT", token: "exp-2")
        var stats = try harness.read("/api/stats")
        #expect(stats["flows"]?["expense"] == ["started": 2, "completed": 1, "confirmed": 0])

        #expect(harness.post(Hook.body(Hook.messages([
            Hook.flowReply("wamid.reply", from: "444", at: 1_795_436_000, params: params),
            Hook.flowReply("wamid.other", from: "444", at: 1_795_436_001, params: ["flow_token": "not-a-session"]),
        ]))).status == 200)
        stats = try harness.read("/api/stats")
        #expect(stats["total_messages"] == 9)
        #expect(stats["senders_count"] == 4)
        #expect(stats["first_message_ts"] == 1795435200)
        #expect(stats["last_message_ts"] == 1795436001)
        #expect(stats["messages_per_sender"] == [["from": "111", "count": 4], ["from": "222", "count": 2],
                                                  ["from": "444", "count": 2], ["from": "333", "count": 1]])
        #expect(stats["total_confirmations"] == 2)
        // Every served flow is listed, the shipped form flows (FLOWS_DIR defaults to flows/) too.
        let none: JSONValue = ["started": 0, "completed": 0, "confirmed": 0]
        #expect(stats["flows"] == ["expense": ["started": 2, "completed": 1, "confirmed": 1], "appointment": none,
                                   "feedback": none, "calendar-preferences": none, "schedule": none, "budget": none])
        #expect(harness.get("/api/stats", "limit=1").status == 400)

        let empty = try WebhookHarness()
        let nothing = try empty.read("/api/stats")
        #expect(nothing["total_messages"] == 0)
        #expect(nothing["first_message_ts"] == .null)
        #expect(nothing["messages_per_sender"] == [])
    }

    @Test(arguments: Engine.all) func expensesAndBookings(engine: Engine) throws {
        let harness = try WebhookHarness(engine: engine)
        for i in 1...3 {
            try harness.exchange("expense", "INIT", token: "exp-\(i)")
            try harness.exchange("expense", "data_exchange", screen: ExpenseFlow.formScreen,
                                 data: submit(["amount": .string("\(i).25")]), token: "exp-\(i)")
        }
        #expect(harness.post(Hook.body(Hook.messages([Hook.flowReply("wamid.r", params: ["flow_token": "exp-2"])])))
            .status == 200)
        let expenses = try harness.read("/api/expenses", "limit=2")
        #expect(expenses["total"] == 3)
        #expect(expenses["limit"] == 2)
        let rows = try #require(expenses["data"]?.arrayValue)
        #expect(rows.map { $0["amount"] } == ["3.25", "2.25"])
        #expect(rows.map { $0["confirmed"] } == [false, true])
        #expect(rows.first?["category"] == "food")
        #expect(rows.first?["description"] == "Team lunch")
        #expect(try harness.read("/api/expenses", "offset=2")["data"]?.arrayValue?.count == 1)
        #expect(harness.get("/api/expenses", "from=2026-01-01").status == 400)

        try harness.exchange("appointment", "INIT", token: "appt-1")
        for screen in ["DETAILS", "SUMMARY"] {
            try harness.exchange("appointment", "data_exchange", screen: screen, data: appointmentFields,
                                 token: "appt-1")
        }
        let bookings = try harness.read("/api/bookings", "from=2026-03-01&to=2026-03-31")
        #expect(bookings["total"] == 1)
        let booking = bookings["data"]?.arrayValue?.first
        #expect(booking?["flow_token"] == "appt-1")
        #expect(booking?["date"] == "2026-03-02")
        #expect(booking?["time"] == "11:30")
        #expect(booking?["status"] == "booked")
        #expect(booking?["confirmed"] == false)
        #expect(try harness.read("/api/bookings", "from=2026-03-03")["total"] == 0)
        #expect(try harness.read("/api/bookings", "all=true&offset=1")["data"] == [])
        for query in ["from=2026-3-1", "to=tomorrow", "all=maybe", "limit=0"] {
            #expect(harness.get("/api/bookings", query).status == 400, "\(query)")
        }
        let stats = try harness.read("/api/stats")
        #expect(stats["flows"]?["appointment"] == ["started": 1, "completed": 1, "confirmed": 0])

        let expenseOnly = try WebhookHarness(flows: [ExpenseFlow.factory])
        #expect(expenseOnly.get("/api/bookings").status == 404)
        #expect(expenseOnly.get("/api/expenses").status == 200)
    }

    @Test func isoTimes() {
        #expect(ISOTime.parse("2026-11-23") == 1_795_392_000)
        #expect(ISOTime.parse("2026-11-23T12:00:00Z") == 1_795_435_200)
        #expect(ISOTime.parse("2026-11-23T12:00Z") == 1_795_435_200)
        #expect(ISOTime.parse("2026-11-23T12:00:00.250Z") == 1_795_435_200)
        #expect(ISOTime.parse("2026-11-23T14:00:00+02:00") == 1_795_435_200)
        #expect(ISOTime.parse("2026-11-23T12:00:00") == 1_795_435_200)
        for bad in ["", "2026", "2026-11-23T", "2026-11-23T12", "2026-11-23T12:00:00+2", "2026-13-01", "2026-11-23Z",
                    "2026-11-23T12:00:00Zx"] {
            #expect(ISOTime.parse(bad) == nil, "\(bad)")
        }
        #expect(ISOTime.format(1_795_435_200) == "2026-11-23T12:00:00Z")
    }
}
