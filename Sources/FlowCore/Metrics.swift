#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

import CFlowsSQLite
import FlowStorePostgres
import Synchronization

/// Operational settings: log format, recycling, request deadline and the metrics folder.
public struct RuntimeSettings: Sendable {
    /// The setting names read here.
    public static let settingNames = ["LOG_FORMAT", "MAX_REQUESTS", "REQUEST_DEADLINE_MS", "METRICS_DIR"]

    /// `LOG_FORMAT`: text (default) or json.
    public let logFormat: LogFormat
    /// `MAX_REQUESTS`: a serving process exits with status 0 after this many requests; 0 means never.
    public let maxRequests: Int
    /// `REQUEST_DEADLINE_MS`: past this, a request's SQLite work is interrupted and it is answered 503.
    public let requestDeadlineMilliseconds: Int
    /// The host-local folder of the per-process metrics files (see `metricsDirectory(_:)`); nil: none.
    public let metricsDirectory: String?

    /// Reads and checks the settings.
    public init(settings: Settings) throws(ConfigError) {
        switch settings["LOG_FORMAT"]?.lowercased() ?? "text" {
        case "text": logFormat = .text
        case "json": logFormat = .json
        default: throw ConfigError(setting: "LOG_FORMAT", value: settings["LOG_FORMAT"] ?? "", "expected text or json")
        }
        maxRequests = try settings.integer("MAX_REQUESTS", default: 0, range: 0...1_000_000_000)
        requestDeadlineMilliseconds = try settings.integer("REQUEST_DEADLINE_MS", default: 8000, range: 100...600_000)
        metricsDirectory = try RuntimeSettings.metricsDirectory(settings)
    }

    /// The metrics folder: `METRICS_DIR` (an absolute path), else `<database file>.metrics` beside a SQLite
    /// database, else none (each process then counts only itself, in memory). The one place that decides it: a
    /// store without a local file (a database server) will need `METRICS_DIR` or a host-local default here.
    public static func metricsDirectory(_ settings: Settings) throws(ConfigError) -> String? {
        if let directory = settings["METRICS_DIR"] {
            guard directory.hasPrefix("/") else {
                throw ConfigError("METRICS_DIR=\(directory): give an absolute path, e.g. /var/lib/flows-fcgi/metrics")
            }
            return directory
        }
        return try Configuration.databasePath(settings).map { $0 + ".metrics" }
    }
}

/// Monotonic time in nanoseconds (vDSO: no system call).
public func monotonicNanoseconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
}

/// How many times a SQLite busy handler of this process waited for another connection's lock.
let sqliteBusyRetries = Atomic<Int>(0)

/// This process's PostgreSQL counters (every `PostgresStore` of the process adds to them), published in the
/// metrics file's header and on `/metrics`, in the order of the cases.
enum PostgresCounter: Int, CaseIterable {
    /// Connections that served again after the server was unreachable or the connection lost.
    case reconnects
    /// Statements and connection attempts that failed because the server was unreachable, starting up or shutting
    /// down, or the connection was lost.
    case connectionFailures
    /// Statements ended by `statement_timeout` or cancelled at the request deadline.
    case statementTimeouts
    /// Lock waits ended by `lock_timeout`.
    case lockTimeouts
    /// Write transactions run again after losing a race (serialization failure, deadlock, unique key taken).
    case conflictRetries

    private static let reconnectCount = Atomic<Int>(0)
    private static let connectionFailureCount = Atomic<Int>(0)
    private static let statementTimeoutCount = Atomic<Int>(0)
    private static let lockTimeoutCount = Atomic<Int>(0)
    private static let conflictRetryCount = Atomic<Int>(0)
    /// Set once a PostgreSQL store exists in this process: only then does a request publish the counters.
    static let inUse = Atomic<Bool>(false)

    /// Counts one more.
    func add() {
        switch self {
        case .reconnects: PostgresCounter.reconnectCount.add(1, ordering: .relaxed)
        case .connectionFailures: PostgresCounter.connectionFailureCount.add(1, ordering: .relaxed)
        case .statementTimeouts: PostgresCounter.statementTimeoutCount.add(1, ordering: .relaxed)
        case .lockTimeouts: PostgresCounter.lockTimeoutCount.add(1, ordering: .relaxed)
        case .conflictRetries: PostgresCounter.conflictRetryCount.add(1, ordering: .relaxed)
        }
    }

