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
    /// - Throws: `Invalid` for a bad percent escape, or a name or value that is not UTF-8 or holds U+0000.
    public init(_ text: String) throws(Invalid) {
        var pairs: [(String, String)] = []
        for part in text.utf8.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            let bytes = Array(part)
            let equals = bytes.firstIndex(of: UInt8(ascii: "="))
            let name = try QueryString.decode(bytes[..<(equals ?? bytes.count)])
            let value = try equals.map { i throws(Invalid) in try QueryString.decode(bytes[(i + 1)...]) } ?? ""
            // No parameter needs U+0000, and SQL text and logs would cut a value there.
            if name.containsNUL { throw Invalid(description: "a parameter name contains a NUL character (%00)") }
            if value.containsNUL {
                throw Invalid(description: "parameter '\(String(name.prefix(40)))' contains a NUL character (%00)")
            }
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
