import CFlowsPostgres

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Connection URIs: masking their password for messages, reading a password file, and libpq's own parsing.
public enum PostgresURL {
    /// What stands where a password was.
    public static let hiddenMark = "***"

    /// `url` with its password replaced by `***`, safe for logs, errors and `check`: the password of the user
    /// info (`postgresql://user:***@host/db`) and the value of any `password=` or `sslpassword=` parameter (URI
    /// query or `key=value` form).
    ///
    /// The user info is taken to end at the last `@`, so a password holding `@`, `/` or `?` is hidden whole; a `@`
    /// further on (in a query value) only hides more than needed.
    public static func masked(_ url: String) -> String {
        var out = url
        if let schemeEnd = out.firstRange(of: "://")?.upperBound, let at = out.lastIndex(of: "@"), at > schemeEnd,
            let colon = out[schemeEnd..<at].firstIndex(of: ":")
        {
            out.replaceSubrange(out.index(after: colon)..<at, with: hiddenMark)
        }
        // password=... in a query (after ? or &) or in the key=value form (at the start or after a space).
        var result = ""
        var rest = Substring(out)
        while let found = rest.firstRange(of: "password=") {
            let before = result + rest[..<found.lowerBound]
            let key = before.reversed().prefix { $0 != "?" && $0 != "&" && $0 != " " }
            result += rest[..<found.upperBound]
            rest = rest[found.upperBound...]
            guard key.isEmpty || String(key.reversed()).lowercased() == "ssl" else { continue }
            let end = rest.firstIndex { $0 == "&" || $0 == " " || $0 == "#" } ?? rest.endIndex
            result += hiddenMark
            rest = rest[end...]
        }
        return result + rest
    }

    /// The password in the file at `path` (`DATABASE_PASSWORD_FILE`): its one line, without the line end. Errors
    /// name the file, never its content.
    public static func readPassword(file path: String) throws(PostgresError) -> String {
        let context = "reading the database password file \(path)"
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw PostgresError(.invalidConfiguration, message: String(cString: strerror(errno)), context: context)
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 512)
        while bytes.count <= 4096 {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n >= 0 else {
                throw PostgresError(.invalidConfiguration, message: String(cString: strerror(errno)), context: context)
            }
            if n == 0 { break }
            bytes += chunk[..<n]
        }
        if bytes.last == UInt8(ascii: "\n") { bytes.removeLast() }
        if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
        guard bytes.count <= 4096 else {
            throw PostgresError(.invalidConfiguration, message: "the file is longer than 4096 bytes", context: context)
        }
        guard !bytes.isEmpty else {
            throw PostgresError(.invalidConfiguration, message: "the file is empty", context: context)
        }
        guard !bytes.contains(where: { $0 == 0 || $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") }) else {
            throw PostgresError(.invalidConfiguration, message: "the password must be one line (no line breaks, no "
                + "U+0000)", context: context)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The connection parameters libpq reads from `url` (a `postgresql://` or `postgres://` URI, or the
    /// `key=value` form), as `(keyword, value)` pairs, without libpq's environment defaults. A malformed URI is
    /// `.invalidConfiguration`, its message with the URI masked.
    public static func parameters(_ url: String) throws(PostgresError) -> [(String, String)] {
        let pq = try LibPQ.load()
        var message: UnsafeMutablePointer<CChar>?
        guard let options = pq.PQconninfoParse(url, &message) else {
            var text = message.map { String(cString: $0) } ?? "out of memory"
            if let message { pq.PQfreemem(message) }
            // libpq quotes the URI (or a part of it) in its messages: never let the password through.
            text = text.replacing(url, with: masked(url))
            for secret in passwordCandidates(url) where !secret.isEmpty {
                text = text.replacing(secret, with: hiddenMark)
            }
            throw PostgresError(.invalidConfiguration, message: oneLine(text),
                                context: "reading the connection URI \(masked(url))")
        }
        defer { pq.PQconninfoFree(options) }
        var pairs: [(String, String)] = []
        var option = options
        while let keyword = option.pointee.keyword {
            if let value = option.pointee.val { pairs.append((String(cString: keyword), String(cString: value))) }
            option += 1
        }
        return pairs
    }

    /// What a password in `url` could be, in every form it could be quoted in: the user info after `:` and each
    /// `password=` value, raw and percent-decoded.
    private static func passwordCandidates(_ url: String) -> [String] {
        var candidates: [String] = []
        if let schemeEnd = url.firstRange(of: "://")?.upperBound, let at = url.lastIndex(of: "@"), at > schemeEnd,
            let colon = url[schemeEnd..<at].firstIndex(of: ":")
        {
            candidates.append(String(url[url.index(after: colon)..<at]))
        }
        var rest = Substring(url)
        while let found = rest.firstRange(of: "password=") {
            rest = rest[found.upperBound...]
            let end = rest.firstIndex { $0 == "&" || $0 == " " || $0 == "#" } ?? rest.endIndex
            candidates.append(String(rest[..<end]))
        }
        return candidates + candidates.compactMap(percentDecoded)
    }

    private static func percentDecoded(_ text: String) -> String? {
        guard text.contains("%") else { return nil }
        var bytes: [UInt8] = []
        var utf8 = text.utf8.makeIterator()
        while let byte = utf8.next() {
            if byte == UInt8(ascii: "%"), let high = utf8.next().flatMap(hexValue),
                let low = utf8.next().flatMap(hexValue)
            {
                bytes.append(high << 4 | low)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// `text` on one line: line breaks and tabs become single spaces, the ends trimmed.
    static func oneLine(_ text: some StringProtocol) -> String {
        text.split(whereSeparator: { $0 == "\n" || $0 == "\t" || $0 == "\r" || $0 == " " }).joined(separator: " ")
    }
}
