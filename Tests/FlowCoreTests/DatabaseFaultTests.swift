import CFlowsSQLite
import FlowCore
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Faults of the database file itself (the integration suite `test_faults.py` covers a full disk, a read-only file
/// as `nobody` and locks held by other processes against the real binary).
@Suite("database file faults")
struct DatabaseFaultTests {
    let directory = temporaryDirectory()
    var path: String { directory + "/flows.db" }

    func open() throws -> Database {
        let database = try Database(path: path, migrations: [
            Migration(id: "fault-1", sqlite: "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)", postgres: "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)"),
        ])
        try database.writeTransaction { () throws(DatabaseError) in
            try database.execute("INSERT INTO notes (text) VALUES ('kept')")
        }
        return database
    }

    @Test func aNewDatabaseAndItsWALFilesAreReadableByTheOwnerOnly() throws {
        let database = try open()
        defer { database.close() }
        for suffix in ["", "-wal", "-shm"] {
            var info = stat()
            #expect(stat(path + suffix, &info) == 0, "\(suffix)")
            #expect(info.st_mode & 0o777 == 0o600, "\(suffix): \(String(info.st_mode & 0o777, radix: 8))")
        }
    }

    @Test func aNewDatabaseInAGroupIsReadableByThatGroup() throws {
        let group = getgid()
        let database = try Database(path: path, fileGroup: group)
        defer { database.close() }
        var info = stat()
        #expect(stat(path, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o640 && info.st_gid == group)
        // An existing file keeps its mode.
        chmod(path, 0o600)
        try Database(path: path, fileGroup: group).close()
        #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o600)
    }

    @Test func aWriteToADeletedFileIsRefusedAsUnavailableNamingTheFile() throws {
        let database = try open()
        defer { database.close() }
        for suffix in ["", "-wal", "-shm"] { unlink(path + suffix) }
        do {
            try database.writeTransaction { () throws(DatabaseError) in
                try database.execute("INSERT INTO notes (text) VALUES ('lost')")
            }
            Issue.record("a write to a deleted database file succeeded: it went to a file nobody reads")
        } catch {
            #expect(error.code == SQLITE_CANTOPEN && error.isUnavailable)
            #expect(error.description.hasPrefix("writing \(path): the database file is gone (No such file"))
        }
    }

    @Test func aFileRestoredInPlaceIsWrittenAgain() throws {
        let database = try open()
        defer { database.close() }
        // chmod 0444 cannot be shown here (tests run as root, which writes whatever the mode says): the integration
        // suite runs that case as `nobody`. The path check itself: a file back at its path is written again.
        let moved = path + ".moved"
        #expect(rename(path, moved) == 0)
        #expect(throws: DatabaseError.self) { try database.writeTransaction { () throws(DatabaseError) in } }
        #expect(rename(moved, path) == 0)
        try database.writeTransaction { () throws(DatabaseError) in
            try database.execute("INSERT INTO notes (text) VALUES ('again')")
        }
        #expect(try database.query("SELECT count(*) FROM notes").first?.first?.int == 2)
    }

    @Test func pagingThroughTheReadAPIAddsNoStatements() throws {
        let harness = try WebhookHarness()
        let before = harness.database.cachedStatementCount
        _ = try harness.read("/api/messages", "limit=1&offset=0")
        let one = harness.database.cachedStatementCount
        for page in 1...300 {
            _ = try harness.read("/api/messages", "limit=\(page % 100 + 1)&offset=\(page * 7)")
        }
        #expect(harness.database.cachedStatementCount == one, "one cached statement per distinct limit and offset")
        #expect(one - before <= 2)
    }

    @Test func theStatementCacheIsBounded() throws {
        let database = try open()
        defer { database.close() }
        for n in 0..<(Database.statementCacheLimit * 3) {
            #expect(try database.query("SELECT \(n) + count(*) FROM notes").first?.first?.int == Int64(n + 1))
        }
        #expect(database.cachedStatementCount <= Database.statementCacheLimit)
        #expect(try database.query("SELECT text FROM notes").first?.first?.string == "kept")
    }

    @Test func theBookingsReadAPIReadsOnlyItsPage() throws {
        let harness = try WebhookHarness()
        for n in 0..<120 {
            try harness.database.execute("""
                INSERT INTO appointment_bookings (created_at, flow_token, department, location, date, time, starts_at,
                    utc_offset, name, email, phone, more_details, status)
                VALUES (0, 'page-\(n)', 'beauty', '1', '2026-03-\(n % 18 + 10)', '10:00', 0, 0, 'N',
                    'n@example.com', '1', '', '\(n % 10 == 0 ? "cancelled" : "booked")')
                """)
        }
        let all = try AppointmentStore.list(database: harness.database)
        #expect(all.count == 108)
        #expect(try AppointmentStore.count(database: harness.database) == 108)
        #expect(try AppointmentStore.count(database: harness.database, includeCancelled: true) == 120)
        #expect(try AppointmentStore.list(database: harness.database, limit: 5, offset: 100).map(\.id)
            == all.dropFirst(100).prefix(5).map(\.id))
        let page = try harness.read("/api/bookings", "limit=50&offset=100")
        #expect(page["total"] == 108)
        #expect(page["data"]?.arrayValue?.compactMap { $0["flow_token"]?.stringValue }
            == all.dropFirst(100).map(\.flowToken))
        #expect(try harness.read("/api/bookings", "all=true&limit=100&offset=100")["data"]?.arrayValue?.count == 20)
    }

    @Test func onlyTheCreatingAccessMakesAFile() {
        for mode in [Database.Access.existing, .readOnly] {
            #expect(throws: DatabaseError.self) { try Database(path: path, access: mode) }
            #expect(access(path, F_OK) != 0, "\(mode) created \(path)")
        }
        do {
            _ = try Database(path: path, access: .readOnly)
            Issue.record("a read-only connection opened a file that does not exist")
        } catch {
            #expect(error.code == SQLITE_CANTOPEN)
            #expect(error.description.hasPrefix("opening \(path): there is no database there"))
        }
    }

    @Test func aReadOnlyConnectionReadsWritesNothingAndNeedsEveryMigration() throws {
        try open().close()
        let migrations = [Migration(id: "fault-1", sqlite: "unused: already applied", postgres: "unused: already applied")]
        let database = try Database(path: path, migrations: migrations, access: .readOnly)
        #expect(try database.query("SELECT text FROM notes").first?.first?.string == "kept")
        #expect(throws: DatabaseError.self) { try database.execute("INSERT INTO notes (text) VALUES ('no')") }
        database.close()
        let newer = migrations + [Migration(id: "fault-2", sqlite: "CREATE TABLE later (id INTEGER)", postgres: "CREATE TABLE later (id INTEGER)")]
        do {
            _ = try Database(path: path, migrations: newer, access: .readOnly)
            Issue.record("a read-only connection accepted a database without migration fault-2")
        } catch {
            #expect(error.description.contains("migration fault-2 not applied"))
        }
        let writer = try Database(path: path, migrations: newer, access: .existing)
        #expect(try writer.query("SELECT count(*) FROM later").first?.first?.int == 0)
        writer.close()
    }
}
