#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

import Synchronization

/// Log severity, lowest first.
public enum LogLevel: Int, Sendable, Comparable, CaseIterable {
    /// Details for debugging.
    case debug
    /// Normal events (startup, one line per request).
    case info
    /// Something an operator should look at.
    case warning
    /// A failure.
    case error

    /// The name used in configuration and log lines.
    public var name: String {
        switch self {
        case .debug: return "debug"
        case .info: return "info"
        case .warning: return "warning"
        case .error: return "error"
        }
    }

    /// Parses `debug`, `info`, `warning` (or `warn`), `error`.
    public init?(name: String) {
        switch name.lowercased() {
        case "debug": self = .debug
        case "info": self = .info
        case "warning", "warn": self = .warning
        case "error": self = .error
        default: return nil
        }
    }

    /// Orders by severity.
    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
}

/// How log lines are written.
public enum LogFormat: Sendable {
    /// `time level message key=value...`
    case text
    /// One JSON object per line: `{"time":...,"level":...,"msg":...,"key":"value",...}` (a field named `time`,
    /// `level` or `msg` is written as `field_time`, ...).
    case json
}

/// Where log lines go: a file descriptor written with one `write(2)` per line (atomic for lines under
/// PIPE_BUF on pipes, and with O_APPEND on files, so several processes can share one log file).
///
/// No lock: the descriptor number never changes; `reopen` puts the new file behind it with `dup2(2)`, which is
/// atomic, so a concurrent line goes entirely to the old file or entirely to the new one.
public final class LogSink: Sendable {
    private let fd: Int32
    private let path: String?
    private let reopening = Mutex(())

    /// Standard error.
    public static let standardError = LogSink(fd: 2, path: nil)

    /// A sink that drops everything (tests).
    public static let discard = LogSink(fd: -1, path: nil)

    init(fd: Int32, path: String?) {
        self.fd = fd
        self.path = path
    }

    private static func openAppend(_ path: String) throws(ConfigError) -> Int32 {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else {
            throw ConfigError("LOG_FILE \(path): cannot open for appending: \(String(cString: strerror(errno)))")
        }
        return fd
    }

    /// Opens `path` for appending (created 0640 if missing).
    public static func file(_ path: String) throws(ConfigError) -> LogSink {
        LogSink(fd: try openAppend(path), path: path)
    }

    /// Reopens the log file (after logrotate moved it); a no-op for standard error.
    public func reopen() throws(ConfigError) {
        guard let path else { return }
        try reopening.withLock { _ throws(ConfigError) in
            let new = try LogSink.openAppend(path)
            defer { close(new) }
            guard dup2(new, fd) >= 0 else {
                throw ConfigError("LOG_FILE \(path): cannot reopen: \(String(cString: strerror(errno)))")
            }
            // dup2 clears close-on-exec on the target.
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
    }

    deinit {
        if path != nil { close(fd) }
    }

    func write(_ line: String) {
        var bytes = Array(line.utf8)
        write(line: &bytes)
    }

    /// Writes `bytes` and a newline with one `write(2)` (the newline is appended to `bytes`).
    func write(line bytes: inout [UInt8]) {
        guard fd >= 0 else { return }
        bytes.append(0x0A)
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0, errno == EINTR { continue }
                if n <= 0 { return }
                offset += n
            }
        }
    }
}

/// A small structured logger: `time level message key=value...` or JSON lines. Never give it secrets or personal
/// data.
public struct Logger: Sendable {
    /// The lowest level written.
    public let level: LogLevel
    /// Text or JSON lines.
    public let format: LogFormat
    private let sink: LogSink

    /// A logger writing lines at `level` and above to `sink` in `format`.
    public init(level: LogLevel, sink: LogSink, format: LogFormat = .text) {
        self.level = level
        self.sink = sink
        self.format = format
    }

    /// Reopens the log file (SIGHUP/SIGUSR1 after logrotate).
    public func reopen() throws(ConfigError) { try sink.reopen() }

    /// A logger that writes nothing.
    public static let discard = Logger(level: .error, sink: .discard)

    /// Writes `message` with `fields` at `level`, if enabled.
    public func log(_ level: LogLevel, _ message: @autoclosure () -> String, _ fields: KeyValuePairs<String, String> = [:]) {
        guard level >= self.level else { return }
        if format == .json {
            var line = "{\"time\":\"\(Logger.timestamp())\",\"level\":\"\(level.name)\",\"msg\":"
            Logger.appendJSONString(message(), to: &line)
            for (key, value) in fields {
                line += ","
                // A field named like one of the line's own members gets a prefix: no duplicate member names, so
                // `jq` and friends cannot take a booking's `time` for the line's.
                Logger.appendJSONString(key == "time" || key == "level" || key == "msg" ? "field_" + key : key,
                                        to: &line)
                line += ":"
                Logger.appendJSONString(value, to: &line)
            }
            sink.write(line + "}")
            return
        }
        // Text lines are assembled as bytes: one runs for every request (the access line).
        var line: [UInt8] = []
        line.reserveCapacity(160)
        ISOTime.append(Int64(time(nil)), to: &line)
        line.append(UInt8(ascii: " "))
        Logger.append(level.name, to: &line)
        line.append(UInt8(ascii: " "))
        Logger.append(message(), to: &line)
        for (key, value) in fields {
            line.append(UInt8(ascii: " "))
            Logger.append(key, to: &line)
            line.append(UInt8(ascii: "="))
            Logger.appendQuotedIfNeeded(value, to: &line)
        }
        sink.write(line: &line)
    }

    private static func append(_ text: String, to line: inout [UInt8]) {
        var text = text
        text.withUTF8 { line.append(contentsOf: $0) }
    }

    private static func appendQuotedIfNeeded(_ value: String, to line: inout [UInt8]) {
        var value = value
        let plain = value.withUTF8 { bytes -> Bool in
            guard !bytes.isEmpty, !bytes.contains(where: { $0 <= 0x20 || $0 == 0x22 || $0 == 0x3D || $0 >= 0x7F })
            else { return false }
            line.append(contentsOf: bytes)
            return true
        }
        if !plain { append(quoteIfNeeded(value), to: &line) }
    }

    /// Writes at debug level.
    public func debug(_ message: @autoclosure () -> String, _ fields: KeyValuePairs<String, String> = [:]) {
        log(.debug, message(), fields)
    }
    /// Writes at info level.
    public func info(_ message: @autoclosure () -> String, _ fields: KeyValuePairs<String, String> = [:]) {
        log(.info, message(), fields)
    }
    /// Writes at warning level.
    public func warning(_ message: @autoclosure () -> String, _ fields: KeyValuePairs<String, String> = [:]) {
        log(.warning, message(), fields)
    }
    /// Writes at error level.
    public func error(_ message: @autoclosure () -> String, _ fields: KeyValuePairs<String, String> = [:]) {
        log(.error, message(), fields)
    }

    private static func appendJSONString(_ value: String, to line: inout String) {
        line += JSONValue.string(value).text
    }

    private static func quoteIfNeeded(_ value: String) -> String {
        if !value.isEmpty, !value.utf8.contains(where: { $0 <= 0x20 || $0 == 0x22 || $0 == 0x3D || $0 >= 0x7F }) {
            return value
        }
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F { out += "?" } else { out.unicodeScalars.append(scalar) }
            }
        }
        return out + "\""
    }

    /// UTC time as `2026-11-23T12:04:05Z`.
    static func timestamp() -> String { ISOTime.format(Int64(time(nil))) }
}
