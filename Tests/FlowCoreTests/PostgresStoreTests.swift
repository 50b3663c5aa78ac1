import Dispatch
import PostgresTestSupport
import Synchronization
import Testing
@testable import FlowCore

#if canImport(Glibc)
import Glibc
#endif

/// `PostgresStore` itself, against the test server: what differs from SQLite and must still give the same answers.
@Suite(.enabled(if: PostgresTestServer.canStart, "no PostgreSQL server binaries here (Debian's postgresql package)"))
struct PostgresStoreTests {
    @Test func placeholdersAreNumberedOutsideQuotes() {
        #expect(PostgresStore.numbered("SELECT ?1, '?2', \"?3\", ?10 WHERE x = ?") == "SELECT $1, '?2', \"?3\", $10 WHERE x = ?")
    }

    /// PostgreSQL text cannot hold U+0000: the escape stores it whole, and text holding the escape mark itself
    /// too; on both engines the same text comes back.
    @Test(arguments: Engine.all) func textWithNULAndTheMarkComesBackWhole(engine: Engine) throws {
        let store = try TestStore(engine, directory: temporaryDirectory())
        let database = try store.open(migrations: [
            Migration(id: "t-1", sqlite: "CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT NOT NULL)",
                      postgres: "CREATE TABLE t (k text PRIMARY KEY, v text NOT NULL)"),
        ])
        defer { database.close() }
        let mark = String(Unicode.Scalar(0xFDD0)!)  // U+FDD0, the escape's mark (a noncharacter)
        let texts = ["a\u{0}b", "\u{0}", "mark \(mark) here", "\(mark)0", "\(mark)E\u{0}\(mark)", "plain", "",
                     "emoji 👍 and ﬁ ligature"]
        for (index, text) in texts.enumerated() {
            try database.query("INSERT INTO t (k, v) VALUES (?1, ?2)", [.text("k\(index)\u{0}"), .text(text)])
        }
        for (index, text) in texts.enumerated() {
            let rows = try database.query("SELECT k, v FROM t WHERE k = ?1", [.text("k\(index)\u{0}")])
            #expect(rows == [[.text("k\(index)\u{0}"), .text(text)]])
        }
    }

