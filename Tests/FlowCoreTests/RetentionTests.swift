#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Testing
@testable import FlowCore

/// Both flows and the webhook tables on one store (a SQLite file by default), with the clock moved by hand.
final class RetentionHarness {
    let directory: String
    let path: String
    let store: TestStore
    let database: Database
    let appointment: AppointmentFlow
    let expense: ExpenseFlow
    var now: Int64 = appointmentMonday

    static let migrations = AppointmentStore.migrations + ExpenseStore.migrations + WebhookStore.migrations

    init(engine: Engine = .sqlite) throws {
        directory = temporaryDirectory()
        path = directory + "/flows.db"
        store = try TestStore(engine, directory: directory)
        database = try store.open(migrations: RetentionHarness.migrations)
        appointment = AppointmentFlow(catalog: try AppointmentCatalog.builtIn(), sessionHours: 24)
        expense = try ExpenseFlow(settings: Settings([:]))
    }

    /// The two flows, as served.
    var flows: [any Flow] { [appointment, expense] }

    /// The two flows, built afresh (for tasks that cannot share the harness).
    static func flows() throws -> [any Flow] {
        [AppointmentFlow(catalog: try AppointmentCatalog.builtIn(), sessionHours: 24),
         try ExpenseFlow(settings: Settings([:]))]
    }

    /// `Retention.purge` of this database and both flows.
    func purge(days: Int, sessionLifetimeSeconds: Int64, now: Int64, dryRun: Bool = false) throws -> Retention.Report {
        try Retention.purge(database: database, flows: flows, days: days,
                            sessionLifetimeSeconds: sessionLifetimeSeconds, now: now, dryRun: dryRun)
    }

    /// `Retention.purgeIfDue` of `database` (this one by default) and both flows.
    func purgeIfDue(_ database: Database? = nil, days: Int, sessionLifetimeSeconds: Int64,
                    now: Int64) throws -> Retention.Report? {
        try Retention.purgeIfDue(database: database ?? self.database, flows: flows, days: days,
                                 sessionLifetimeSeconds: sessionLifetimeSeconds, now: now)
    }

    deinit {
        database.close()
        for suffix in ["", "-wal", "-shm"] { unlink(path + suffix) }
        rmdir(directory)
    }

    func connect() throws -> Database {
        try store.open(migrations: RetentionHarness.migrations)
    }

    @discardableResult
    func send(_ flow: any Flow, _ action: FlowAction, screen: String, data: [String: JSONValue] = [:],
              token: String) throws -> FlowAnswer {
        let request = FlowRequest(version: "3.0", action: action, screen: screen, data: data, flowToken: token)
        return try flow.checkedHandle(request, context: FlowContext(database: database, now: now, log: .discard))
    }

    /// An appointment journey up to SUCCESS for `fields`.
    @discardableResult
    func book(_ token: String, _ fields: [String: JSONValue]) throws -> FlowAnswer {
        try send(appointment, .initial, screen: "", token: token)
        try send(appointment, .dataExchange, screen: "APPOINTMENT",
                 data: ["trigger": "department_selected", "department": fields["department"] ?? ""], token: token)
        try send(appointment, .dataExchange, screen: "DETAILS", data: fields, token: token)
        return try send(appointment, .dataExchange, screen: "SUMMARY", data: fields, token: token)
    }

    func count(_ sql: String) throws -> Int64 {
        try database.query(sql).first?.first?.int ?? -1
    }

    /// A webhook message, status, confirmation, alert and outbox item, all received at `at`.
    func storeWebhookRows(id: String, at: Int64) throws {
        try database.query("""
            INSERT INTO webhook_messages (id, sender, type, timestamp, text, raw, received_at)
            VALUES (?1, '447700900123', 'text', ?2, 'hello, my name is Alex', '{}', ?2)
            """, [.text(id), .integer(at)])
        try database.query("""
            INSERT INTO webhook_statuses (message_id, status, timestamp, recipient, raw, received_at)
            VALUES (?1, 'read', ?2, '447700900123', '{}', ?2)
            """, [.text(id), .integer(at)])
        try database.query(
            "INSERT INTO webhook_confirmations (flow_token, message_id, confirmed_at) VALUES (?1, ?1, ?2)",
            [.text(id), .integer(at)])
        try database.query(
            "INSERT INTO webhook_flow_events (event, raw, received_at) VALUES ('ENDPOINT_ERROR', ?1, ?2)",
            [.text(id), .integer(at)])
        try database.query("""
            INSERT INTO webhook_outbox (flow_token, payload, created_at, next_attempt_at) VALUES (?1, '{}', ?2, ?2)
            """, [.text(id), .integer(at)])
    }
}

