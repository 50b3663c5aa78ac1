#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization
import Testing
@testable import FlowCore

/// A flow that spends its time in SQLite until interrupted (for the request deadline).
struct SlowSQLFlow: Flow {
    let name = "slow"
    let migrations: [Migration] = []
    var sessionTable: String? { nil }

    func handle(_ request: FlowRequest, context: FlowContext) throws -> FlowAnswer {
        try context.database!.query("""
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000000000) SELECT count(*) FROM n
            """)
        return .screen("DONE", data: [:])
    }
}

/// One "responder process": a configuration, an endpoint and a worker counting in its own file of the metrics
/// folder (`<database>.metrics`, the default), under its own instance id.
final class MetricsProcess {
    let endpoint: Endpoint
    let worker: Worker
    let metrics: Metrics

    init(directory: String, instance: String, extra: [String: String] = [:], flows: [FlowFactory]? = nil) throws {
        var values = ["APP_SECRET": "secret", "PRIVATE_KEY_FILE": fixturesDirectory + "/keys/pkcs8.pem",
                      "DATABASE_URL": "sqlite:\(directory)/flows.db", "API_TOKEN": webhookAPIToken]
        for (key, value) in extra { values[key] = value }
        let configuration = try Configuration(settings: Settings(values),
                                              flows: flows ?? [AppointmentFlow.factory, ExpenseFlow.factory])
        let logPath = directory + "/\(instance).log"
        endpoint = Endpoint(configuration: configuration,
                            log: Logger(level: .debug, sink: try LogSink.file(logPath),
                                        format: configuration.runtime.logFormat),
                            clock: { appointmentMonday })
        metrics = try Metrics(directory: configuration.runtime.metricsDirectory!, instance: instance)
        worker = try Worker(configuration: configuration, metrics: metrics)
    }

    deinit { worker.close() }

    func get(_ path: String, query: String? = nil,
             authorization: String? = "Bearer " + webhookAPIToken) -> EndpointResponse {
        var params: [(String, String)] = []
        if let query { params.append(("QUERY_STRING", query)) }
        if let authorization { params.append(("HTTP_AUTHORIZATION", authorization)) }
        return endpoint.handle(EndpointRequest(method: "GET", path: path, params: params, body: []), worker: worker)
    }
}

/// The samples of a Prometheus text answer: series (name and labels) -> value.
func samples(_ text: String) -> [String: Double] {
    var result: [String: Double] = [:]
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " ") else { continue }
        result[String(line[..<space])] = Double(line[line.index(after: space)...])
    }
    return result
}

@Suite struct MetricsTests {
    let directory = temporaryDirectory()