    /// This process's count so far.
    var value: Int {
        switch self {
        case .reconnects: PostgresCounter.reconnectCount.load(ordering: .relaxed)
        case .connectionFailures: PostgresCounter.connectionFailureCount.load(ordering: .relaxed)
        case .statementTimeouts: PostgresCounter.statementTimeoutCount.load(ordering: .relaxed)
        case .lockTimeouts: PostgresCounter.lockTimeoutCount.load(ordering: .relaxed)
        case .conflictRetries: PostgresCounter.conflictRetryCount.load(ordering: .relaxed)
        }
    }

    /// The `/metrics` name and help text.
    var family: (name: String, help: String) {
        switch self {
        case .reconnects:
            ("flows_postgres_reconnects_total", "PostgreSQL connections that served again after a failure.")
        case .connectionFailures:
            ("flows_postgres_connection_failures_total",
             "PostgreSQL calls that failed: server unreachable, starting or stopping, or connection lost.")
        case .statementTimeouts:
            ("flows_postgres_statement_timeouts_total",
             "PostgreSQL statements ended by statement_timeout or cancelled at the request deadline.")
        case .lockTimeouts: ("flows_postgres_lock_timeouts_total", "PostgreSQL lock waits ended by lock_timeout.")
        case .conflictRetries:
            ("flows_postgres_conflict_retries_total", "PostgreSQL write transactions run again after losing a race.")
        }
    }
}

/// One request series: the labels of `flows_requests_total`.
struct RequestSeries: Hashable {
    let flow: String
    let action: String
    let status: Int
}

/// The latency histogram's buckets.
enum DurationHistogram {
    /// Upper bounds in microseconds; the last bucket (`+Inf`) is implicit.
    static let boundsMicros = [5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
                               5_000_000, 10_000_000]
    /// The same bounds as Prometheus `le` labels.
    static let boundLabels = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"]
}

/// One worker thread's handle on the process's counters, and what the watchdog needs of its request in flight.
///
/// Counting is a relaxed atomic add into the process's mapped table: no lock, no system call. The slot of a series
/// is looked up in a dictionary only this worker thread touches; a series seen for the first time takes a slot
/// under the table's lock.
public final class MetricsSlot: @unchecked Sendable {
    private let table: MetricsTable
    /// Series -> slot in `table`; touched by the owning worker thread only.
    private var indexes: [RequestSeries: Int] = [:]
    /// Monotonic start of the request in flight (nanoseconds), 0 when idle.
    let requestStart = Atomic<Int64>(0)
    /// Set by the watchdog when it interrupted the request in flight.
    let interrupted = Atomic<Bool>(false)
    /// The worker's SQLite handle (as a bit pattern) while it may be interrupted; 0 once closed.
    let connection = Mutex<UInt>(0)
    /// The worker's PostgreSQL canceller, when its store is PostgreSQL (set once, before serving).
    let canceller = Mutex<PostgresCanceller?>(nil)

    init(table: MetricsTable) { self.table = table }

    func record(flow: String, action: String, status: Int, micros: Int) {
        let series = RequestSeries(flow: flow, action: action, status: status)
        let index: Int
        if let known = indexes[series] {
            index = known
        } else {
            index = table.index(for: series)
            indexes[series] = index
        }
        table.record(index, micros: micros)
        table.raiseBusyRetries(to: sqliteBusyRetries.load(ordering: .relaxed))
        if PostgresCounter.inUse.load(ordering: .relaxed) { table.raisePostgresCounters() }
    }

    /// Interrupts the database work of the request in flight if it started at `started` and is still running.
    func interrupt(ifStartedAt started: Int64) {
        connection.withLock { bits in
            guard bits != 0, requestStart.load(ordering: .acquiring) == started else { return }
            interrupted.store(true, ordering: .releasing)
            sqlite3_interrupt(OpaquePointer(bitPattern: bits))
        }
        // PostgreSQL: the server cancels the statement (it fails with 57014: 503). A request that finished
        // meanwhile may see its next request's statement cancelled; the check just before makes that rare.
        guard let canceller = canceller.withLock({ $0 }), requestStart.load(ordering: .acquiring) == started else {
            return
        }
        interrupted.store(true, ordering: .releasing)
        canceller.cancelRunningStatement()
    }
}

