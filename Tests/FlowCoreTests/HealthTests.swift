import FlowCore
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("/health and /health/ready")
struct HealthTests {
    let directory = temporaryDirectory()
    var databasePath: String { directory + "/flows.db" }

    func endpoint(database: Bool = true) throws -> Endpoint {
        try makeEndpoint(extra: database
            ? ["DATABASE_URL": "sqlite:" + databasePath, "DATABASE_BUSY_TIMEOUT_MS": "50"] : [:])
    }

    func get(_ endpoint: Endpoint, _ path: String, worker: Worker, method: String = "GET") -> EndpointResponse {
        endpoint.handle(EndpointRequest(method: method, path: path, params: [], body: []), worker: worker)
    }

    func text(_ response: EndpointResponse) -> String {
        String(decoding: response.body, as: UTF8.self)
    }

    @Test func readyWhenTheDatabaseIsWritable() throws {
        let endpoint = try endpoint()
        let worker = try Worker(configuration: endpoint.configuration)
        defer { worker.close() }
        let ready = get(endpoint, "/flows-fcgi/health/ready", worker: worker)
        #expect(ready.status == 200 && text(ready) == "ready\n")
        #expect(get(endpoint, "/health/ready", worker: worker, method: "HEAD").status == 200)
        let post = get(endpoint, "/health/ready", worker: worker, method: "POST")
        #expect(post.status == 405 && post.header("Allow") == "GET, HEAD")
    }

    @Test func notReadyWhileAnotherConnectionHoldsTheWriteLockThenReadyAgain() throws {
        let endpoint = try endpoint()
        let worker = try Worker(configuration: endpoint.configuration)
        defer { worker.close() }
        let other = try Database(path: databasePath)
        defer { other.close() }
        try other.execute("BEGIN IMMEDIATE")

        let busy = get(endpoint, "/x/health/ready", worker: worker)
        #expect(busy.status == 503)
        #expect(text(busy).hasPrefix("not ready: the database is not writable: database is locked"))
        #expect(!text(busy).contains(databasePath), "the answer names no file")
        // Liveness does not depend on the database.
        #expect(get(endpoint, "/x/health", worker: worker).status == 200)
        #expect(get(endpoint, "/x/health/live", worker: worker).status == 200)

        try other.execute("ROLLBACK")
        #expect(get(endpoint, "/x/health/ready", worker: worker).status == 200)
        // The probe left no transaction open on the worker's connection.
        try worker.database?.execute("BEGIN IMMEDIATE; ROLLBACK")
    }

    @Test func notReadyWhenTheDatabaseFileIsGone() throws {
        let endpoint = try endpoint()
        let worker = try Worker(configuration: endpoint.configuration)
        defer { worker.close() }
        for suffix in ["", "-wal", "-shm"] { unlink(databasePath + suffix) }
        let gone = get(endpoint, "/health/ready", worker: worker)
        #expect(gone.status == 503)
        #expect(text(gone).hasPrefix("not ready: the database file is missing"))
    }

    @Test func notReadyWithoutADatabase() throws {
        let endpoint = try endpoint(database: false)
        let worker = try Worker(configuration: endpoint.configuration)
        let response = get(endpoint, "/health/ready", worker: worker)
        #expect(response.status == 503 && text(response).contains("DATABASE_URL"))
        #expect(get(endpoint, "/health", worker: worker).status == 200)
    }

    @Test func onlyHealthReadyIsTheReadinessRoute() throws {
        let endpoint = try endpoint(database: false)
        let worker = try Worker(configuration: endpoint.configuration)
        #expect(get(endpoint, "/ready", worker: worker).status == 404)
        #expect(get(endpoint, "/health/ready/x", worker: worker).status == 404)
    }
}