    @Test func countsFromTwoProcessesAreSummedAtOnce() throws {
        let a = try MetricsProcess(directory: directory, instance: "a")
        let b = try MetricsProcess(directory: directory, instance: "b")
        for _ in 0..<3 { #expect(a.get("/health").status == 200) }
        for _ in 0..<2 { #expect(b.get("/health").status == 200) }
        #expect(a.get("/flows/nosuchflow\"x").status == 404)
        // b answers at once, nothing flushed: it reads both processes' files.
        let response = b.get("/metrics")
        #expect(response.status == 200)
        #expect(response.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8")
        #expect(response.header("Cache-Control") == "no-store")
        #expect(response.header("X-Content-Type-Options") == "nosniff")
        let text = String(decoding: response.body, as: UTF8.self)
        let values = samples(text)
        #expect(values["flows_requests_total{flow=\"health\",action=\"-\",status=\"200\"}"] == 5)
        // The client's path does not become a label.
        #expect(values["flows_requests_total{flow=\"other\",action=\"-\",status=\"404\"}"] == 1)
        #expect(values["flows_request_duration_seconds_count{flow=\"health\"}"] == 5)
        #expect(values["flows_bookings_total"] == 0)
        #expect(values["flows_expenses_total"] == 0)
        #expect(values["flows_webhook_messages_total"] == 0)
        #expect(values["flows_sqlite_busy_retries_total"] != nil)
        #expect(text.contains("# TYPE flows_request_duration_seconds histogram\n"))
        #expect(text.contains("# TYPE flows_requests_total counter\n"))

        // a ends: its file is folded into the accumulated one at the next scrape, and keeps counting.
        a.metrics.retire()
        let folder = directory + "/flows.db.metrics"
        let again = samples(String(decoding: b.get("/metrics").body, as: UTF8.self))
        #expect(again["flows_requests_total{flow=\"health\",action=\"-\",status=\"200\"}"] == 5)
        #expect(again["flows_requests_total{flow=\"metrics\",action=\"-\",status=\"200\"}"] == 1)
        #expect(try folderNames(folder) == ["accumulated", "lock", "p-b"])
    }

    @Test func metricsRejectUnknownParametersAndReadAnswersAreNotCached() throws {
        let p = try MetricsProcess(directory: directory, instance: "q")
        let unknown = p.get("/metrics", query: "foo=1")
        #expect(unknown.status == 400)
        #expect(String(decoding: unknown.body, as: UTF8.self).contains("unknown parameter 'foo'"))
        #expect(p.get("/stats", query: "foo=1").status == 400)
        for (path, query, status) in [("/stats", nil, 200), ("/messages", "limit=2", 200), ("/messages", "x=1", 400),
                                      ("/bookings", nil, 200), ("/expenses", nil, 200), ("/metrics", nil, 200)] {
            let response = p.get(path, query: query)
            #expect(response.status == status, "\(path)")
            #expect(response.header("Cache-Control") == "no-store", "\(path)")
            #expect(response.header("X-Content-Type-Options") == "nosniff", "\(path)")
        }
        let unauthorized = p.get("/messages", authorization: nil)
        #expect(unauthorized.status == 401 && unauthorized.header("Cache-Control") == "no-store")
    }

    @Test func decryptionAndSignatureFailuresAreCounted() throws {
        let p = try MetricsProcess(directory: directory, instance: "p")
        let call = ClientCall(["version": "3.0", "action": "ping"])
        let unsigned = call.request(path: "/flows/expense", secret: "wrong")
        #expect(p.endpoint.handle(unsigned, worker: p.worker).status == 432)
        let foreign = ClientCall(["version": "3.0", "action": "ping"], for: TestKeys.pkcs1)
        #expect(p.endpoint.handle(foreign.request(path: "/flows/expense"), worker: p.worker).status == 421)
        #expect(p.endpoint.handle(call.request(path: "/flows/expense"), worker: p.worker).status == 200)
        let values = samples(String(decoding: p.get("/metrics").body, as: UTF8.self))
        #expect(values["flows_signature_failures_total{flow=\"expense\"}"] == 1)
        #expect(values["flows_decryption_failures_total{flow=\"expense\"}"] == 1)
        #expect(values["flows_requests_total{flow=\"expense\",action=\"ping\",status=\"200\"}"] == 1)
    }

    @Test func histogramBucketsAreCumulativeAndEndWithInf() throws {
        let metrics = Metrics(instance: "h")
        let slot = metrics.makeSlot()
        for micros in [1_000, 7_000, 7_000, 300_000, 20_000_000] {
            slot.record(flow: "x", action: "-", status: 200, micros: micros)
        }
        let text = MetricsText.render(metrics.snapshot(), tables: [])
        let lines = text.split(separator: "\n").filter { $0.hasPrefix("flows_request_duration_seconds") }
        let buckets = lines.filter { $0.contains("_bucket{") }
        #expect(buckets.count == DurationHistogram.boundLabels.count)
        #expect(buckets.first == "flows_request_duration_seconds_bucket{flow=\"x\",le=\"0.005\"} 1")
        #expect(buckets.last == "flows_request_duration_seconds_bucket{flow=\"x\",le=\"+Inf\"} 5")
        let counts = buckets.map { Int($0.split(separator: " ").last!)! }
        #expect(counts == counts.sorted())
        #expect(lines.contains("flows_request_duration_seconds_sum{flow=\"x\"} 20.315000"))
        #expect(lines.contains("flows_request_duration_seconds_count{flow=\"x\"} 5"))
    }

    @Test func gaugeSeriesWithLabelsShareTheirFamilysHelpAndType() {
        let text = MetricsText.render([:], tables: [
            ("flows_submissions_total{flow=\"a\"}", "Submissions.", 2), ("flows_bookings_total", "Bookings.", 5),
            ("flows_submissions_total{flow=\"b\"}", "Submissions.", 0),
        ])
        let lines = text.split(separator: "\n").map(String.init)
        #expect(!lines.contains { $0.hasPrefix("#") && $0.contains("{") })
        let start = lines.firstIndex(of: "# HELP flows_submissions_total Submissions.")
        #expect(start.map { Array(lines[$0...].prefix(4)) } == [
            "# HELP flows_submissions_total Submissions.", "# TYPE flows_submissions_total gauge",
            "flows_submissions_total{flow=\"a\"} 2", "flows_submissions_total{flow=\"b\"} 0",
        ])
        #expect(lines.filter { $0.hasPrefix("# TYPE flows_submissions_total") }.count == 1)
        #expect(lines.contains("flows_bookings_total 5"))
    }

