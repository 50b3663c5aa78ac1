#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A parsed `QUERY_STRING`: `name=value` pairs separated by `&`, percent-decoded, `+` meaning a space.
public struct QueryString: Sendable {
    /// The pairs in order (a name may repeat).
    public let pairs: [(String, String)]

    /// Why a query string was refused.
    public struct Invalid: Error, Sendable, CustomStringConvertible {
        /// Plain words for the answer.
        public let description: String
    }

    /// Parses `text` (without the leading `?`).
    /// - Throws: `Invalid` for a bad percent escape or a name or value that is not UTF-8.
    public init(_ text: String) throws(Invalid) {
        var pairs: [(String, String)] = []
        for part in text.utf8.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            let bytes = Array(part)
            let equals = bytes.firstIndex(of: UInt8(ascii: "="))
            let name = try QueryString.decode(bytes[..<(equals ?? bytes.count)])
            let value = try equals.map { i throws(Invalid) in try QueryString.decode(bytes[(i + 1)...]) } ?? ""
            pairs.append((name, value))
        }
        self.pairs = pairs
    }

    /// The query string of a request (`QUERY_STRING`, else the part of `REQUEST_URI` after `?`).
    public init(request: EndpointRequest) throws(Invalid) {
        if let query = request.values(of: "QUERY_STRING").first {
            try self.init(query)
        } else if let uri = request.values(of: "REQUEST_URI").first, let mark = uri.firstIndex(of: "?") {
            try self.init(String(uri[uri.index(after: mark)...]))
        } else {
            try self.init("")
        }
    }

    /// Every value of `name`.
    public func values(_ name: String) -> [String] {
        pairs.compactMap { $0.0 == name ? $0.1 : nil }
    }

    /// The single value of `name` (`nil` when absent).
    /// - Throws: `Invalid` when the name is given more than once.
    public func single(_ name: String) throws(Invalid) -> String? {
        let all = values(name)
        guard all.count <= 1 else { throw Invalid(description: "parameter '\(name)' given more than once") }
        return all.first
    }

    private static func decode(_ bytes: ArraySlice<UInt8>) throws(Invalid) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = bytes.startIndex
        while i < bytes.endIndex {
            let b = bytes[i]
            if b == UInt8(ascii: "+") {
                out.append(0x20)
            } else if b == UInt8(ascii: "%") {
                guard i + 2 < bytes.endIndex, let high = hexValue(bytes[i + 1]), let low = hexValue(bytes[i + 2]) else {
                    throw Invalid(description: "bad percent escape in the query string")
                }
                out.append(high << 4 | low)
                i += 2
            } else {
                out.append(b)
            }
            i += 1
        }
        guard let text = String(validating: out, as: UTF8.self) else {
            throw Invalid(description: "the query string is not UTF-8")
        }
        return text
    }

    private static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return b - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return b - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return b - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

/// ISO 8601 times as the read API reads and writes them (UTC, seconds since the epoch).
public enum ISOTime {
    /// Parses `2026-11-23` (midnight UTC), `2026-11-23T12:00`, `2026-11-23T12:00:00`, with optional fraction
    /// of a second (ignored) and `Z` or `+HH:MM`/`-HH:MM` (no zone means UTC).
    public static func parse(_ text: String) -> Int64? {
        let b = Array(text.utf8)
        var i = 0
        func digits(_ count: Int) -> Int? {
            guard i + count <= b.count else { return nil }
            var value = 0
            for k in i..<(i + count) {
                guard b[k] >= UInt8(ascii: "0"), b[k] <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int(b[k] - UInt8(ascii: "0"))
            }
            i += count
            return value
        }
        func expect(_ c: Character) -> Bool {
            guard i < b.count, b[i] == c.asciiValue! else { return false }
            i += 1
            return true
        }
        guard let year = digits(4), expect("-"), let month = digits(2), expect("-"), let day = digits(2),
            year >= 1970, (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year)
        else { return nil }
        var hour = 0, minute = 0, second = 0, offset = 0
        if i < b.count {
            guard expect("T") || expect("t") || expect(" "), let h = digits(2), expect(":"), let m = digits(2),
                h < 24, m < 60
            else { return nil }
            hour = h
            minute = m
            if expect(":") {
                guard let s = digits(2), s < 60 else { return nil }
                second = s
                if expect(".") {
                    let start = i
                    while i < b.count, b[i] >= UInt8(ascii: "0"), b[i] <= UInt8(ascii: "9") { i += 1 }
                    guard i > start else { return nil }
                }
            }
            if expect("Z") || expect("z") {
                offset = 0
            } else if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") {
                let sign = b[i] == UInt8(ascii: "-") ? -1 : 1
                i += 1
                guard let oh = digits(2), expect(":"), let om = digits(2), oh <= 14, om < 60 else { return nil }
                offset = sign * (oh * 3600 + om * 60)
            }
            guard i == b.count else { return nil }
        }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(second)
        return Int64(timegm(&parts)) - Int64(offset)
    }

    /// `epoch` as `2026-11-23T12:00:00Z`.
    public static func format(_ epoch: Int64) -> String {
        var seconds = time_t(epoch)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T"
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
    }

    /// True for a real calendar date written `YYYY-MM-DD`.
    public static func isDate(_ text: String) -> Bool {
        text.utf8.count == 10 && parse(text) != nil
    }

    private static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }
}
