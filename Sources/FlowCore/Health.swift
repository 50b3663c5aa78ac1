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
    /// database configured, and its connection able to write (`Database.readinessProblem`: for SQLite the file
    /// in place and its write lock obtainable; for PostgreSQL the server answering).
    static func readinessProblem(configuration: Configuration, worker: Worker) -> String? {
        guard !configuration.keys.isEmpty, !worker.decryptors.isEmpty else { return "no private key loaded" }
        guard let database = worker.database else {
            return "no database configured (DATABASE_URL): flows cannot store their data"
        }
        return database.readinessProblem()
    }
}