    @Test func labelValuesAreEscaped() {
        #expect(MetricsText.escape("plain") == "plain")
        #expect(MetricsText.escape("a\"b\\c\nd") == "a\\\"b\\\\c\\nd")
        let metrics = Metrics(instance: "e")
        metrics.makeSlot().record(flow: "q\"", action: "-", status: 200, micros: 1)
        #expect(metrics.snapshot()["flows_requests_total{flow=\"q\\\"\",action=\"-\",status=\"200\"}"] == 1)
    }

    @Test func metricsNeedTheAPIToken() throws {
        let p = try MetricsProcess(directory: directory, instance: "t")
        #expect(p.get("/metrics", authorization: nil).status == 401)
        let wrong = p.get("/metrics", authorization: "Bearer wrong-token-0123456789")
        #expect(wrong.status == 401)
        #expect(wrong.header("WWW-Authenticate") == "Bearer")
        let disabled = try MetricsProcess(directory: directory, instance: "u", extra: ["API_TOKEN": ""])
        #expect(disabled.get("/metrics").status == 404)
    }

    @Test func jsonLogLinesParseAndCarryNoFlowToken() throws {
        let p = try MetricsProcess(directory: directory, instance: "j", extra: ["LOG_FORMAT": "json"])
        let token = "secret-flow-token-4711"
        let call = ClientCall(["version": "3.0", "action": "INIT", "screen": "", "data": [:],
                               "flow_token": .string(token)])
        #expect(p.endpoint.handle(call.request(path: "/flows/expense"), worker: p.worker).status == 200)
        var request = EndpointRequest(method: "GET", path: "/health", params: [("HTTP_X_REQUEST_ID", "abc-123")],
                                      body: [])
        #expect(p.endpoint.handle(request, worker: p.worker).status == 200)
        request.params = [("HTTP_X_REQUEST_ID", "bad id\"")]
        #expect(p.endpoint.handle(request, worker: p.worker).status == 200)
        p.endpoint.log.warning("quote \" backslash \\ newline \n tab \t", ["k": "v\u{1}"])
        let text = try readTextFile(directory + "/j.log", what: "log")
        #expect(!text.contains(token))
        let lines = text.split(separator: "\n")
        #expect(lines.count == 4)
        var ids: [String] = []
        for line in lines {
            let value = try JSONParser.parse(String(line))
            #expect(value["time"]?.stringValue != nil)
            #expect(value["level"]?.stringValue != nil)
            if value["msg"]?.stringValue == "request" {
                #expect(value["status"]?.stringValue == "200")
                ids.append(value["id"]?.stringValue ?? "")
            }
        }
        #expect(ids.count == 3)
        #expect(ids[1] == "abc-123")
        #expect(ids[2] == "\(p.metrics.pid)-3")
        #expect(try JSONParser.parse(String(lines[3]))["msg"]?.stringValue == "quote \" backslash \\ newline \n tab \t")
    }

