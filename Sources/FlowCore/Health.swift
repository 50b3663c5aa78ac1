#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Endpoint {
    /// `GET .../health` (alias `.../health/live`): 200 while the process serves. `GET .../health/ready`: 200 only
    /// when this worker could serve a flow that writes, else 503 with the reason. Both unencrypted and cheap, and
    /// neither names a secret or a file.
    func health(_ request: EndpointRequest, ready: Bool, worker: Worker,
                summary: inout RequestSummary) -> EndpointResponse {
        summary.route = ready ? "health/ready" : "health"
        guard request.method == "GET" || request.method == "HEAD" else {
            summary.reason = "method \(request.method) not allowed"
            return .text(405, summary.reason ?? "", extraHeaders: [("Allow", "GET, HEAD")])
        }
        guard ready else { return .text(200, "ok") }
        if let problem = Endpoint.readinessProblem(configuration: configuration, worker: worker) {
            summary.reason = "not ready: " + problem
            return .text(503, summary.reason ?? "")
        }
        return .text(200, "ready")
    }

    /// Why `worker` cannot serve right now, or `nil` when it can: keys loaded (always true once started), a
    /// database configured, its file still in place, and its write lock obtainable within the busy timeout
    /// (`BEGIN IMMEDIATE`, rolled back at once: nothing is written, so probing often costs no I/O).
    static func readinessProblem(configuration: Configuration, worker: Worker) -> String? {
        guard !configuration.keys.isEmpty, !worker.decryptors.isEmpty else { return "no private key loaded" }
        guard let database = worker.database else {
            return "no database configured (DATABASE_URL): flows cannot store their data"
        }
        // Writes to a deleted or moved file would go to an inode nobody will ever read again.
        var info = stat()
        guard stat(database.path, &info) == 0 else {
            return "the database file is missing (\(String(cString: strerror(errno))))"
        }
        // A file or folder made read-only (or a file system remounted read-only) fails only the next write, not
        // the lock: ask the kernel as well. (Root passes access(2) whatever the mode; a read-only mount it does not.)
        let folder = database.path.split(separator: "/", omittingEmptySubsequences: false).dropLast()
            .joined(separator: "/")
        if access(database.path, W_OK) != 0 {
            return "the database file is read-only (\(String(cString: strerror(errno))))"
        }
        if access(folder.isEmpty ? "/" : folder, W_OK) != 0 {
            return "the database folder is read-only (\(String(cString: strerror(errno))))"
        }
        var fs = statvfs()
        if statvfs(database.path, &fs) == 0 {
            if fs.f_flag & UInt(ST_RDONLY) != 0 { return "the database's file system is mounted read-only" }
            // A full disk fails every write with SQLITE_FULL, yet the lock is free. Root may use the reserved blocks.
            let free = (geteuid() == 0 ? fs.f_bfree : fs.f_bavail) * fs.f_frsize
            if free < 65536 { return "the database's file system is full (\(free) bytes free)" }
        }
        do {
            try database.writeTransaction(commit: false) { () throws(DatabaseError) in }
        } catch {
            return "the database is not writable: \(error.message) (SQLite code \(error.code))"
        }
        return nil
    }
}
