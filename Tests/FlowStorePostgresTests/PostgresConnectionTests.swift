@testable import FlowStorePostgres
import PostgresTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The error a call threw, or nil when it returned.
func caught(_ body: () throws -> Void) -> PostgresError? {
    do {
        try body()
        return nil
    } catch let error as PostgresError {
        return error
    } catch {
        Issue.record("not a PostgresError: \(error)")
        return nil
    }
}

/// `PostgresConnection` against a real server started by the tests (`PostgresTestServer`). Each test uses tables of
/// its own, so they run in parallel on the shared server.
@Suite(.enabled(if: PostgresTestServer.canStart, "no PostgreSQL server binaries here (Debian's postgresql package)"))
struct PostgresConnectionTests {
    @Test func connectsWithEachURIForm() throws {
        let server = try SharedPostgres.get()
        let forms = [
            server.url,
            "postgres://flows:\(server.password)@127.0.0.1:\(server.port)/flows",
            "postgresql://flows:\(server.password)@/flows?host=\(server.socketDirectory)&port=\(server.port)",
            server.url + "?sslmode=disable&connect_timeout=3&application_name=booking-worker",
        ]
        for url in forms {
            let connection = try PostgresConnection(url: url)
            #expect(connection.isConnected)
            let name = url.contains("application_name") ? "booking-worker" : "flows-fcgi"
            #expect(try connection.execute("SELECT current_user, current_setting('application_name')")
                == [[.text("flows"), .text(name)]])
        }
    }

    @Test func passwordFromAFileOrLibpqsPasswordFile() throws {
        let server = try SharedPostgres.get()
        let bare = "postgresql://flows@127.0.0.1:\(server.port)/flows"
        let file = server.directory + ".password"
        try PostgresTestServer.write(file, server.password + "\n")
        defer { unlink(file) }
        let connection = try PostgresConnection(url: bare, passwordFile: file)
        #expect(try connection.execute("SELECT 1") == [[.int8(1)]])

        let twice = caught { _ = try PostgresConnection(url: server.url, passwordFile: file) }
        #expect(twice?.kind == .invalidConfiguration)
        #expect(twice.map { !"\($0)".contains(server.password) } == true)

        let missing = caught { _ = try PostgresConnection(url: bare, passwordFile: file + ".missing") }
        #expect(missing?.kind == .invalidConfiguration)
        #expect(missing?.context.contains(file + ".missing") == true)

        // libpq's password file, the one PGPASSFILE names (given here as passfile=, the same setting, so the
        // process environment of the other tests is left alone).
        let passfile = server.directory + ".pgpass"
        try PostgresTestServer.write(passfile, "127.0.0.1:\(server.port):flows:flows:\(server.password)\n")
        defer { unlink(passfile) }
        let fromPassfile = try PostgresConnection(url: bare + "?passfile=\(passfile)")
        #expect(try fromPassfile.execute("SELECT current_user") == [[.text("flows")]])
    }

    @Test func wrongPasswordIsRejectedWithoutShowingIt() throws {
        let server = try SharedPostgres.get()
        let canary = "canary-Pw-7f3a"
        let error = caught {
            _ = try PostgresConnection(url: "postgresql://flows:\(canary)@127.0.0.1:\(server.port)/flows")
        }
        let failure = try #require(error)
        #expect(failure.kind == .rejected)
        #expect(failure.sqlState == "28P01")
        #expect(failure.outcome == .unavailable)
        #expect(!failure.description.contains(canary))
        #expect(failure.description.contains("postgresql://flows:***@127.0.0.1"))
        #expect(failure.description.contains("password authentication failed"))

        let noPassword = caught { _ = try PostgresConnection(url: "postgresql://flows@127.0.0.1:\(server.port)/flows") }
        #expect(noPassword?.kind == .rejected)

        let noDatabase = caught {
            _ = try PostgresConnection(url: "postgresql://flows:\(server.password)@127.0.0.1:\(server.port)/nope")
        }
        #expect(noDatabase?.kind == .rejected)
        #expect(noDatabase?.sqlState == "3D000")
    }

    @Test func nobodyListeningIsUnreachable() throws {
        // A port just found free, with nothing listening on it.
        let server = try SharedPostgres.get()
        let port = try PostgresTestServer.freePort()
        let error = caught {
            _ = try PostgresConnection(url: "postgresql://flows:\(server.password)@127.0.0.1:\(port)/flows")
        }
        #expect(error?.kind == .unreachable)
        #expect(error?.outcome == .unavailable)
        #expect(error.map { !"\($0)".contains(server.password) } == true)
    }

    @Test func malformedURIIsRefusedWithThePasswordMasked() {
        let canary = "canary-Pw-91"
        let error = caught { _ = try PostgresConnection(url: "postgresql://flows:\(canary)@[::1/flows") }
        #expect(error?.kind == .invalidConfiguration)
        #expect(error.map { !"\($0)".contains(canary) } == true)
    }

    @Test func preparedStatementsAreReusedWithTypedValues() throws {
        let server = try SharedPostgres.get()
        let connection = try PostgresConnection(url: server.url)
        try connection.execute("CREATE TABLE typed (id bigserial PRIMARY KEY, n bigint, x float8, t text, b boolean)")
        let insert = try connection.prepare(
            "insert_typed", "INSERT INTO typed (n, x, t, b) VALUES ($1, $2, $3, $4) RETURNING id")
        #expect(try connection.prepare("insert_typed", insert.sql) == insert)
        #expect(caught { _ = try connection.prepare("insert_typed", "SELECT 1") }?.kind == .other)
        let values: [[PostgresValue]] = [
            [.int8(.min), .float8(-0.5), .text(""), .text("true")],
            [.int8(.max), .float8(1e-300), .text("é – ✓ 𝄞"), .text("false")],
            [.null, .null, .null, .null],
        ]
        var ids: [Int64] = []
        for row in values { ids.append(try #require(connection.execute(insert, row).first?.first?.int)) }
        #expect(ids == ids.sorted() && Set(ids).count == 3)
        let read = try connection.prepare("read_typed", "SELECT n, x, t, b FROM typed ORDER BY id")
        #expect(try connection.execute(read) == [
            [.int8(.min), .float8(-0.5), .text(""), .int8(1)],
            [.int8(.max), .float8(1e-300), .text("é – ✓ 𝄞"), .int8(0)],
            [.null, .null, .null, .null],
        ])
        #expect(try connection.execute("SELECT count(*) FROM pg_prepared_statements") == [[.int8(2)]])
    }

    @Test func textWithNULIsRefusedBeforeItIsSent() throws {
        let server = try SharedPostgres.get()
        let connection = try PostgresConnection(url: server.url)
        try connection.execute("CREATE TABLE nul_text (t text)")
        let insert = try connection.prepare("insert_nul", "INSERT INTO nul_text (t) VALUES ($1)")
        let error = caught { try connection.execute(insert, [.text("a\u{0}b")]) }
        #expect(error?.kind == .invalidValue)
        #expect(error?.outcome == .invalidInput)
        #expect(error?.message.contains("parameter 1") == true)
        try connection.execute(insert, [.text("ab")])
        #expect(try connection.execute("SELECT t FROM nul_text") == [[.text("ab")]])
    }

    @Test func uniqueViolationNamesTheConstraintNotTheValue() throws {
        let server = try SharedPostgres.get()
        let connection = try PostgresConnection(url: server.url)
        try connection.execute("CREATE TABLE seats (slot text PRIMARY KEY, token text NOT NULL UNIQUE)")
        let insert = try connection.prepare("take_seat", "INSERT INTO seats (slot, token) VALUES ($1, $2)")
        try connection.execute(insert, [.text("slot-1"), .text("token-canary-1")])
        let error = try #require(caught { try connection.execute(insert, [.text("slot-2"), .text("token-canary-1")]) })
        #expect(error.kind == .uniqueViolation)
        #expect(error.sqlState == "23505")
        #expect(error.outcome == .conflict)
        #expect(error.constraint == "seats_token_key")
        #expect(!error.description.contains("token-canary-1"))
        // A data exception quotes the refused value in its message: cut.
        let number = try connection.prepare("number", "SELECT $1::bigint")
        let bad = try #require(caught { try connection.execute(number, [.text("value-canary-2")]) })
        #expect(bad.sqlState == "22P02" && bad.kind == .other)
        #expect(!bad.description.contains("value-canary-2"))
    }

    @Test func transactionsCommitAndRollBack() throws {
        let server = try SharedPostgres.get()
        let connection = try PostgresConnection(url: server.url)
        try connection.execute("CREATE TABLE ledger (n bigint UNIQUE)")
        let insert = try connection.prepare("insert_ledger", "INSERT INTO ledger (n) VALUES ($1)")
        try connection.transaction { () throws(PostgresError) in try connection.execute(insert, [.int8(1)]) }
        let thrown = caught {
            try connection.transaction { () throws(PostgresError) in
                try connection.execute(insert, [.int8(2)])
                throw PostgresError(.other, message: "the flow changed its mind", context: "test")
            }
        }
        #expect(thrown?.message == "the flow changed its mind")
        try connection.transaction(commit: false) { () throws(PostgresError) in
            try connection.execute(insert, [.int8(3)])
        }
        // A statement that failed inside, its error swallowed by the body: still rolled back, and said so.
        let swallowed = caught {
            try connection.transaction(.serializable) { () throws(PostgresError) in
                try connection.execute(insert, [.int8(4)])
                _ = try? connection.execute(insert, [.int8(1)])
            }
        }
        #expect(swallowed?.context == "committing")
        #expect(try connection.execute("SELECT n FROM ledger ORDER BY n") == [[.int8(1)]])
        let nested = caught {
            try connection.transaction { () throws(PostgresError) in
                try connection.transaction { () throws(PostgresError) in }
            }
        }
        #expect(nested?.message == "a transaction is already open")
    }

    @Test func statementAndLockTimeoutsAreMapped() throws {
        let server = try SharedPostgres.get()
        let connection = try PostgresConnection(url: server.url)
        try connection.setTimeouts(statementMilliseconds: 50, lockMilliseconds: 50)
        let slow = caught { _ = try connection.execute("SELECT pg_sleep(30)") }
        #expect(slow?.kind == .statementTimeout)
        #expect(slow?.sqlState == "57014")
        #expect(slow?.outcome == .unavailable)
        #expect(try connection.execute("SELECT 1") == [[.int8(1)]])

        try connection.execute("CREATE TABLE locked (id bigint PRIMARY KEY, n bigint)")
        try connection.execute("INSERT INTO locked VALUES (1, 0)")
        try connection.setTimeouts(statementMilliseconds: 10_000, lockMilliseconds: 50)
        let holder = try PostgresConnection(url: server.url)
        let waited = try holder.transaction { () throws(PostgresError) -> PostgresError? in
            try holder.execute("SELECT n FROM locked WHERE id = 1 FOR UPDATE")
            return caught { _ = try connection.execute("UPDATE locked SET n = n + 1 WHERE id = 1") }
        }
        #expect(waited?.kind == .lockTimeout)
        #expect(waited?.sqlState == "55P03")
        #expect(waited?.outcome == .unavailable)
    }

    @Test func maskedURLsHideEveryPassword() {
        #expect(PostgresURL.masked("postgresql://flows:s3cret@db:5432/flows?sslmode=require")
            == "postgresql://flows:***@db:5432/flows?sslmode=require")
        #expect(PostgresURL.masked("postgres://u:p@ss/w?rd@db/x") == "postgres://u:***@db/x")
        #expect(PostgresURL.masked("postgresql://flows@db/flows?password=s3cret&application_name=a")
            == "postgresql://flows@db/flows?password=***&application_name=a")
        #expect(PostgresURL.masked("host=db password=s3cret dbname=flows") == "host=db password=*** dbname=flows")
        #expect(PostgresURL.masked("postgresql://db:5432/flows") == "postgresql://db:5432/flows")
        #expect(PostgresURL.masked("postgresql://flows@db/flows?sslpassword=x&sslmode=verify-full")
            == "postgresql://flows@db/flows?sslpassword=***&sslmode=verify-full")
        #expect(PostgresURL.masked("postgresql://flows@db/flows?notapassword=x")
            == "postgresql://flows@db/flows?notapassword=x")
    }

    @Test func verboseConnectionMessagesGiveTheirSQLSTATE() {
        let (state, message) = PostgresConnection.parseVerbose("""
            connection to server at "127.0.0.1", port 5432 failed: FATAL:  28P01: password authentication failed for \
            user "flows"
            LOCATION:  auth_failed, auth.c:326

            """)
        #expect(state == "28P01")
        #expect(message == "connection to server at \"127.0.0.1\", port 5432 failed: FATAL: password authentication "
            + "failed for user \"flows\"")
        #expect(PostgresConnection.parseVerbose("connection refused\n\tIs the server running?").0 == nil)
    }
}

