#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

import CFlowsSQLite
import Synchronization

/// Operational settings: log format, recycling, request deadline and metrics flushing.
public struct RuntimeSettings: Sendable {
    /// The setting names read here.
    public static let settingNames = ["LOG_FORMAT", "MAX_REQUESTS", "REQUEST_DEADLINE_MS", "METRICS_FLUSH_SECONDS"]

    /// `LOG_FORMAT`: text (default) or json.
    public let logFormat: LogFormat
    /// `MAX_REQUESTS`: a serving process exits with status 0 after this many requests; 0 means never.
    public let maxRequests: Int
    /// `REQUEST_DEADLINE_MS`: past this, a request's SQLite work is interrupted and it is answered 503.
    public let requestDeadlineMilliseconds: Int
    /// `METRICS_FLUSH_SECONDS`: how often each process writes its counters to the database.
    public let metricsFlushSeconds: Int

    /// Reads and checks the settings.
    public init(settings: Settings) throws(ConfigError) {
        switch settings["LOG_FORMAT"]?.lowercased() ?? "text" {
        case "text": logFormat = .text
        case "json": logFormat = .json
        default: throw ConfigError(setting: "LOG_FORMAT", value: settings["LOG_FORMAT"] ?? "", "expected text or json")
        }
        maxRequests = try settings.integer("MAX_REQUESTS", default: 0, range: 0...1_000_000_000)
        requestDeadlineMilliseconds = try settings.integer("REQUEST_DEADLINE_MS", default: 8000, range: 100...600_000)
        metricsFlushSeconds = try settings.integer("METRICS_FLUSH_SECONDS", default: 5, range: 1...3600)
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

/// One request series: the labels of `flows_requests_total`.
struct RequestSeries: Hashable {
    let flow: String
    let action: String
    let status: Int
}

/// A latency histogram with non-cumulative bucket counts (made cumulative when flushed).
struct DurationHistogram {
    /// Upper bounds in microseconds; the last bucket (`+Inf`) is implicit.
    static let boundsMicros = [5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
                               5_000_000, 10_000_000]
    /// The same bounds as Prometheus `le` labels.
    static let boundLabels = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"]

    var buckets = [Int](repeating: 0, count: DurationHistogram.boundLabels.count)
    var count = 0
    var sumMicros = 0

    mutating func observe(_ micros: Int) {
        var index = 0
        let bounds = DurationHistogram.boundsMicros
        while index < bounds.count, micros > bounds[index] { index += 1 }
        buckets[index] += 1
        count += 1
        sumMicros += micros
    }
}

/// The counters of one worker thread, touched by it once per request and read by the flusher every few seconds.
///
/// Guarded by a spin flag rather than `Mutex`: on Linux `Mutex` is a priority-inheritance futex that calls
/// `gettid(2)` on every lock, a system call per request; the flag costs one atomic exchange, and the only other
/// party (the flusher) holds it for microseconds every few seconds.
public final class MetricsSlot: @unchecked Sendable {
    struct Counters {
        var requests: [RequestSeries: Int] = [:]
        var durations: [String: DurationHistogram] = [:]
    }

    private let busy = Atomic<Bool>(false)
    private var counters = Counters()
    /// Monotonic start of the request in flight (nanoseconds), 0 when idle.
    let requestStart = Atomic<Int64>(0)
    /// Set by the watchdog when it interrupted the request in flight.
    let interrupted = Atomic<Bool>(false)
    /// The worker's SQLite handle (as a bit pattern) while it may be interrupted; 0 once closed.
    let connection = Mutex<UInt>(0)

    init() {}

    /// Runs `body` with the counters, holding the spin flag.
    func withCounters<T>(_ body: (inout Counters) -> T) -> T {
        while !busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged {
            sched_yield()
        }
        defer { busy.store(false, ordering: .releasing) }
        return body(&counters)
    }

    func record(flow: String, action: String, status: Int, micros: Int) {
        withCounters { counters in
            counters.requests[RequestSeries(flow: flow, action: action, status: status), default: 0] += 1
            counters.durations[flow, default: DurationHistogram()].observe(micros)
        }
    }

    /// Interrupts the SQLite work of the request in flight if it started at `started` and is still running.
    func interrupt(ifStartedAt started: Int64) {
        connection.withLock { bits in
            guard bits != 0, requestStart.load(ordering: .acquiring) == started else { return }
            interrupted.store(true, ordering: .releasing)
            sqlite3_interrupt(OpaquePointer(bitPattern: bits))
        }
    }
}

/// Per-process counters, flushed into the `metrics_counters` table under a random instance id so that `/metrics`
/// can sum every responder process sharing the database (dead processes' rows keep counting).
public final class Metrics: Sendable {
    /// The unique id of this process start.
    public let instance: String
    /// This process's id, read once (getpid is a system call).
    public let pid: Int32
    private let slots = Mutex<[MetricsSlot]>([])
    private let requestNumber = Atomic<Int>(0)
    private let flushed = Mutex<[String: Int]>([:])

    /// Counters for a new process start; `instance` is unique unless given (tests).
    public init(instance: String? = nil) {
        pid = getpid()
        self.instance = instance ?? Metrics.randomInstance(pid: pid)
    }

    /// The table the counters go to.
    public static let migrations = [
        Migration(id: "metrics-1", sql: """
            CREATE TABLE metrics_counters (
                instance TEXT NOT NULL,
                series TEXT NOT NULL,
                value INTEGER NOT NULL,
                updated_at INTEGER NOT NULL,
                PRIMARY KEY (instance, series)
            ) WITHOUT ROWID
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

    /// A slot for one more worker thread.
    func makeSlot() -> MetricsSlot {
        let slot = MetricsSlot()
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

    /// Every series of this process with its value since the process started (histograms cumulative).
    func snapshot() -> [String: Int] {
        var requests: [RequestSeries: Int] = [:]
        var durations: [String: DurationHistogram] = [:]
        for slot in slots.withLock({ $0 }) {
            slot.withCounters { counters in
                requests.merge(counters.requests, uniquingKeysWith: +)
                for (flow, histogram) in counters.durations {
                    var total = durations[flow] ?? DurationHistogram()
                    for i in total.buckets.indices { total.buckets[i] += histogram.buckets[i] }
                    total.count += histogram.count
                    total.sumMicros += histogram.sumMicros
                    durations[flow] = total
                }
            }
        }
        var series: [String: Int] = [:]
        for (key, value) in requests {
            let flow = MetricsText.escape(key.flow)
            series["flows_requests_total{flow=\"\(flow)\",action=\"\(MetricsText.escape(key.action))\","
                + "status=\"\(key.status)\"}", default: 0] += value
            if key.status == 421 {
                series["flows_decryption_failures_total{flow=\"\(flow)\"}", default: 0] += value
            }
            if key.status == 432 || (key.status == 401 && key.flow == "webhook") {
                series["flows_signature_failures_total{flow=\"\(flow)\"}", default: 0] += value
            }
        }
        for (flow, histogram) in durations {
            let label = "flow=\"\(MetricsText.escape(flow))\""
            var cumulative = 0
            for (i, le) in DurationHistogram.boundLabels.enumerated() {
                cumulative += histogram.buckets[i]
                series["flows_request_duration_seconds_bucket{\(label),le=\"\(le)\"}"] = cumulative
            }
            series["flows_request_duration_seconds_count{\(label)}"] = histogram.count
            series["flows_request_duration_microseconds_sum{\(label)}"] = histogram.sumMicros
        }
        series["flows_sqlite_busy_retries_total"] = sqliteBusyRetries.load(ordering: .relaxed)
        return series
    }

    /// Writes the series that changed since the last flush into `metrics_counters` (one `BEGIN IMMEDIATE`
    /// transaction; WAL with `synchronous=NORMAL`, so no fsync). With `retire`, this instance's rows are then folded
    /// into the `retired` instance, so recycled processes do not grow the table.
    public func flush(into database: Database, now: Int64, retire: Bool = false) throws(DatabaseError) {
        try flushed.withLock { (flushed: inout [String: Int]) throws(DatabaseError) in
            let current = snapshot()
            let changed = current.filter { flushed[$0.key] != $0.value }
            if changed.isEmpty, !retire { return }
            try database.writeTransaction { () throws(DatabaseError) in
                for (series, value) in changed {
                    try database.query("""
                        INSERT INTO metrics_counters (instance, series, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                        ON CONFLICT (instance, series)
                            DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
                        """, [.text(instance), .text(series), .integer(Int64(value)), .integer(now)])
                }
                if retire {
                    try database.query("""
                        INSERT INTO metrics_counters (instance, series, value, updated_at)
                        SELECT 'retired', series, value, ?2 FROM metrics_counters WHERE instance = ?1
                        ON CONFLICT (instance, series) DO UPDATE SET value = value + excluded.value,
                            updated_at = excluded.updated_at
                        """, [.text(instance), .integer(now)])
                    try database.query("DELETE FROM metrics_counters WHERE instance = ?1", [.text(instance)])
                }
            }
            flushed = retire ? [:] : current
        }
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
    ]

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
        for (name, help, value) in tables {
            out += "# HELP \(name) \(help)\n# TYPE \(name) gauge\n\(name) \(value)\n"
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
    /// `.../metrics`: Prometheus text, behind the API token; flushes this process first, then sums every process.
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
        guard let database = worker.database else {
            summary.reason = "metrics need a database (DATABASE_URL)"
            return .text(500, "internal error")
        }
        do {
            try worker.metrics.flush(into: database, now: clock())
            var totals: [String: Int] = [:]
            for row in try database.query("SELECT series, SUM(value) FROM metrics_counters GROUP BY series") {
                if let series = row[0].string, let value = row[1].int { totals[series] = Int(value) }
            }
            var tables: [(String, String, Int64)] = []
            func count(_ table: String) throws(DatabaseError) -> Int64 {
                try database.query("SELECT count(*) FROM \(table)").first?.first?.int ?? 0
            }
            let now = "in the database now (purge removes old ones)."
            if configuration.flows["appointment"] is AppointmentFlow {
                tables.append(("flows_bookings_total", "Bookings \(now)", try count("appointment_bookings")))
            }
            if configuration.flows["expense"] is ExpenseFlow {
                tables.append(("flows_expenses_total", "Expenses \(now)", try count("expenses")))
            }
            tables.append(("flows_webhook_messages_total", "Webhook messages \(now)", try count("webhook_messages")))
            let body = MetricsText.render(totals, tables: tables)
            return EndpointResponse(status: 200, headers: [("Content-Type", MetricsText.contentType)],
                                    body: Array(body.utf8))
        } catch {
            log.error("metrics failed", ["error": error.description])
            summary.reason = "storage unavailable"
            return .text(503, "storage unavailable, try again later")
        }
    }
}