    /// The seat index decides the last seat under read committed: a second insert racing an uncommitted first
    /// one waits for it, then adds nothing (the flow then reads again and answers "taken").
    @Test func aRacingInsertOfTheLastSeatAddsNothing() throws {
        let store = try TestStore(.postgres, directory: temporaryDirectory())
        let first = try store.open(migrations: AppointmentStore.migrations)
        defer { first.close() }
        @Sendable func booking(_ token: String) -> AppointmentStore.NewBooking {
            AppointmentStore.NewBooking(flowToken: token, department: "beauty", location: "1", date: "2026-03-02",
                                        time: "11:30", startsAt: 1, utcOffsetSeconds: 0, name: "n", email: "e",
                                        phone: "p", moreDetails: "")
        }
        let second = UnsafeSendable(try store.open(migrations: AppointmentStore.migrations))
        defer { second.value.close() }
        let done = DispatchSemaphore(value: 0)
        let result = UnsafeSendable<Result<AppointmentBooking?, DatabaseError>?>(nil)
        try first.writeTransaction { () throws(DatabaseError) in
            #expect(try AppointmentStore.insert(first, booking("a"), capacity: 1, now: 1)?.flowToken == "a")
            DispatchQueue.global().async {
                do throws(DatabaseError) {
                    result.value = .success(try AppointmentStore.insert(second.value, booking("b"), capacity: 1,
                                                                        now: 1))
                } catch {
                    result.value = .failure(error)
                }
                done.signal()
            }
            // Give the second insert time to reach the index and wait on this transaction's row.
            usleep(200_000)
        }
        done.wait()
        #expect(try #require(result.value).get() == nil)
        #expect(try AppointmentStore.bookedCount(first, department: "beauty", location: "1", date: "2026-03-02",
                                                 time: "11:30") == 1)
    }

    /// A request past its deadline sends no more statements: unavailable (503), and the next request runs.
    @Test func aStatementAfterTheDeadlineIsNotSent() throws {
        let store = try TestStore(.postgres, directory: temporaryDirectory())
        let database = try store.open(migrations: ExpenseStore.migrations)
        defer { database.close() }
        database.deadline = monotonicNanoseconds() - 1
        let late = #expect(throws: DatabaseError.self) { try database.query("SELECT count(*) FROM expenses") }
        #expect(late?.isUnavailable == true && late?.message.contains("REQUEST_DEADLINE_MS") == true)
        database.deadline = 0
        #expect(try database.query("SELECT count(*) FROM expenses") == [[.integer(0)]])
    }

    /// As on SQLite, statements built from values (a bug) do not pile up on the connection: past the limit the
    /// cache starts over (`DEALLOCATE ALL`), and every statement still answers.
    @Test func theStatementCacheIsBounded() throws {
        let store = try TestStore(.postgres, directory: temporaryDirectory())
        let database = try store.open(migrations: ExpenseStore.migrations)
        defer { database.close() }
        for n in 0..<(Database.statementCacheLimit * 2 + 5) {
            #expect(try database.query("SELECT \(n) + count(*) FROM expenses").first?.first?.int == Int64(n))
        }
        #expect(database.cachedStatementCount <= Database.statementCacheLimit)
        #expect(database.cachedStatementCount > 0)
    }

    /// Hosts starting together on an empty database: every connection opens, each migration is applied once.
    @Test func migrationsApplyOnceWhenHostsStartTogether() async throws {
        let store = try TestStore(.postgres, directory: temporaryDirectory())
        let migrations = AppointmentStore.migrations + ExpenseStore.migrations + WebhookStore.migrations
            + Retention.migrations
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<6 {
                group.addTask { try store.open(migrations: migrations).close() }
            }
            try await group.waitForAll()
        }
        let database = try store.open(migrations: [])
        defer { database.close() }
        let applied = try database.query("SELECT id FROM schema_migrations ORDER BY id").compactMap { $0.first?.string }
        #expect(applied == migrations.map(\.id).sorted())
    }

    /// A read-only connection refuses a database without every migration, naming the missing one.
    @Test func readOnlyRefusesAnUnmigratedDatabase() throws {
        let store = try TestStore(.postgres, directory: temporaryDirectory())
        try store.open(migrations: ExpenseStore.migrations).close()
        #expect(throws: DatabaseError.self) {
            try store.open(migrations: ExpenseStore.migrations + AppointmentStore.migrations, access: .readOnly)
        }
        try store.open(migrations: ExpenseStore.migrations, access: .readOnly).close()
    }

    /// A server that is not there: the store still opens, every request that needs it is unavailable (503), the
    /// readiness says why without the password, and the same store serves once the server is up.
    @Test func anAbsentServerIsUnavailableThenServes() throws {
        let server = try PostgresTestServer()
        defer { server.destroy() }
        try server.stop()
        let database = try Database.postgres(url: server.url, migrations: ExpenseStore.migrations)
        defer { database.close() }
        let down = #expect(throws: DatabaseError.self) { try database.query("SELECT count(*) FROM expenses") }
        #expect(down?.isUnavailable == true)
        let problem = try #require(database.readinessProblem())
        #expect(problem.contains("unavailable") && !problem.contains(server.password), "\(problem)")
        try server.start()
        // The reconnect interval (250 ms) passes before the next attempt.
        usleep(300_000)
        #expect(try database.query("SELECT count(*) FROM expenses") == [[.integer(0)]])
        #expect(database.readinessProblem() == nil)
        // Stopped under an open connection, started again: a read recovers by itself.
        try server.stop(immediate: true)
        try server.start()
        #expect(try database.query("SELECT count(*) FROM expenses") == [[.integer(0)]])
    }
}

