import PostgresTestSupport
import Testing
@testable import FlowCore

#if canImport(Glibc)
import Glibc
#endif

/// The engines the store-touching tests run on, from one test definition: SQLite always; PostgreSQL on a server
/// the tests start (`SharedPostgres`) where its binaries are installed, and always under `CI=true` (where a
/// missing server then fails the tests instead of skipping them).
enum Engine: String, Sendable, CustomStringConvertible {
    case sqlite
    case postgres

    /// Every engine this machine can run.
    static let all: [Engine] = PostgresTestServer.canStart ? [.sqlite, .postgres] : [.sqlite]

    var description: String { rawValue }
}

/// A fresh, empty store of one engine: a SQLite file in a new folder, or a new database on the shared test
/// PostgreSQL server. `open` makes a connection to it, as each worker thread or process has its own.
struct TestStore: Sendable {
    let engine: Engine
    /// The SQLite file, or the PostgreSQL URL.
    let location: String

    init(_ engine: Engine, directory: String) throws {
        self.engine = engine
        switch engine {
        case .sqlite: location = directory + "/flows.db"
        case .postgres: location = try SharedPostgres.get().freshDatabase()
        }
    }

    /// A new connection, applying `migrations`.
    func open(migrations: [Migration], access: Database.Access = .create) throws -> Database {
        switch engine {
        case .sqlite: try Database(path: location, migrations: migrations, access: access)
        case .postgres: try Database.postgres(url: location, migrations: migrations, access: access)
        }
    }

    /// `DATABASE_URL` for this store.
    var databaseURL: String { engine == .sqlite ? "sqlite:" + location : location }
}
