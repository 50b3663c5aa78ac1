import FlowStorePostgres

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Where the data lives: `DATABASE_URL` parsed (see `Configuration.databaseLocation`).
public enum DatabaseLocation: Sendable, Equatable {
    /// A SQLite file (one host).
    case sqlite(path: String)
    /// A PostgreSQL server (one or several hosts): a libpq connection URI, and `DATABASE_PASSWORD_FILE` if set.
    case postgres(url: String, passwordFile: String?)

    /// The SQLite file, when this is one.
    public var sqlitePath: String? {
        if case .sqlite(let path) = self { return path }
        return nil
    }

    /// The file path, or the URL with its password (and any secret parameter) hidden: for logs and `check`.
    public var shown: String {
        switch self {
        case .sqlite(let path): path
        case .postgres(let url, _): Settings.hidingURLSecrets(url)
        }
    }

    /// Why libpq cannot parse the PostgreSQL connection URI `url` (its message, which never holds the password), or
    /// `nil` when it can. Loads libpq.
    public static func postgresURLProblem(_ url: String) -> String? {
        do throws(PostgresError) {
            _ = try PostgresURL.parameters(url)
            return nil
        } catch {
            return error.message
        }
    }

    /// A connection to this store, applying `migrations` (checking them for `.readOnly`).
    ///
    /// - Parameters:
    ///   - busyTimeoutMilliseconds: SQLite: how long a statement waits for another process's lock. PostgreSQL:
    ///     the connection's `statement_timeout` (and, a little lower, `lock_timeout`) when no deadline is given.
    ///   - deadlineMilliseconds: PostgreSQL: the request deadline, which bounds every statement instead.
    ///   - brief: SQLite: a connection for one short job (see `Database.init(path:...)`).
    ///   - access: whether the store may be created, and whether this connection writes.
    ///   - fileGroup: SQLite: `DATABASE_GROUP`.
    public func open(migrations: [Migration] = [], busyTimeoutMilliseconds: Int32 = 5000,
                     deadlineMilliseconds: Int? = nil, brief: Bool = false, access: Database.Access = .create,
                     fileGroup: gid_t? = nil) throws(DatabaseError) -> Database {
        switch self {
        case .sqlite(let path):
            return try Database(path: path, busyTimeoutMilliseconds: busyTimeoutMilliseconds, migrations: migrations,
                                brief: brief, access: access, fileGroup: fileGroup)
        case .postgres(let url, let passwordFile):
            return try Database.postgres(url: url, passwordFile: passwordFile, migrations: migrations, access: access,
                                         statementTimeoutMilliseconds: deadlineMilliseconds
                                            ?? Int(busyTimeoutMilliseconds))
        }
    }
}
