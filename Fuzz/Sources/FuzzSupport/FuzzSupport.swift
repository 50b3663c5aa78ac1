import CLibFuzzer
import FlowCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The bytes libFuzzer hands to `LLVMFuzzerTestOneInput`, copied into an array.
public func fuzzBytes(_ start: UnsafePointer<UInt8>?, _ count: Int) -> [UInt8] {
    guard let start, count > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: start, count: count))
}

/// Stops the run with `message` when `condition` is false: libFuzzer reports the trap as a crash and keeps the
/// input, so a broken invariant is found like any other bug.
public func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError("fuzz invariant broken: \(message())") }
}

/// Where the fuzz targets find the repository and put their files.
public enum FuzzPaths {
    /// The repository root (this file is `Fuzz/Sources/FuzzSupport/FuzzSupport.swift`).
    public static let repository: String = {
        "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false).dropLast(4).joined(separator: "/")
    }()

    /// `Tests/Fixtures`: the test keys.
    public static let fixtures = repository + "/Tests/Fixtures"

    /// A fresh directory for this process's database and log: under `$FLOWS_FUZZ_SCRATCH` (set by `scripts/fuzz`,
    /// which removes it afterwards), else under `/tmp`.
    public static func scratchDirectory() -> String {
        let parent = getenv("FLOWS_FUZZ_SCRATCH").map { String(cString: $0) } ?? "/tmp"
        var template = Array("\(parent)/flows-fuzz-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer -> String? in
            guard mkdtemp(buffer.baseAddress!) != nil else { return nil }
            return String(cString: buffer.baseAddress!)
        }
        guard let made else { fatalError("cannot create a scratch directory under \(parent)") }
        return made
    }
}

/// A configured endpoint as a responder runs it: the pkcs8 test key, an app secret, `VERIFY_TOKEN`, `API_TOKEN`,
/// both flows, SQLite in a scratch directory, and a log file at debug level. Built once per process; every
/// `resetInterval` runs the database is emptied and the worker replaced (fresh metrics counters), so neither grows
/// over millions of runs.
public final class FuzzService {
    /// The app secret requests are signed with.
    public static let appSecret = "fuzz-app-secret"
    /// `VERIFY_TOKEN`.
    public static let verifyToken = "fuzz-verify-token"
    /// `API_TOKEN`.
    public static let apiToken = "fuzz-api-token-0123456789"
    /// The clock every endpoint uses: Monday 2026-03-02 08:00 UTC, so appointment dates are fixed.
    public static let now: Int64 = 1_772_438_400

    /// The endpoint logging text lines.
    public let textEndpoint: Endpoint
    /// The same endpoint logging JSON lines.
    public let jsonEndpoint: Endpoint
    /// The one worker (one SQLite connection), as a single-threaded responder has.
    public private(set) var worker: Worker
    /// Where both loggers write.
    public let logPath: String
    private let logFD: Int32
    private var logOffset: off_t = 0
    private var readBuffer = [UInt8](repeating: 0, count: 65536)
    private let tables: [String]
    private var runs = 0
    private let resetInterval: Int

    /// Builds the service; `extra` settings override the defaults (e.g. smaller body limits).
    public init(extra: [String: String] = [:], resetInterval: Int = 20_000) {
        let directory = FuzzPaths.scratchDirectory()
        var values = [
            "APP_SECRET": FuzzService.appSecret, "PRIVATE_KEY_FILE": FuzzPaths.fixtures + "/keys/pkcs8.pem",
            "DATABASE_URL": "sqlite:\(directory)/flows.db", "VERIFY_TOKEN": FuzzService.verifyToken,
            "API_TOKEN": FuzzService.apiToken, "LOG_LEVEL": "debug",
        ]
        for (key, value) in extra { values[key] = value }
        logPath = directory + "/flows.log"
        do {
            let configuration = try Configuration(settings: Settings(values))
            let sink = try LogSink.file(logPath)
            textEndpoint = Endpoint(configuration: configuration, log: Logger(level: .debug, sink: sink, format: .text),
                                    clock: { FuzzService.now })
            jsonEndpoint = Endpoint(configuration: configuration, log: Logger(level: .debug, sink: sink, format: .json),
                                    clock: { FuzzService.now })
            worker = try Worker(configuration: configuration)
            tables = try worker.database!.query("""
                SELECT name FROM sqlite_master
                WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name != 'schema_migrations'
                """).compactMap { $0.first?.string }
        } catch {
            fatalError("cannot set up the fuzzed endpoint: \(error)")
        }
        logFD = open(logPath, O_RDONLY | O_CLOEXEC)
        self.resetInterval = resetInterval
    }

    /// The database of the worker.
    public var database: Database { worker.database! }

    /// Counts one run; every `resetInterval` runs, empties every table (the schema stays) and replaces the worker.
    public func countRun() {
        runs += 1
        guard runs % resetInterval == 0 else { return }
        do {
            worker.close()
            worker = try Worker(configuration: textEndpoint.configuration)
            // Foreign keys off while emptying, so the order of the tables does not matter.
            try database.execute("PRAGMA foreign_keys=OFF")
            try database.writeTransaction { () throws(DatabaseError) in
                for table in tables { try database.execute("DELETE FROM \"\(table)\"") }
            }
            try database.execute("PRAGMA foreign_keys=ON")
        } catch {
            fatalError("cannot empty the fuzz database: \(error)")
        }
    }

    /// The log lines written since the last call (the file is emptied now and then).
    public func newLogLines() -> [ArraySlice<UInt8>] {
        var bytes: [UInt8] = []
        while true {
            let n = pread(logFD, &readBuffer, readBuffer.count, logOffset)
            if n <= 0 { break }
            bytes.append(contentsOf: readBuffer[0..<n])
            logOffset += off_t(n)
        }
        if logOffset > 1 << 20 {
            _ = truncate(logPath, 0)
            logOffset = 0
        }
        require(bytes.isEmpty || bytes.last == 0x0A, "a log line does not end with a newline")
        return bytes.split(separator: 0x0A, omittingEmptySubsequences: false).dropLast()
    }

    /// Checks the log lines written since the last call: one line per entry, JSON objects in JSON format, and
    /// `time level message...` lines in text format.
    public func checkLog(json: Bool) {
        for line in newLogLines() {
            let text = String(decoding: line, as: UTF8.self)
            if json {
                guard let value = try? JSONParser.parse(Array(line)), value.objectValue != nil,
                    value["level"]?.stringValue != nil, value["msg"]?.stringValue != nil
                else { fatalError("fuzz invariant broken: a JSON log line is not a JSON object: \(text)") }
            } else {
                let fields = line.split(separator: 0x20, maxSplits: 2)
                require(fields.count == 3 && fields[0].count == 20 && fields[0].last == UInt8(ascii: "Z")
                            && ["debug", "info", "warning", "error"].contains(String(decoding: fields[1], as: UTF8.self)),
                        "a text log line is not 'time level message': \(text)")
            }
        }
    }
}

/// Splits `bytes` at every `separator` into at most `limit` parts (the last keeps the rest).
public func splitInput(_ bytes: [UInt8], separator: UInt8, limit: Int) -> [[UInt8]] {
    bytes.split(separator: separator, maxSplits: limit - 1, omittingEmptySubsequences: false).map(Array.init)
}

/// Runs libFuzzer with the process's command line and `test` (the target's `LLVMFuzzerTestOneInput`), then exits
/// with its status. Called by the last line of each target's main.swift.
public func runLibFuzzer(_ test: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> Never {
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, test))
}