extension FlowAnswer {
    fileprivate var refusalMessage: String? {
        if case .tokenNoLongerValid(let message) = self { return message }
        return nil
    }

    fileprivate var screenName: String? {
        screenID
    }
}

@Suite("Retention")
struct RetentionTests {
    static let day: Int64 = 86_400
    static let monday = appointmentFields
    static let tuesday = appointmentFieldsChanging(["date": "2026-03-03", "time": "10:00"])

    @Test(arguments: Engine.all) func purgeAnonymisesOldBookingsAndKeepsRecentOnes(engine: Engine) throws {
        let h = try RetentionHarness(engine: engine)
        #expect(try h.book("old", Self.monday).screenName == "SUCCESS")
        // An unfinished session from the same morning: expired long before the purge.
        try h.send(h.appointment, .dataExchange, screen: "APPOINTMENT",
                   data: ["trigger": "department_selected", "department": "home"], token: "idle")
        h.now = appointmentMonday + 13 * appointmentHour  // Monday 21:00
        #expect(try h.book("recent", Self.tuesday).screenName == "SUCCESS")

        // 90 days after Monday 20:00: Monday's 11:30 slot and the morning sessions are older, Tuesday's are not.
        h.now = appointmentMonday + 12 * appointmentHour + 90 * Self.day
        let report = try h.purge(days: 90, sessionLifetimeSeconds: 86_400, now: h.now)
        #expect(report.rows("appointment_bookings") == 1)
        #expect(report.rows("appointment_sessions") == 2)

        let bookings = try AppointmentStore.list(database: h.database)
        #expect(bookings.count == 2)
        let old = try #require(bookings.first { $0.date == "2026-03-02" })
        #expect(old.name == "" && old.email == "" && old.phone == "" && old.moreDetails == "")
        #expect(old.flowToken == "purged:\(old.id)")
        #expect(old.time == "11:30" && old.department == "beauty" && old.status == .booked)
        let recent = try #require(bookings.first { $0.date == "2026-03-03" })
        #expect(recent.name == "Alex Example" && recent.flowToken == "recent")
        #expect(try h.count("SELECT count(*) FROM appointment_sessions") == 1)
        #expect(try h.count("SELECT count(*) FROM appointment_session_tombstones") == 2)

        // A second purge finds nothing more.
        let again = try h.purge(days: 90, sessionLifetimeSeconds: 86_400, now: h.now)
        #expect(again.total == 0)
    }