/// The counters of one process: a table in its own file of the host's metrics folder (see `MetricsFolder`), so
/// that `/metrics` answered by any process sums every process of the host at once, dead ones included; or, without
/// a folder, in memory (counting this process only).
public final class Metrics: Sendable {
    /// The unique id of this process start (its file is `p-<instance>`).
    public let instance: String
    /// This process's id, read once (getpid is a system call).
    public let pid: Int32
    /// The metrics folder, nil when counting in memory only.
    public let directory: String?
    let table: MetricsTable
    /// The descriptor holding this process's file and its lock; -1 without a file or once retired.
    private let file: Mutex<Int32>
    private let slots = Mutex<[MetricsSlot]>([])
    private let requestNumber = Atomic<Int>(0)

    /// Counters in memory only; `instance` is unique unless given (tests).
    public init(instance: String? = nil) {
        pid = getpid()
        self.instance = instance ?? Metrics.randomInstance(pid: pid)
        directory = nil
        table = MetricsTable()
        file = Mutex(-1)
    }

    /// Counters in a new file of `directory` (created 0700 if missing), locked until `retire()` or the process
    /// ends; `instance` is unique unless given (tests).
    public init(directory: String, instance: String? = nil) throws(MetricsError) {
        pid = getpid()
        self.instance = instance ?? Metrics.randomInstance(pid: pid)
        self.directory = directory
        let (fd, table) = try MetricsFolder.createProcessFile(directory, instance: self.instance)
        self.table = table
        file = Mutex(fd)
    }

    deinit { retire() }

    /// The `metrics_counters` table of earlier versions (which flushed counters into the database): kept so that
    /// existing databases and their migration history stay as they are; nothing writes it any more.
    public static let migrations = [
        Migration(id: "metrics-1", sqlite: """
            CREATE TABLE metrics_counters (
                instance TEXT NOT NULL,
                series TEXT NOT NULL,
                value INTEGER NOT NULL,
                updated_at INTEGER NOT NULL,
                PRIMARY KEY (instance, series)
            ) WITHOUT ROWID
            """, postgres: """
            CREATE TABLE metrics_counters (
                instance text NOT NULL,
                series text NOT NULL,
                value bigint NOT NULL,
                updated_at bigint NOT NULL,
                PRIMARY KEY (instance, series)
            )
            """)
    ]

    /// Unique per process start without a system call: the pid and the wall clock in nanoseconds (a pid cannot
    /// start twice in the same nanosecond), plus the monotonic clock's low bits.
    private static func randomInstance(pid: Int32) -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let wall = String(Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec), radix: 36)
        return "\(pid)-\(wall)-\(String(monotonicNanoseconds() & 0xFFFFF, radix: 36))"
    }

    /// Creates the metrics folder `directory` (mode 0700) unless it exists, and checks it can be written.
    public static func prepare(directory: String) throws(MetricsError) { try MetricsFolder.prepare(directory) }

    /// A slot for one more worker thread.
    func makeSlot() -> MetricsSlot {
        let slot = MetricsSlot(table: table)
        slots.withLock { $0.append(slot) }
        return slot
    }

    /// Counts one more request and returns its number in this process (from 1).
    public func nextRequestNumber() -> Int { requestNumber.add(1, ordering: .relaxed).newValue }

    /// Requests started in this process so far.
    public var requestCount: Int { requestNumber.load(ordering: .relaxed) }

    /// Interrupts every request running for longer than `deadlineMilliseconds` (called by a watchdog thread).
    public func interruptOverdue(deadlineMilliseconds: Int) {
        let now = monotonicNanoseconds()
        for slot in slots.withLock({ $0 }) {
            let started = slot.requestStart.load(ordering: .acquiring)
            if started != 0, now - started > Int64(deadlineMilliseconds) * 1_000_000,
                !slot.interrupted.load(ordering: .acquiring)
            {
                slot.interrupt(ifStartedAt: started)
            }
        }
    }

    /// Ends counting into the file (when the process is done serving): its lock is dropped, so the next compaction
    /// folds it into the accumulated file. Counts recorded afterwards are not seen.
    public func retire() {
        file.withLock { fd in
            guard fd >= 0 else { return }
            // Unlocked explicitly: the mapping keeps the open file (and so its lock) alive after close.
            flock(fd, LOCK_UN)
            close(fd)
            fd = -1
        }
    }

    /// After `retire()`: folds the files of exited processes (this one's included) into the accumulated file when
    /// at least `minimumFiles` process files are there and no scrape or compaction is running elsewhere.
    public func compact(minimumFiles: Int = 0) throws(MetricsError) {
        guard let directory else { return }
        _ = try MetricsFolder.collect(directory, read: false, wait: false, minimumFiles: minimumFiles)
    }

    /// The counts of every process of the host (this process only without a folder), folding exited processes'
    /// files first.
    func hostTotals() throws(MetricsError) -> MetricsTotals {
        guard let directory else { return table.totals() }
        return try MetricsFolder.collect(directory, read: true) ?? MetricsTotals()
    }

    /// This process's series, named as on `/metrics` (histograms cumulative).
    func snapshot() -> [String: Int] { table.totals().seriesValues() }
}