/// The same, through the endpoint: while PostgreSQL is down a flow answers 503 (never 500) and `/health/ready`
/// says why (no password); once it is back the same worker serves again, without a restart.
@Suite(.enabled(if: PostgresTestServer.canStart, "no PostgreSQL server binaries here (Debian's postgresql package)"))
struct PostgresEndpointTests {
    @Test func aStoppedServerIs503ThenServesAgain() throws {
        let server = try PostgresTestServer()
        defer { server.destroy() }
        let harness = try WebhookHarness(["DATABASE_URL": server.url])
        try harness.exchange("expense", "INIT", token: "pg-down-1")
        try server.stop(immediate: true)
        let call = ClientCall(["version": "3.0", "action": "INIT", "screen": "", "data": [:],
                               "flow_token": "pg-down-2"])
        for _ in 0..<3 {
            let response = harness.endpoint.handle(call.request(path: "/flows/expense"), worker: harness.worker)
            #expect(response.status == 503)
        }
        let ready = harness.endpoint.handle(EndpointRequest(method: "GET", path: "/health/ready", params: [],
                                                            body: []), worker: harness.worker)
        let reason = String(decoding: ready.body, as: UTF8.self)
        #expect(ready.status == 503 && reason.contains("not ready: the database is unavailable"), "\(reason)")
        #expect(!reason.contains(server.password))
        try server.start()
        usleep(300_000)  // the reconnect interval
        let again = try harness.exchange("expense", "INIT", token: "pg-down-3")
        #expect(again["screen"] == "EXPENSE_FORM")
        #expect(harness.endpoint.handle(EndpointRequest(method: "GET", path: "/health/ready", params: [], body: []),
                                        worker: harness.worker).status == 200)
        // Counted per process, published with the requests (other tests of this process may add to them).
        let counts = harness.worker.metrics.snapshot()
        #expect((counts["flows_postgres_connection_failures_total"] ?? 0) >= 1, "\(counts)")
        #expect((counts["flows_postgres_reconnects_total"] ?? 0) >= 1, "\(counts)")
    }
}

/// A flow that only waits in the database (`pg_sleep`), to be interrupted.
struct SleepFlow: Flow {
    let name = "sleep"
    let migrations: [Migration] = []

    func handle(_ request: FlowRequest, context: FlowContext) throws -> FlowAnswer {
        try context.requireDatabase(for: name).query("SELECT pg_sleep(20)")
        return .screen("AWAKE", data: [:])
    }
}

extension PostgresEndpointTests {
    /// The watchdog's interrupt of a request past its deadline cancels the running PostgreSQL statement
    /// (`PQcancel`), as `sqlite3_interrupt` stops SQLite's: 503 at once, not when the statement would end.
    @Test func theWatchdogCancelsTheRunningStatement() throws {
        let store = try TestStore(.postgres, directory: temporaryDirectory())
        let harness = try WebhookHarness(["DATABASE_URL": store.location, "REQUEST_DEADLINE_MS": "600000"],
                                         flows: [FlowFactory(name: "sleep", settingNames: []) { _ in SleepFlow() }])
        let slot = harness.worker.slot
        let metrics = harness.worker.metrics
        let watchdog = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            while slot.requestStart.load(ordering: .acquiring) == 0 { usleep(1000) }
            usleep(300_000)  // the statement is running on the server
            metrics.interruptOverdue(deadlineMilliseconds: 0)
            watchdog.signal()
        }
        let call = ClientCall(["version": "3.0", "action": "INIT", "screen": "", "data": [:], "flow_token": "zz"])
        let response = harness.endpoint.handle(call.request(path: "/flows/sleep"), worker: harness.worker)
        watchdog.wait()
        #expect(response.status == 503)
        #expect(String(decoding: response.body, as: UTF8.self).contains("request deadline exceeded"))
        // The connection serves the next request.
        #expect(try harness.worker.database?.query("SELECT 1") == [[.integer(1)]])
    }
}

/// A value handed to another thread in a test that orders the accesses itself.
final class UnsafeSendable<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}