/// A server of its own, stopped in immediate mode under an open connection and started again.
@Suite(.enabled(if: PostgresTestServer.canStart, "no PostgreSQL server binaries here (Debian's postgresql package)"))
struct PostgresRestartTests {
    @Test func theSameConnectionServesAgainAfterTheServerCameBack() throws {
        let server = try PostgresTestServer()
        defer { server.destroy() }
        let connection = try PostgresConnection(url: server.url)
        try connection.setTimeouts(statementMilliseconds: 2000, lockMilliseconds: 500)
        let next = try connection.prepare("next", "SELECT $1::bigint + 1")
        #expect(try connection.execute(next, [.int8(41)]) == [[.int8(42)]])

        try server.stop(immediate: true)
        let lost = try #require(caught { try connection.execute(next, [.int8(1)]) })
        #expect(lost.kind == .connectionLost || lost.kind == .serverUnavailable, "\(lost)")
        #expect(lost.outcome == .unavailable)
        #expect(!connection.isConnected)
        // Still down: the call tries to reconnect and says the server is unreachable.
        let down = try #require(caught { try connection.execute(next, [.int8(2)]) })
        #expect(down.kind == .unreachable, "\(down)")
        #expect(caught { try connection.reset() }?.kind == .unreachable)

        try server.start()
        try connection.reset()
        #expect(connection.isConnected)
        #expect(try connection.execute(next, [.int8(99)]) == [[.int8(100)]])
        #expect(try connection.execute("SHOW statement_timeout") == [[.text("2s")]])
        #expect(try connection.execute("SHOW lock_timeout") == [[.text("500ms")]])

        // Down and up again without an explicit reset: the first call after the restart finds the old connection
        // gone, the next reconnects by itself.
        try server.stop(immediate: true)
        try server.start()
        let stale = caught { try connection.execute(next, [.int8(3)]) }
        #expect(stale == nil || stale?.outcome == .unavailable)
        #expect(try connection.execute(next, [.int8(4)]) == [[.int8(5)]])

        // A transaction whose connection breaks is not silently continued on a new one: every later statement of
        // it fails too, and the transaction's error says unavailable.
        var later: PostgresError?
        let inside = caught {
            try connection.transaction { () throws(PostgresError) in
                try connection.execute(next, [.int8(5)])
                do {
                    try server.stop(immediate: true)
                    try server.start()
                } catch {
                    Issue.record("restarting the server: \(error)")
                }
                let first = caught { try connection.execute(next, [.int8(6)]) }
                later = caught { try connection.execute(next, [.int8(7)]) }
                if let first { throw first }
            }
        }
        #expect(inside?.outcome == .unavailable)
        #expect(later?.kind == .connectionLost)
        #expect(try connection.execute(next, [.int8(6)]) == [[.int8(7)]])
    }
}
