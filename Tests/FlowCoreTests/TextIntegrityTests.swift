#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Testing
@testable import FlowCore

/// Text is stored and compared by its full byte length (issue 16): free text keeps its U+0000, names, ids, tokens
/// and query parameters with one are refused before anything is stored, and flow tokens have a length limit.
@Suite("Text with U+0000 and flow token limits")
struct TextIntegrityTests {
    @Test func databaseStoresAndReadsTextWhole() throws {
        let directory = temporaryDirectory()
        defer {
            for suffix in ["", "-wal", "-shm"] { unlink(directory + "/t.db" + suffix) }
            rmdir(directory)
        }
        let database = try Database(path: directory + "/t.db", migrations: [
            Migration(id: "t-1", sqlite: "CREATE TABLE t (id TEXT PRIMARY KEY, note TEXT NOT NULL)", postgres: "CREATE TABLE t (id TEXT PRIMARY KEY, note TEXT NOT NULL)"),
        ])
        defer { database.close() }
        try database.query("INSERT INTO t VALUES (?1, ?2)", [.text("wamid.x\u{0}2"), .text("a\u{0}b")])
        // A different key that only a cut at the NUL would make equal.
        try database.query("INSERT INTO t VALUES (?1, ?2)", [.text("wamid.x"), .text("")])
        let rows = try database.query("SELECT id, note, length(CAST(note AS BLOB)) FROM t ORDER BY id")
        #expect(rows == [[.text("wamid.x"), .text(""), .integer(0)],
                         [.text("wamid.x\u{0}2"), .text("a\u{0}b"), .integer(3)]])
        #expect(try database.query("SELECT note FROM t WHERE id = ?1", [.text("wamid.x\u{0}2")])
            == [[.text("a\u{0}b")]])
    }

    // MARK: Flow tokens at the data endpoint

    /// The demo flow answers with the token it was given; `MAX_BODY_BYTES` large enough for a 700,000-byte token.
    private func tokenEndpoint() throws -> Endpoint {
        try makeEndpoint(extra: ["MAX_BODY_BYTES": "4000000"])
    }

    private func exchange(_ endpoint: Endpoint, token: String) throws -> (EndpointResponse, ClientCall) {
        let client = ClientCall(["version": "3.0", "action": "INIT", "screen": "", "data": [:],
                                 "flow_token": .string(token)])
        return (try call(endpoint, client.request()), client)
    }

    @Test func tokenUpToTheLimitIsAcceptedOneByteMoreIsNot() throws {
        let endpoint = try tokenEndpoint()
        let longest = String(repeating: "t", count: FlowToken.maxBytes)
        let (ok, call) = try exchange(endpoint, token: longest)
        #expect(ok.status == 200)
        #expect(try call.open(ok)["data"]?["echo"] == .string(longest))
        // Counted in bytes: 512 two-byte letters are the limit too.
        #expect(try exchange(endpoint, token: String(repeating: "é", count: FlowToken.maxBytes / 2)).0.status == 200)
        for token in [longest + "t", String(repeating: "é", count: FlowToken.maxBytes / 2) + "t",
                      String(repeating: "x", count: 700_000)] {
            let (refused, _) = try exchange(endpoint, token: token)
            #expect(refused.status == 400)
            #expect(bodyText(refused) == "flow_token is longer than \(FlowToken.maxBytes) bytes\n")
        }
    }

    @Test func tokenWithANULIsRefusedBeforeTheFlowRuns() throws {
        let endpoint = try makeEndpoint(flows: [ScriptedFlow(name: "demo") { _ in
            Issue.record("the flow ran")
            return .screen("NEXT", data: [:])
        }])
        for token in ["tok\u{0}2", "\u{0}", "tok\u{0}"] {
            let (response, _) = try exchange(endpoint, token: token)
            #expect(response.status == 400)
            #expect(bodyText(response).contains("flow_token contains a NUL character"))
        }
    }

    /// The 427 access line names the reason, never the token (the harness checks its log for every token it sent).
    @Test(arguments: Engine.all) func tokenNeverReachesTheAccessLineOfA427(engine: Engine) throws {
        let harness = try WebhookHarness(engine: engine)
        let token = "tok-427-4915112345678"
        try harness.exchange("expense", "INIT", token: token)
        try harness.exchange("expense", "data_exchange", screen: "EXPENSE_FORM",
                             data: ["amount": "12.50", "category": "food"], token: token)
        let again = ClientCall(["version": "3.0", "action": "INIT", "screen": "", "data": [:],
                                "flow_token": .string(token)])
        let response = harness.endpoint.handle(again.request(path: "/flows/expense"), worker: harness.worker)
        #expect(response.status == 427)
        #expect(try harness.logText().contains("status=427"))
    }

    // MARK: Webhooks

    @Test(arguments: Engine.all) func webhookIDWithANULIsRefusedAndTheLaterMessageStored(engine: Engine) throws {
        let harness = try WebhookHarness(engine: engine)
        let refused = harness.post(Hook.body(Hook.messages([Hook.text("wamid.ok"), Hook.text("wamid.x\u{0}2")])))
        #expect(refused.status == 400)
        #expect(bodyText(refused).contains("messages[1].id: contains a NUL character"))
        #expect(try harness.count("webhook_messages") == 0)
        let later = harness.post(Hook.body(Hook.messages([Hook.text("wamid.x", "the later message")])))
        #expect(later.status == 200)
        #expect(bodyText(later) == #"{"received":1}"#)
        let stored = try harness.database.query("SELECT id, text FROM webhook_messages")
        #expect(stored == [[.text("wamid.x"), .text("the later message")]])
        for (message, path) in [(Hook.text("wamid.y", from: "1555\u{0}0001111"), "messages[0].from"),
                                (Hook.flowReply("wamid.z", params: ["flow_token": "tok\u{0}1"]),
                                 "messages[0].interactive.nfm_reply.response_json")] {
            let response = harness.post(Hook.body(Hook.messages([message])))
            #expect(response.status == 400)
            #expect(bodyText(response).contains(path), "\(bodyText(response))")
        }
        let status = harness.post(Hook.body(Hook.messages(statuses: [Hook.status("wamid.s\u{0}", "read")])))
        #expect(status.status == 400)
        #expect(try harness.count("webhook_messages") == 1)
        #expect(try harness.count("webhook_statuses") == 0)
        #expect(try harness.count("webhook_confirmations") == 0)
    }

    @Test(arguments: Engine.all) func webhookFlowTokenOverTheLimitIsRefused(engine: Engine) throws {
        let harness = try WebhookHarness(engine: engine)
        let token = String(repeating: "t", count: FlowToken.maxBytes + 1)
        let response = harness.post(Hook.body(Hook.messages([Hook.flowReply("wamid.l",
                                                                             params: ["flow_token": .string(token)])])))
        #expect(response.status == 400)
        #expect(bodyText(response).contains("longer than \(FlowToken.maxBytes) bytes"))
        #expect(try harness.count("webhook_messages") == 0)
    }

    @Test(arguments: Engine.all) func messageTextKeepsItsNUL(engine: Engine) throws {
        let harness = try WebhookHarness(engine: engine)
        #expect(harness.post(Hook.body(Hook.messages([Hook.text("wamid.t", "a\u{0}b")]))).status == 200)
        let messages = try harness.read("/api/messages")
        #expect(messages["data"]?.arrayValue?.first?["text"] == "a\u{0}b")
    }

    // MARK: Query parameters

    @Test(arguments: Engine.all) func queryParameterWithANULIsRefusedNamingIt(engine: Engine) throws {
        let harness = try WebhookHarness(engine: engine)
        #expect(harness.post(Hook.body(Hook.messages([Hook.text("wamid.q", "hello")]))).status == 200)
        for (query, name) in [("q=%00zzz", "q"), ("from=1555%00", "from"), ("limit=5&q=a%00", "q")] {
            let response = harness.get("/api/messages", query)
            #expect(response.status == 400, "\(query)")
            #expect(try JSONParser.parse(response.body)["error"]
                == .string("parameter '\(name)' contains a NUL character (%00)"), "\(query)")
        }
        #expect(harness.get("/api/bookings", "from=2026-03-01%00").status == 400)
        #expect(harness.get("/api/messages", "q%00=1").status == 400)
        let handshake = harness.get("/webhook", "hub.mode=subscribe&hub.verify_token=verify+me%00&hub.challenge=1",
                                    authorization: nil)
        #expect(handshake.status == 400)
        #expect(bodyText(handshake).contains("parameter 'hub.verify_token' contains a NUL character"))
    }

    // MARK: The appointment flow

    @Test(arguments: Engine.all) func bookingDetailsAreStoredWholeAndNamesWithANULRefused(engine: Engine) throws {
        let harness = try WebhookHarness(engine: engine)
        let details = "a\u{0}b"
        try harness.exchange("appointment", "INIT", token: "nul-1")
        for screen in ["DETAILS", "SUMMARY"] {
            try harness.exchange("appointment", "data_exchange", screen: screen,
                                 data: appointmentFieldsChanging(["more_details": .string(details)]), token: "nul-1")
        }
        let booking = try harness.read("/api/bookings")["data"]?.arrayValue?.first
        #expect(booking?["more_details"] == .string(details))
        if engine == .sqlite {
            #expect(try harness.database.query("SELECT length(CAST(more_details AS BLOB)) FROM appointment_bookings")
                == [[.integer(3)]])
        }
        for (field, value) in [("name", "Alex\u{0}Example"), ("email", "alex\u{0}@example.com"),
                               ("phone", "+44 20 7946\u{0}0000")] {
            try harness.exchange("appointment", "INIT", token: "nul-\(field)")
            let answer = try harness.exchange("appointment", "data_exchange", screen: "DETAILS",
                                              data: appointmentFieldsChanging([field: .string(value)]),
                                              token: "nul-\(field)")
            #expect(answer["screen"] == "DETAILS", "\(field)")
            #expect(answer["data"]?["error_message"]?.stringValue?.isEmpty == false, "\(field)")
        }
        expectNoPersonalData(inLog: harness.logPath, ["nul-1", "nul-name", "nul-email", "nul-phone", "Alex",
                                                      "alex@", "7946"])
    }
}
