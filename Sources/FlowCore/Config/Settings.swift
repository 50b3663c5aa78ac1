#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A configuration problem found at startup, in plain words naming the setting or file.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The message.
    public let description: String
    /// An error with `message`.
    public init(_ message: String) { description = message }
}

/// `KEY=VALUE` settings from the environment and an optional file (`--config`), environment winning.
///
/// The file format is the one systemd's `EnvironmentFile=` reads: one `KEY=VALUE` per line, `#` comments,
/// optional `export `, values optionally in single or double quotes (double-quoted values may span lines, so a
/// PEM can be pasted in).
public struct Settings: Sendable {
    /// The merged values.
    public private(set) var values: [String: String]
    /// Keys found in the file, for reporting unknown ones.
    public let fileKeys: [String]
    /// The file they came from, if any.
    public let file: String?

    /// Settings from explicit values (tests).
    public init(_ values: [String: String]) {
        self.values = values
        fileKeys = []
        file = nil
    }

    /// Merges `file` (if given) under the `environment` values of the names in `names`.
    public init(environment: [String: String], file: String?, names: Set<String>) throws(ConfigError) {
        var merged: [String: String] = [:]
        var keys: [String] = []
        if let file {
            let text = try readTextFile(file, what: "config file")
            let parsed = try Settings.parse(text, file: file)
            for (key, value) in parsed {
                merged[key] = value
                keys.append(key)
            }
        }
        for name in names {
            if let value = environment[name] { merged[name] = value }
        }
        values = merged
        fileKeys = keys
        self.file = file
    }

    /// Parses `KEY=VALUE` lines.
    static func parse(_ text: String, file: String) throws(ConfigError) -> [(String, String)] {
        var result: [(String, String)] = []
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var i = 0
        while i < lines.count {
            let number = i + 1
            var line = lines[i].trimmingSpaces()
            i += 1
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("export ") { line = String(line.dropFirst(7)).trimmingSpaces() }
            guard let eq = line.firstIndex(of: "=") else {
                throw ConfigError("\(file) line \(number): expected KEY=VALUE")
            }
            let key = String(line[..<eq]).trimmingSpaces()
            guard !key.isEmpty, key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
                throw ConfigError("\(file) line \(number): invalid setting name '\(key)'")
            }
            var value = String(line[line.index(after: eq)...]).trimmingSpaces()
            if value.hasPrefix("\"") {
                value.removeFirst()
                // A double-quoted value runs to the closing quote, possibly on a later line.
                while !value.hasSuffix("\"") || value.hasSuffix("\\\"") {
                    guard i < lines.count else {
                        throw ConfigError("\(file) line \(number): \(key) has no closing double quote")
                    }
                    value += "\n" + lines[i]
                    i += 1
                    value = value.trimmingTrailingSpaces()
                }
                value.removeLast()
                value = value.replacingEscapes()
            } else if value.hasPrefix("'") {
                guard value.count >= 2, value.hasSuffix("'") else {
                    throw ConfigError("\(file) line \(number): \(key) has no closing single quote")
                }
                value = String(value.dropFirst().dropLast())
            }
            result.append((key, value))
        }
        return result
    }

    /// A copy with `key` set to `value` (command-line options override both file and environment).
    public func overriding(_ key: String, with value: String) -> Settings {
        var copy = self
        copy.values[key] = value
        return copy
    }

    /// The value of `key`, `nil` when unset or empty.
    public subscript(key: String) -> String? {
        guard let v = values[key], !v.isEmpty else { return nil }
        return v
    }

    /// An integer setting within `range`, or `defaultValue` when unset.
    public func integer(_ key: String, default defaultValue: Int, range: ClosedRange<Int>) throws(ConfigError) -> Int {
        guard let text = self[key] else { return defaultValue }
        guard let value = Int(text), range.contains(value) else {
            throw ConfigError("\(key)=\(text): expected a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    /// An on/off setting (`on`/`off`, `true`/`false`, `yes`/`no`, `1`/`0`), or `defaultValue` when unset.
    public func flag(_ key: String, default defaultValue: Bool) throws(ConfigError) -> Bool {
        guard let text = self[key] else { return defaultValue }
        switch text.lowercased() {
        case "on", "true", "yes", "1": return true
        case "off", "false", "no", "0": return false
        default: throw ConfigError("\(key)=\(text): expected on or off")
        }
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\r" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s.removeLast() }
        return String(s)
    }

    func trimmingTrailingSpaces() -> String {
        var s = Substring(self)
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s.removeLast() }
        return String(s)
    }

    /// `\n`, `\"` and `\\` escapes in a double-quoted value.
    func replacingEscapes() -> String {
        var out = ""
        var escaping = false
        for c in self {
            if escaping {
                switch c {
                case "n": out.append("\n")
                case "t": out.append("\t")
                default: out.append(c)
                }
                escaping = false
            } else if c == "\\" {
                escaping = true
            } else {
                out.append(c)
            }
        }
        if escaping { out.append("\\") }
        return out
    }
}

/// Reads a whole file; the error names the file, what it was for and the system's reason.
public func readFile(_ path: String, what: String) throws(ConfigError) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else {
        throw ConfigError("\(what) \(path): cannot open: \(String(cString: strerror(errno)))")
    }
    defer { close(fd) }
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &buffer, buffer.count)
        if n < 0, errno == EINTR { continue }
        guard n >= 0 else {
            throw ConfigError("\(what) \(path): cannot read: \(String(cString: strerror(errno)))")
        }
        if n == 0 { break }
        out.append(contentsOf: buffer[0..<n])
        if out.count > 16 << 20 { throw ConfigError("\(what) \(path): larger than 16 MiB") }
    }
    return out
}

/// Reads a whole UTF-8 text file.
public func readTextFile(_ path: String, what: String) throws(ConfigError) -> String {
    let bytes = try readFile(path, what: what)
    guard let text = String(validating: bytes, as: UTF8.self) else {
        throw ConfigError("\(what) \(path): not UTF-8 text")
    }
    return text
}
