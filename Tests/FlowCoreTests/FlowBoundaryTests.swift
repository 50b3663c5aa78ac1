#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Testing
@testable import FlowCore

/// A coded flow that exists only in the tests, declared the way a new flow folder declares itself: one screen
/// taking a note, its own tables and personal data (the note), a tombstone per purged token, a read resource, a
/// statistic, a gauge and an operator command. Nothing in the core names it.
struct NoteFlow: Flow {
    static let factory = FlowFactory(name: "note", settingNames: [], commands: [listCommand]) { _ in NoteFlow() }

    let name = "note"
    let migrations = [Migration(id: "note-1", sqlite: NoteFlow.schema, postgres: NoteFlow.schema)]
    static let schema = """
        CREATE TABLE note_sessions (flow_token TEXT PRIMARY KEY, completed INTEGER NOT NULL DEFAULT 0,
                                    created_at INTEGER NOT NULL);
        CREATE TABLE notes (id INTEGER PRIMARY KEY, flow_token TEXT NOT NULL UNIQUE, text TEXT NOT NULL,
                            created_at INTEGER NOT NULL, confirmed_by TEXT);
        CREATE TABLE note_tombstones (token_sha256 TEXT PRIMARY KEY);
        """
    var sessionTable: String? { "note_sessions" }
    var sessionLifetimeSeconds: Int64 { 7200 }

    func handle(_ request: FlowRequest, context: FlowContext) throws -> FlowAnswer {
        let database = try context.requireDatabase(for: name)
        let token = request.flowToken
        if try !database.query("SELECT 1 FROM note_tombstones WHERE token_sha256 = ?1",
                               [.text(Retention.tokenDigest(token))]).isEmpty {
            return .tokenNoLongerValid(message: "This note was closed.")
        }
        guard request.action == .dataExchange, let text = request.data["text"]?.stringValue else {
            try database.query("""
                INSERT INTO note_sessions (flow_token, created_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING
                """, [.text(token), .integer(context.now)])
            return .screen("NOTE", data: [:])
        }
        let id = try database.writeTransaction { () throws(DatabaseError) -> Int64 in
            try database.query("UPDATE note_sessions SET completed = 1 WHERE flow_token = ?1", [.text(token)])
            return try database.query("""
                INSERT INTO notes (flow_token, text, created_at) VALUES (?1, ?2, ?3) RETURNING id
                """, [.text(token), .text(text), .integer(context.now)]).first?.first?.int ?? 0
        }
        return .success(params: ["flow_token": .string(token), "note_id": .int(Int(id))])
    }

    func purge(database: Database, before: Int64, sessionsBefore: Int64, dryRun: Bool)
        throws(DatabaseError) -> [(String, Int)]
    {
        try database.writeTransaction(commit: !dryRun) { () throws(DatabaseError) -> [(String, Int)] in
            let notes = try database.query("""
                UPDATE notes SET text = '', flow_token = 'purged:' || id
                WHERE created_at < ?1 AND flow_token NOT LIKE 'purged:%' RETURNING 1
                """, [.integer(before)]).count
            for row in try database.query("SELECT flow_token FROM note_sessions WHERE created_at < ?1",
                                          [.integer(sessionsBefore)]) {
                try database.query("INSERT INTO note_tombstones VALUES (?1) ON CONFLICT DO NOTHING",
                                   [.text(Retention.tokenDigest(row[0].string ?? ""))])
            }
            let sessions = try database.query("DELETE FROM note_sessions WHERE created_at < ?1 RETURNING 1",
                                              [.integer(sessionsBefore)]).count
            return [("notes (emptied)", notes), ("note_sessions", sessions)]
        }
    }

    func confirmed(token: String, messageID: String, database: Database, now: Int64) throws(DatabaseError) {
        try database.query("UPDATE notes SET confirmed_by = ?1 WHERE flow_token = ?2", [.text(messageID), .text(token)])
    }

    var readResources: [ReadResource] {
        [ReadResource(path: "notes", parameters: ["limit", "offset"]) { parameters, database in
            let (limit, offset) = try parameters.page()
            let total = try database.query("SELECT count(*) FROM notes").first?.first?.int ?? 0
            let rows = try database.query("SELECT id, flow_token, text FROM notes ORDER BY id LIMIT ?1 OFFSET ?2",
                                          [.integer(Int64(limit)), .integer(Int64(offset))])
            let data: [JSONValue] = rows.map {
                ["id": .number(String($0[0].int ?? 0)), "flow_token": .string($0[1].string ?? ""),
                 "text": .string($0[2].string ?? "")]
            }
            return ReadResource.page(data, total: total, limit: limit, offset: offset)
        }]
    }

    var gauges: [FlowGauge] {
        [FlowGauge(name: "flows_notes_total", help: "Notes in the database now.", query: "SELECT count(*) FROM notes")]
    }

    static let listCommand = FlowCommand(name: "notes", summary: "list notes",
                                         usage: "usage: flows-fcgi notes [--csv]", switches: ["--csv"],
                                         access: .readOnly) { parsed throws(CommandArguments.Problem) in
        if let extra = parsed.positional.first { throw .init(message: "unexpected argument \(extra)") }
        let csv = parsed.has("--csv")
        return { database, _ in
            let rows = try database.query("SELECT id, text FROM notes ORDER BY id").map {
                [String($0[0].int ?? 0), $0[1].string ?? ""]
            }
            return .done(FlowCommand.table([["id", "text"]] + rows, csv: csv))
        }
    }
}

@Suite struct FlowBoundaryTests {
    static let factories = [AppointmentFlow.factory, ExpenseFlow.factory, NoteFlow.factory]