    @Test(arguments: Engine.all) func purgedTokensStillGet427(engine: Engine) throws {
        let h = try RetentionHarness(engine: engine)
        #expect(try h.book("old", Self.monday).screenName == "SUCCESS")
        try h.send(h.appointment, .dataExchange, screen: "APPOINTMENT",
                   data: ["trigger": "department_selected", "department": "home"], token: "idle")
        h.now = appointmentMonday + 91 * Self.day
        _ = try h.purge(days: 90, sessionLifetimeSeconds: 86_400, now: h.now)
        #expect(try h.count("SELECT count(*) FROM appointment_sessions") == 0)

        // The completed token stays completed, the unfinished one expired: neither starts a new session.
        for action in [FlowAction.initial, .back, .dataExchange] {
            let screen = action == .initial ? "" : "APPOINTMENT"
            let data: [String: JSONValue] = action == .dataExchange
                ? ["trigger": "department_selected", "department": "beauty"] : [:]
            #expect(try h.send(h.appointment, action, screen: screen, data: data, token: "old").refusalMessage
                == AppointmentFlow.completedMessage)
            #expect(try h.send(h.appointment, action, screen: screen, data: data, token: "idle").refusalMessage
                == AppointmentFlow.expiredMessage)
        }
        #expect(try h.send(h.appointment, .dataExchange, screen: "SUMMARY", data: Self.monday, token: "old")
            .refusalMessage == AppointmentFlow.completedMessage)
        #expect(try h.count("SELECT count(*) FROM appointment_sessions") == 0)
        // A new token is served as usual.
        #expect(try h.send(h.appointment, .initial, screen: "", token: "new").screenName == "APPOINTMENT")
    }

    @Test(arguments: Engine.all) func sessionsAreKeptForTheirLifetimeEvenWithAShortPeriod(engine: Engine) throws {
        let h = try RetentionHarness(engine: engine)
        try h.send(h.appointment, .dataExchange, screen: "APPOINTMENT",
                   data: ["trigger": "department_selected", "department": "home"], token: "open")
        h.now += 2 * Self.day
        // One day of retention, but a 3-day session lifetime: the 2-day-old session may still be used.
        let report = try h.purge(days: 1, sessionLifetimeSeconds: 3 * Self.day,
                                         now: h.now)
        #expect(report.rows("appointment_sessions") == 0)
        #expect(try h.count("SELECT count(*) FROM appointment_sessions") == 1)
    }

    @Test(arguments: Engine.all) func expensesLoseTheirDescriptionAndCompletedTokensStayClosed(engine: Engine) throws {
        let h = try RetentionHarness(engine: engine)
        h.now = expenseNoon
        let old = try h.send(h.expense, .dataExchange, screen: ExpenseFlow.formScreen, data: validSubmit,
                             token: "old-expense")
        #expect(old.screenName == "SUCCESS")
        try h.send(h.expense, .initial, screen: "", token: "unfinished")
        _ = try ExpenseStore.openSession(database: h.database, token: "unfinished", now: h.now)
        h.now = expenseNoon + 50 * Self.day
        let recentData = submit(["date": "2026-02-20", "description": "Taxi"])
        #expect(try h.send(h.expense, .dataExchange, screen: ExpenseFlow.formScreen, data: recentData,
                           token: "recent-expense").screenName == "SUCCESS")

        h.now = expenseNoon + 91 * Self.day
        let report = try h.purge(days: 90, sessionLifetimeSeconds: 86_400, now: h.now)
        #expect(report.rows("expenses") == 1)
        #expect(report.rows("expense_sessions") == 2)
        let expenses = try ExpenseStore.list(database: h.database)
        #expect(expenses.count == 2)
        let purged = try #require(expenses.first { $0.expenseDate == "2025-12-31" })
        #expect(purged.description == nil && purged.amountMinor == 1250 && purged.category == "food")
        #expect(purged.flowToken == "purged:\(purged.id)")
        #expect(expenses.first { $0.expenseDate == "2026-02-20" }?.description == "Taxi")

        // The completed token, even its identical retry, gets 427; one expense stays stored.
        #expect(try h.send(h.expense, .dataExchange, screen: ExpenseFlow.formScreen, data: validSubmit,
                           token: "old-expense").refusalMessage != nil)
        #expect(try h.send(h.expense, .initial, screen: "", token: "old-expense").refusalMessage != nil)
        #expect(try h.count("SELECT count(*) FROM expenses") == 2)
        // The recent one still replays its SUCCESS.
        #expect(try h.send(h.expense, .dataExchange, screen: ExpenseFlow.formScreen, data: recentData,
                           token: "recent-expense").screenName == "SUCCESS")
    }

    @Test(arguments: Engine.all) func expensesFollowThePeriodNotTheAppointmentSessionLifetime(engine: Engine) throws {
        let h = try RetentionHarness(engine: engine)
        h.now = expenseNoon
        #expect(try h.send(h.expense, .dataExchange, screen: ExpenseFlow.formScreen, data: validSubmit,
                           token: "lunch").screenName == "SUCCESS")
        h.now += 2 * Self.day
        let report = try h.purge(days: 1, sessionLifetimeSeconds: 3 * Self.day,
                                         now: h.now)
        #expect(report.rows("expenses") == 1 && report.rows("expense_sessions") == 1)
        #expect(try ExpenseStore.list(database: h.database).first?.description == nil)
        #expect(try h.send(h.expense, .dataExchange, screen: ExpenseFlow.formScreen, data: validSubmit,
                           token: "lunch").refusalMessage != nil)
    }

    @Test(arguments: Engine.all) func webhookRowsOlderThanThePeriodAreDeleted(engine: Engine) throws {
        let h = try RetentionHarness(engine: engine)
        try h.storeWebhookRows(id: "wamid.old", at: h.now)
        try h.storeWebhookRows(id: "wamid.recent", at: h.now + 60 * Self.day)
        h.now += 91 * Self.day
        let report = try h.purge(days: 90, sessionLifetimeSeconds: 0, now: h.now)
        for table in ["webhook_messages", "webhook_statuses", "webhook_confirmations", "webhook_flow_events",
                      "webhook_outbox"] {
            #expect(report.rows(table) == 1, "\(table)")
            #expect(try h.count("SELECT count(*) FROM \(table)") == 1, "\(table)")
        }
        #expect(try h.count("SELECT count(*) FROM webhook_messages WHERE id = 'wamid.recent'") == 1)
        #expect(report.total == 5)
    }

    @Test(arguments: Engine.all) func dryRunCountsAndChangesNothing(engine: Engine) throws {
        let h = try RetentionHarness(engine: engine)
        #expect(try h.book("old", Self.monday).screenName == "SUCCESS")
        try h.storeWebhookRows(id: "wamid.old", at: h.now)
        h.now += 91 * Self.day
        let dry = try h.purge(days: 90, sessionLifetimeSeconds: 86_400, now: h.now,
                                      dryRun: true)
        #expect(dry.dryRun && dry.rows("appointment_bookings") == 1 && dry.rows("webhook_messages") == 1)
        #expect(try h.count("SELECT count(*) FROM appointment_bookings WHERE name = 'Alex Example'") == 1)
        #expect(try h.count("SELECT count(*) FROM appointment_sessions") == 1)
        #expect(try h.count("SELECT count(*) FROM webhook_messages") == 1)
        let real = try h.purge(days: 90, sessionLifetimeSeconds: 86_400, now: h.now)
        #expect(real.counts == dry.counts)
    }

    @Test(arguments: Engine.all) func zeroDaysKeepsEverything(engine: Engine) throws {
        let h = try RetentionHarness(engine: engine)
        try h.storeWebhookRows(id: "wamid.old", at: 0)
        let report = try h.purge(days: 0, sessionLifetimeSeconds: 0, now: h.now)
        #expect(report.counts.isEmpty)
        #expect(try h.purgeIfDue(days: 0, sessionLifetimeSeconds: 0, now: h.now) == nil)
        #expect(try h.count("SELECT count(*) FROM webhook_messages") == 1)
    }

    @Test(arguments: Engine.all) func automaticPurgeRunsOncePerPeriodAcrossConnections(engine: Engine) throws {
        let h = try RetentionHarness(engine: engine)
        let other = try h.connect()
        defer { other.close() }
        try h.storeWebhookRows(id: "wamid.1", at: h.now - 100 * Self.day)
        let first = try h.purgeIfDue(days: 90, sessionLifetimeSeconds: 0, now: h.now)
        #expect(first?.rows("webhook_messages") == 1)
        #expect(try Retention.lastPurge(other) == h.now)
        try h.storeWebhookRows(id: "wamid.2", at: h.now - 100 * Self.day)
        // Within the hour neither connection purges again, whichever asks.
        #expect(try h.purgeIfDue(other, days: 90, sessionLifetimeSeconds: 0, now: h.now + 10) == nil)
        #expect(try h.purgeIfDue(days: 90, sessionLifetimeSeconds: 0,
                                         now: h.now + Retention.interval - 1) == nil)
        #expect(try h.count("SELECT count(*) FROM webhook_messages") == 1)
        // An hour later the first to ask purges; the other finds it done.
        let later = h.now + Retention.interval
        #expect(try h.purgeIfDue(other, days: 90, sessionLifetimeSeconds: 0, now: later)?
            .rows("webhook_messages") == 1)
        #expect(try h.purgeIfDue(days: 90, sessionLifetimeSeconds: 0, now: later) == nil)
        #expect(try h.count("SELECT count(*) FROM webhook_messages") == 0)
    }

    @Test(arguments: Engine.all) func concurrentAutomaticPurgesClaimOnce(engine: Engine) async throws {
        let h = try RetentionHarness(engine: engine)
        let store = h.store
        let now = h.now
        let claims = try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    let database = try store.open(migrations: RetentionHarness.migrations)
                    defer { database.close() }
                    return try Retention.purgeIfDue(database: database, flows: try RetentionHarness.flows(), days: 90,
                                                    sessionLifetimeSeconds: 0, now: now) != nil
                }
            }
            var claims = 0
            for try await claimed in group where claimed { claims += 1 }
            return claims
        }
        #expect(claims == 1)
    }

    @Test func retentionDaysSetting() throws {
        #expect(try Retention.days(Settings([:])) == Retention.defaultDays)
        #expect(try Retention.days(Settings(["RETENTION_DAYS": "0"])) == 0)
        #expect(try Retention.days(Settings(["RETENTION_DAYS": "30"])) == 30)
        for bad in ["-1", "forever", "36501"] {
            let error = #expect(throws: ConfigError.self) { try Retention.days(Settings(["RETENTION_DAYS": bad])) }
            #expect(error?.description.contains("RETENTION_DAYS") == true)
        }
    }
}