    @Test func requestPastTheDeadlineIsInterruptedAnd503() throws {
        let factory = FlowFactory(name: "slow", settingNames: []) { _ in SlowSQLFlow() }
        let p = try MetricsProcess(directory: directory, instance: "d", extra: ["REQUEST_DEADLINE_MS": "200"],
                                   flows: [factory])
        let metrics = p.metrics
        let done = Mutex(false)
        let watchdog = Thread {
            while !done.withLock({ $0 }) {
                usleep(50_000)
                metrics.interruptOverdue(deadlineMilliseconds: 200)
            }
        }
        let call = ClientCall(["version": "3.0", "action": "INIT", "screen": "", "data": [:], "flow_token": "t"])
        let started = monotonicNanoseconds()
        let response = p.endpoint.handle(call.request(path: "/flows/slow"), worker: p.worker)
        done.withLock { $0 = true }
        watchdog.join()
        #expect(response.status == 503)
        #expect((monotonicNanoseconds() - started) < 5_000_000_000)
        // The worker's connection still works afterwards.
        #expect(p.get("/health/ready").status == 200)
    }

    @Test func busyWaitsAreCountedAndEndAtTheDeadline() throws {
        let path = directory + "/busy.db"
        let holder = try Database(path: path)
        defer { holder.close() }
        try holder.execute("CREATE TABLE t (x INTEGER); BEGIN IMMEDIATE; INSERT INTO t VALUES (1)")
        let waiter = try Database(path: path, busyTimeoutMilliseconds: 100)
        defer { waiter.close() }
        let before = sqliteBusyRetries.load(ordering: .relaxed)
        var started = monotonicNanoseconds()
        #expect(throws: DatabaseError.self) { try waiter.execute("BEGIN IMMEDIATE") }
        var waited = (monotonicNanoseconds() - started) / 1_000_000
        #expect(waited >= 90 && waited < 1000)
        #expect(sqliteBusyRetries.load(ordering: .relaxed) > before)

        // A request deadline shortens a long busy timeout.
        let patient = try Database(path: path, busyTimeoutMilliseconds: 10000)
        defer { patient.close() }
        started = monotonicNanoseconds()
        patient.deadline = started + 150_000_000
        #expect(throws: DatabaseError.self) { try patient.execute("BEGIN IMMEDIATE") }
        waited = (monotonicNanoseconds() - started) / 1_000_000
        #expect(waited >= 140 && waited < 1000)
        try holder.execute("COMMIT")
    }

    @Test func runtimeSettingsAreChecked() throws {
        let runtime = try RuntimeSettings(settings: Settings([:]))
        #expect(runtime.logFormat == .text && runtime.maxRequests == 0)
        #expect(runtime.requestDeadlineMilliseconds == 8000 && runtime.metricsDirectory == nil)
        let beside = try RuntimeSettings(settings: Settings(["DATABASE_URL": "sqlite:/var/lib/f/flows.db"]))
        #expect(beside.metricsDirectory == "/var/lib/f/flows.db.metrics")
        let given = try RuntimeSettings(settings: Settings(["DATABASE_URL": "sqlite:/var/lib/f/flows.db",
                                                           "METRICS_DIR": "/run/flows-fcgi"]))
        #expect(given.metricsDirectory == "/run/flows-fcgi")
        #expect(throws: ConfigError.self) { try RuntimeSettings(settings: Settings(["METRICS_DIR": "run/m"])) }

        // A config file of an earlier version still setting METRICS_FLUSH_SECONDS starts, with a warning.
        let file = directory + "/old.env"
        writeFile(file, "APP_SECRET=s\nPRIVATE_KEY_FILE=\(fixturesDirectory)/keys/pkcs8.pem\nMETRICS_FLUSH_SECONDS=5\n")
        let old = try Configuration(settings: Settings(environment: [:], file: file,
                                                       names: Configuration.allSettingNames))
        #expect(old.warnings == ["\(file): unknown setting METRICS_FLUSH_SECONDS (ignored)"])
        #expect(throws: ConfigError.self) { try RuntimeSettings(settings: Settings(["LOG_FORMAT": "xml"])) }
        #expect(throws: ConfigError.self) { try RuntimeSettings(settings: Settings(["MAX_REQUESTS": "-1"])) }
    }
}

/// A kernel thread for tests.
final class Thread {
    private var thread = pthread_t()

    init(_ body: @escaping @Sendable () -> Void) {
        final class Box: Sendable {
            let body: @Sendable () -> Void
            init(_ body: @escaping @Sendable () -> Void) { self.body = body }
        }
        let context = Unmanaged.passRetained(Box(body)).toOpaque()
        pthread_create(&thread, nil, { raw in
            Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
            return nil
        }, context)
    }

    func join() { pthread_join(thread, nil) }
}
