import FlowStorePostgres

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Why a test server could not be started or controlled (the command, its exit status and its output).
public struct TestServerError: Error, Sendable, CustomStringConvertible {
    /// What failed.
    public let description: String
}

/// A throwaway PostgreSQL server for the tests: `initdb` into a new folder under /tmp, listening on a free port of
/// 127.0.0.1 and on a unix socket in that folder, scram-sha-256 everywhere, a role `flows` with a password owning a
/// database `flows`. Run as the `postgres` system user (`runuser -u postgres --`) when the tests run as root, as
/// the current user otherwise. The system cluster and /etc/postgresql are never touched.
public final class PostgresTestServer: Sendable {
    /// The folder holding everything (data, socket, logs).
    public let directory: String
    /// The TCP port on 127.0.0.1.
    public let port: Int
    /// The `flows` role's password.
    public let password: String
    private let superPassword: String
    private let binaries: String

    /// `postgresql://flows:PASSWORD@127.0.0.1:PORT/flows`.
    public var url: String { "postgresql://flows:\(password)@127.0.0.1:\(port)/flows" }
    /// The unix socket folder.
    public var socketDirectory: String { directory + "/socket" }

    /// The folder of `initdb` and `pg_ctl`: `PG_BINDIR`, else the newest /usr/lib/postgresql/N/bin.
    public static var binaries: String? {
        if let configured = getenv("PG_BINDIR") { return String(cString: configured) }
        guard let folder = opendir("/usr/lib/postgresql") else { return nil }
        defer { closedir(folder) }
        var best: Int?
        while let entry = readdir(folder) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            if let version = Int(name), access("/usr/lib/postgresql/\(name)/bin/pg_ctl", X_OK) == 0,
                version > best ?? 0
            {
                best = version
            }
        }
        return best.map { "/usr/lib/postgresql/\($0)/bin" }
    }

    /// Whether a server can be started here. Under `CI=true` always true, so a machine that cannot start one
    /// fails the tests loudly instead of skipping them.
    public static var canStart: Bool {
        if let ci = getenv("CI"), String(cString: ci) == "true" { return true }
        guard let binaries, access(binaries + "/pg_ctl", X_OK) == 0 else { return false }
        return getuid() != 0 || getpwnam("postgres") != nil
    }

    /// Creates and starts a new server.
    public init() throws(TestServerError) {
        guard let binaries = PostgresTestServer.binaries else {
            throw TestServerError(description: "no PostgreSQL server binaries (install Debian's postgresql package, "
                + "or set PG_BINDIR)")
        }
        self.binaries = binaries
        port = try PostgresTestServer.freePort()
        password = "flows-" + String(UInt64.random(in: .min ... .max), radix: 36)
        superPassword = "super-" + String(UInt64.random(in: .min ... .max), radix: 36)
        var template = Array("/tmp/flows-pg-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw TestServerError(description: "mkdtemp: \(String(cString: strerror(errno)))")
        }
        directory = String(cString: made)
        do throws(TestServerError) {
            try create()
        } catch {
            destroy()
            throw error
        }
    }

    /// initdb, start, the role and the database.
    private func create() throws(TestServerError) {
        mkdir(directory + "/socket", 0o700)
        try PostgresTestServer.write(directory + "/superpassword", superPassword + "\n")
        if getuid() == 0 {
            guard let user = getpwnam("postgres") else {
                throw TestServerError(description: "running as root and there is no postgres system user")
            }
            for path in [directory, directory + "/socket", directory + "/superpassword"] {
                chown(path, user.pointee.pw_uid, user.pointee.pw_gid)
            }
        }
        try run(["\(binaries)/initdb", "-D", directory + "/data", "-U", "postgres",
                 "--pwfile=\(directory)/superpassword", "--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "-N"])
        try start()
        let admin: PostgresConnection
        do {
            admin = try PostgresConnection(
                url: "postgresql://postgres:\(superPassword)@127.0.0.1:\(port)/postgres")
            try admin.execute("CREATE ROLE flows LOGIN PASSWORD '\(password)'")
            try admin.execute("CREATE DATABASE flows OWNER flows")
        } catch {
            throw TestServerError(description: "creating the role and database: \(error)")
        }
        admin.close()
    }

    /// A new empty database owned by `flows` on this server, and its URL: tests that each need a schema of their
    /// own (migrations, flows) use one each, so they run in parallel on the shared server.
    public func freshDatabase() throws(TestServerError) -> String {
        let name = "t_" + String(UInt64.random(in: .min ... .max), radix: 36)
        do {
            let admin = try PostgresConnection(
                url: "postgresql://postgres:\(superPassword)@127.0.0.1:\(port)/postgres")
            defer { admin.close() }
            try admin.execute("CREATE DATABASE \(name) OWNER flows")
        } catch {
            throw TestServerError(description: "creating database \(name): \(error)")
        }
        return "postgresql://flows:\(password)@127.0.0.1:\(port)/\(name)"
    }

    /// Starts the (stopped) server and waits until it accepts connections.
    public func start() throws(TestServerError) {
        try run(["\(binaries)/pg_ctl", "-D", directory + "/data", "-l", directory + "/server.log", "-w", "-t", "60",
                 "-o", "-p \(port) -k \(socketDirectory) -c listen_addresses=127.0.0.1 -c fsync=off", "start"])
    }

    /// Stops the server: `fast` (clients disconnected, a clean shutdown) or `immediate` (every server process
    /// quits at once, as in a crash; the next start recovers from the WAL).
    public func stop(immediate: Bool = false) throws(TestServerError) {
        try run(["\(binaries)/pg_ctl", "-D", directory + "/data", "-m", immediate ? "immediate" : "fast", "-w",
                 "stop"])
    }

    /// Stops the server if it runs and removes its folder.
    public func destroy() {
        if access(directory + "/data/postmaster.pid", F_OK) == 0 { try? stop(immediate: true) }
        _ = try? spawn(["/bin/rm", "-rf", directory], asServerUser: false)
    }

    /// Runs `arguments` as the server's user; fails with the command's output when it exits non-zero.
    private func run(_ arguments: [String]) throws(TestServerError) {
        let (status, output) = try spawn(arguments, asServerUser: getuid() == 0)
        guard status == 0 else {
            throw TestServerError(description: "\(arguments.joined(separator: " ")) exited with \(status): \(output)")
        }
    }

    private func spawn(_ arguments: [String], asServerUser: Bool) throws(TestServerError) -> (Int32, String) {
        // The server user may not enter the folder the tests run in: its commands start in /tmp.
        let command = (asServerUser ? ["/usr/sbin/runuser", "-u", "postgres", "--"] : [])
            + ["/usr/bin/env", "-C", "/tmp"] + arguments
        let log = directory + ".command.out"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv = command.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, command[0], &actions, nil, argv, environ)
        guard rc == 0 else {
            throw TestServerError(description: "posix_spawn \(command[0]): \(String(cString: strerror(rc)))")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        let output = (try? PostgresTestServer.read(log)) ?? ""
        unlink(log)
        // WIFEXITED / WEXITSTATUS are macros: the exit code is in bits 8-15, a signal in the low 7 bits.
        return ((status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f), output)
    }

    /// A TCP port of 127.0.0.1 nothing listens on (free when asked).
    public static func freePort() throws(TestServerError) -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound else { throw TestServerError(description: "no free port: \(String(cString: strerror(errno)))") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Writes `text` to a new file `path` with mode 0600.
    public static func write(_ path: String, _ text: String) throws(TestServerError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw TestServerError(description: "\(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        guard bytes.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) == bytes.count else {
            throw TestServerError(description: "\(path): short write")
        }
    }

    public static func read(_ path: String) throws(TestServerError) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw TestServerError(description: "\(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes += chunk[..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// The server most tests share, started on first use and removed when the test process exits.
public enum SharedPostgres {
    private static let server: Result<PostgresTestServer, TestServerError> = {
        do throws(TestServerError) {
            let server = try PostgresTestServer()
            atexit { if case .success(let server) = SharedPostgres.server { server.destroy() } }
            return .success(server)
        } catch {
            return .failure(error)
        }
    }()

    /// The shared server; a failure to start it fails the calling test with the reason.
    public static func get() throws(TestServerError) -> PostgresTestServer { try server.get() }
}