extension MetricsTotals {
    /// Every series named as on `/metrics` with its value (histograms cumulative, sums in microseconds).
    func seriesValues() -> [String: Int] {
        var values: [String: Int] = [:]
        var durations: [String: SeriesCounts] = [:]
        for (key, counts) in series {
            let flow = MetricsText.escape(key.flow)
            let count = counts.count
            values["flows_requests_total{flow=\"\(flow)\",action=\"\(MetricsText.escape(key.action))\","
                + "status=\"\(key.status)\"}", default: 0] += count
            if key.status == 421 {
                values["flows_decryption_failures_total{flow=\"\(flow)\"}", default: 0] += count
            }
            if key.status == 432 || (key.status == 401 && key.flow == "webhook") {
                values["flows_signature_failures_total{flow=\"\(flow)\"}", default: 0] += count
            }
            durations[key.flow, default: SeriesCounts()] += counts
        }
        for (flow, histogram) in durations {
            let label = "flow=\"\(MetricsText.escape(flow))\""
            var cumulative = 0
            for (i, le) in DurationHistogram.boundLabels.enumerated() {
                cumulative += histogram.buckets[i]
                values["flows_request_duration_seconds_bucket{\(label),le=\"\(le)\"}"] = cumulative
            }
            values["flows_request_duration_seconds_count{\(label)}"] = cumulative
            values["flows_request_duration_microseconds_sum{\(label)}"] = histogram.sumMicros
        }
        values["flows_sqlite_busy_retries_total"] = busyRetries
        for counter in PostgresCounter.allCases { values[counter.family.name] = postgres[counter.rawValue] }
        return values
    }
}

/// The Prometheus text exposition format (0.0.4).
enum MetricsText {
    /// The content type of the answer.
    static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// Escapes a label value: backslash, double quote and newline.
    static func escape(_ value: String) -> String {
        guard value.utf8.contains(where: { $0 == 0x5C || $0 == 0x22 || $0 == 0x0A }) else { return value }
        var out = ""
        for character in value.unicodeScalars {
            switch character {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(character)
            }
        }
        return out
    }

    private static let families: [(name: String, type: String, help: String)] = [
        ("flows_requests_total", "counter", "Requests answered, by flow or route, action and HTTP status."),
        ("flows_decryption_failures_total", "counter", "Flow requests that could not be decrypted (421)."),
        ("flows_signature_failures_total", "counter", "Requests with a missing or wrong signature (432, 401)."),
        ("flows_request_duration_seconds", "histogram", "Time from request to answer inside the responder."),
        ("flows_sqlite_busy_retries_total", "counter", "Times a SQLite statement waited for another lock."),
    ] + PostgresCounter.allCases.map { ($0.family.name, "counter", $0.family.help) }