    /// Served, stored, read through the read API, counted in `/stats` and `/metrics`, confirmed by its webhook,
    /// purged with a tombstone: all through what the flow declares.
    @Test func aTestOnlyFlowIsServedReadCountedAndPurged() throws {
        let harness = try WebhookHarness(flows: Self.factories)
        #expect(try harness.exchange("note", "INIT", token: "note-token-1")["screen"] == "NOTE")
        let success = try harness.exchange("note", "data_exchange", screen: "NOTE",
                                           data: ["text": "buy milk"], token: "note-token-1")
        let params = try #require(success["data"]?["extension_message_response"]?["params"])
        #expect(params["note_id"] == 1)
        try harness.exchange("note", "INIT", token: "note-token-2")

        let notes = try harness.read("/api/notes", "limit=5")
        #expect(notes == ["data": [["id": 1, "flow_token": "note-token-1", "text": "buy milk"]], "total": 1,
                          "limit": 5, "offset": 0])
        #expect(harness.get("/api/notes", "since=2026-01-01").status == 400)
        #expect(harness.get("/api/notes", authorization: nil).status == 401)

        #expect(harness.post(Hook.body(Hook.messages([Hook.flowReply("wamid.note", params: params)]))).status == 200)
        #expect(try harness.database.query("SELECT confirmed_by FROM notes").first?.first?.string == "wamid.note")
        let stats = try harness.read("/api/stats")
        #expect(stats["flows"]?["note"] == ["started": 2, "completed": 1, "confirmed": 1])

        let metrics = bodyText(harness.get("/metrics"))
        #expect(metrics.contains("# HELP flows_notes_total Notes in the database now.\n"))
        #expect(samples(metrics)["flows_notes_total"] == 1)
        #expect(samples(metrics)["flows_bookings_total"] == 0)

        // Three days on: the note is emptied, both sessions go, each leaving a tombstone.
        let configuration = harness.endpoint.configuration
        let report = try Retention.purge(database: harness.database, flows: configuration.servedFlows, days: 1,
                                         now: appointmentMonday + 3 * 86400)
        #expect(report.rows("notes") == 1)
        #expect(report.rows("note_sessions") == 2)
        #expect(try harness.read("/api/notes")["data"] == [["id": 1, "flow_token": "purged:1", "text": ""]])
        let call = ClientCall(["version": "3.0", "action": "INIT", "screen": "", "data": [:],
                               "flow_token": "note-token-2"])
        let closed = harness.endpoint.handle(call.request(path: "/flows/note"), worker: harness.worker)
        #expect(closed.status == 427)
    }

    /// The purge keeps sessions at least the longest session lifetime a served flow declares.
    @Test func sessionLifetimeComesFromTheFlows() throws {
        #expect(Retention.sessionLifetimeSeconds([NoteFlow()]) == 7200)
        #expect(Retention.sessionLifetimeSeconds([try ExpenseFlow(settings: Settings([:])), NoteFlow()]) == 7200)
    }

    /// Without the flow registered, its route and read resource do not exist.
    @Test func unregisteredFlowIsNotServed() throws {
        let harness = try WebhookHarness()
        #expect(harness.get("/api/notes").status == 404)
        #expect(samples(bodyText(harness.get("/metrics")))["flows_notes_total"] == nil)
    }

    /// A flow cannot take a core read path or another flow's.
    @Test func readPathsAreUnique() throws {
        struct Squatter: Flow {
            let name: String
            let path: String
            let migrations: [Migration] = []
            func handle(_ request: FlowRequest, context: FlowContext) throws -> FlowAnswer { .screen("X", data: [:]) }
            func confirmed(token: String, messageID: String, database: Database, now: Int64) throws(DatabaseError) {
        try database.query("UPDATE notes SET confirmed_by = ?1 WHERE flow_token = ?2", [.text(messageID), .text(token)])
    }

    var readResources: [ReadResource] { [ReadResource(path: path, parameters: []) { _, _ in .null }] }
        }
        for path in ["messages", "stats", "bookings"] {
            let squatter = FlowFactory(name: "squatter", settingNames: []) { _ in
                Squatter(name: "squatter", path: path)
            }
            let error = #expect(throws: ConfigError.self) {
                try Configuration(settings: Settings(["SIGNATURE_CHECK": "off",
                                                      "PRIVATE_KEY_FILE": fixturesDirectory + "/keys/pkcs8.pem"]),
                                  flows: [AppointmentFlow.factory, squatter])
            }
            #expect(error?.description.contains("'\(path)' is already taken") == true)
        }
    }

    /// The command line finds a flow's command among the declared ones and runs it over the database.
    @Test func commandDispatchRunsADeclaredListing() throws {
        let harness = try WebhookHarness(flows: Self.factories)
        try harness.exchange("note", "INIT", token: "note-token-3")
        try harness.exchange("note", "data_exchange", screen: "NOTE", data: ["text": "a, b"], token: "note-token-3")

        let command = try #require(FlowCommand.find("notes", in: Self.factories))
        #expect(FlowCommand.find("bookings", in: Self.factories)?.name == "bookings")
        #expect(FlowCommand.find("notes", in: FlowRegistry.all) == nil)
        let csv = try #require(try command.parse(["--csv", "--config", "/dev/null"]).1)
        let csvOutcome = try csv(harness.database, 0)
        #expect(csvOutcome == .done("id,text\r\n1,\"a, b\"\r\n"))
        let plain = try #require(try command.parse([]).1)
        let plainOutcome = try plain(harness.database, 0)
        #expect(plainOutcome == .done("id  text\n1   a, b\n"))
        #expect(try command.parse(["--help"]).1 == nil)
        #expect(throws: CommandArguments.Problem.self) { try command.parse(["extra"]) }
        #expect(throws: CommandArguments.Problem.self) { try command.parse(["--limit", "3"]) }
    }
}
