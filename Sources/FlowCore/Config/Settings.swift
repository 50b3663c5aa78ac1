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

    /// An error about the value of setting `name`: `NAME=value: reason`, the value as `Settings.shown` renders it
    /// (a secret setting's not at all, a URL's password hidden).
    public init(setting name: String, value: String, _ reason: String) {
        description = Settings.shown(name, value) + ": " + reason
    }
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
                // Not quoted: such a line is often a PEM pasted without quotes, its last base64 line ending in '='.
                throw ConfigError("\(file) line \(number): what stands before '=' is not a setting name (letters, "
                    + "digits and _ only; a multi-line value such as a PEM goes in double quotes)")
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
            throw ConfigError(setting: key, value: text,
                              "expected a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    /// An on/off setting (`on`/`off`, `true`/`false`, `yes`/`no`, `1`/`0`), or `defaultValue` when unset.
    public func flag(_ key: String, default defaultValue: Bool) throws(ConfigError) -> Bool {
        guard let text = self[key] else { return defaultValue }
        switch text.lowercased() {
        case "on", "true", "yes", "1": return true
        case "off", "false", "no", "0": return false
        default: throw ConfigError(setting: key, value: text, "expected on or off")
        }
    }
}

/// How setting values appear in messages and log lines: the one place that renders them, so no secret does.
extension Settings {
    /// What a message shows instead of a secret.
    public static let hiddenMark = "<hidden>"

    /// True for settings whose whole value is a secret: names with SECRET, TOKEN, PASSWORD or PASSPHRASE in them,
    /// PRIVATE_KEY and any other `*_KEY` (key contents). A `*_FILE` setting names a file, which is not secret.
    public static func isSecret(_ name: String) -> Bool {
        let upper = name.uppercased()
        if upper.hasSuffix("_FILE") { return false }
        return upper.hasSuffix("_KEY") || ["SECRET", "TOKEN", "PASSWORD", "PASSPHRASE", "PRIVATE_KEY"].contains {
            upper.contains($0)
        }
    }

    /// `NAME=value` for a message: `NAME (value not shown)` for a secret setting (`isSecret`); otherwise the value
    /// with any URL's password and secret query values hidden (`hidingURLSecrets`).
    public static func shown(_ name: String, _ value: String) -> String {
        isSecret(name) ? "\(name) (value not shown)" : "\(name)=\(hidingURLSecrets(value))"
    }

    /// `value` with the secret parts of a `scheme://` URL replaced by `hiddenMark`: the password of the user info
    /// (the whole user info when it has no `:`, as a token often stands there) and the value of each query
    /// parameter named like a secret (`token`, `key`, `secret`, `password`, `auth`, `sig`, ...). Anything else is
    /// returned as it is.
    public static func hidingURLSecrets(_ value: String) -> String {
        guard let schemeEnd = value.firstByteRange(of: "://")?.upperBound else { return value }
        let authorityEnd = value[schemeEnd...].firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? value.endIndex
        var out = String(value[..<schemeEnd])
        let authority = value[schemeEnd..<authorityEnd]
        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            if let colon = userInfo.firstIndex(of: ":") {
                out += userInfo[...colon] + hiddenMark
            } else {
                out += hiddenMark
            }
            out += authority[at...]
        } else {
            out += authority
        }
        let rest = value[authorityEnd...]
        guard let question = rest.firstIndex(of: "?") else { return out + rest }
        let fragment = rest[question...].firstIndex(of: "#") ?? rest.endIndex
        out += rest[...question]
        let query = rest[rest.index(after: question)..<fragment]
        out += query.split(separator: "&", omittingEmptySubsequences: false).map { parameter -> String in
            guard let eq = parameter.firstIndex(of: "=") else { return String(parameter) }
            let name = parameter[..<eq].uppercased()
            let secret = ["SECRET", "TOKEN", "PASS", "KEY", "AUTH", "SIG", "CREDENTIAL"].contains { name.contains($0) }
            return secret ? String(parameter[...eq]) + hiddenMark : String(parameter)
        }.joined(separator: "&")
        return out + rest[fragment...]
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