    /// Renders `totals` (series -> value summed over every process) and the row counts of `tables` (name, help,
    /// value), typed gauge: retention purges rows, so they can go down.
    static func render(_ totals: [String: Int], tables: [(String, String, Int64)]) -> String {
        var out = ""
        let sortedKeys = totals.keys.sorted()  // once, not once per family
        for family in families {
            out += "# HELP \(family.name) \(family.help)\n# TYPE \(family.name) \(family.type)\n"
            if family.type == "histogram" {
                let prefix = "flows_request_duration_seconds_count{"
                let labelSets = totals.keys.filter { $0.hasPrefix(prefix) }
                    .map { String($0.dropFirst(prefix.count).dropLast()) }.sorted()
                for labels in labelSets {
                    for le in DurationHistogram.boundLabels {
                        let key = "flows_request_duration_seconds_bucket{\(labels),le=\"\(le)\"}"
                        out += "\(key) \(totals[key] ?? 0)\n"
                    }
                    let micros = totals["flows_request_duration_microseconds_sum{\(labels)}"] ?? 0
                    out += "flows_request_duration_seconds_sum{\(labels)} \(seconds(micros))\n"
                    out += "flows_request_duration_seconds_count{\(labels)} \(totals[prefix + labels + "}"] ?? 0)\n"
                }
            } else {
                for key in sortedKeys where key == family.name || key.hasPrefix(family.name + "{") {
                    out += "\(key) \(totals[key]!)\n"
                }
            }
        }
        // A labelled gauge (`flows_submissions_total{flow="x"}`) is one family: described once, its series together.
        var families: [Substring] = []
        var series: [Substring: [(String, String, Int64)]] = [:]
        for table in tables {
            let family = table.0.prefix { $0 != "{" }
            if series[family] == nil { families.append(family) }
            series[family, default: []].append(table)
        }
        for family in families {
            let members = series[family] ?? []
            out += "# HELP \(family) \(members.first?.1 ?? "")\n# TYPE \(family) gauge\n"
            for (name, _, value) in members { out += "\(name) \(value)\n" }
        }
        return out
    }

    /// Microseconds as decimal seconds, e.g. `1.000250`.
    static func seconds(_ micros: Int) -> String {
        let fraction = String(micros % 1_000_000)
        return "\(micros / 1_000_000)." + String(repeating: "0", count: 6 - fraction.count) + fraction
    }
}

extension Endpoint {
    /// `.../metrics`: Prometheus text, behind the API token, no query parameters: the counters of every process
    /// of the host (its metrics folder) and the row counts of the database.
    func metrics(_ request: EndpointRequest, worker: Worker, summary: inout RequestSummary) -> EndpointResponse {
        summary.route = "metrics"
        if let (status, message, headers) = apiTokenProblem(request) {
            summary.reason = message
            return .text(status, message, extraHeaders: headers)
        }
        guard request.method == "GET" || request.method == "HEAD" else {
            summary.reason = "method \(request.method) not allowed"
            return .text(405, summary.reason!, extraHeaders: [("Allow", "GET")])
        }
        do {
            _ = try ReadParameters(request, allowed: [])
        } catch {
            summary.reason = error.message
            return .text(400, error.message)
        }
        let totals: MetricsTotals
        do {
            totals = try worker.metrics.hostTotals()
        } catch {
            log.error("metrics failed", ["error": error.description])
            summary.reason = "metrics folder unavailable"
            return .text(503, "metrics unavailable, try again later")
        }
        var tables: [(String, String, Int64)] = []
        if let database = worker.database {
            do {
                func count(_ table: String) throws(DatabaseError) -> Int64 {
                    try database.query("SELECT count(*) FROM \(table)").first?.first?.int ?? 0
                }
                let now = "in the database now (purge removes old ones)."
                for flow in configuration.servedFlows {
                    for gauge in flow.gauges {
                        tables.append((gauge.name, gauge.help, try database.query(gauge.query).first?.first?.int ?? 0))
                    }
                }
                tables.append(("flows_webhook_messages_total", "Webhook messages \(now)",
                               try count("webhook_messages")))
            } catch {
                log.error("metrics failed", ["error": error.description])
                summary.reason = "storage unavailable"
                return .text(503, "storage unavailable, try again later")
            }
        }
        let body = MetricsText.render(totals.seriesValues(), tables: tables)
        return EndpointResponse(status: 200, headers: [("Content-Type", MetricsText.contentType)],
                                body: Array(body.utf8))
    }
}
