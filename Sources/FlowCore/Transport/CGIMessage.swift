#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The transport-side pieces both adapters (FastCGI and plain CGI) share: splitting `NAME=value` parameters,
/// collecting a body under a cap, and writing a CGI answer. They live in FlowCore so they are fuzzed and tested
/// without a web server.
public enum CGIMessage {
    /// Splits a `NAME=value` C string at its first `=` (on bytes: invalid UTF-8 is repaired as `String(cString:)`
    /// does). An entry without `=` is a name with an empty value.
    public static func splitParam(_ entry: UnsafePointer<CChar>) -> (String, String) {
        let length = strlen(entry)
        return entry.withMemoryRebound(to: UInt8.self, capacity: length) { start in
            splitParam(UnsafeBufferPointer(start: start, count: length))
        }
    }

    /// `splitParam` for a parameter the endpoint reads (`EndpointRequest.parameterNames`); `nil` for any other,
    /// without building strings for it.
    public static func readParam(_ entry: UnsafePointer<CChar>) -> (String, String)? {
        let length = strlen(entry)
        return entry.withMemoryRebound(to: UInt8.self, capacity: length) { start in
            let bytes = UnsafeBufferPointer(start: start, count: length)
            let nameLength = bytes.firstIndex(of: UInt8(ascii: "=")) ?? length
            for name in EndpointRequest.parameterNames where name.utf8CodeUnitCount == nameLength {
                if memcmp(start, name.utf8Start, nameLength) == 0 { return splitParam(bytes) }
            }
            return nil
        }
    }

    /// Splits `NAME=value` bytes at the first `=`.
    public static func splitParam(_ bytes: UnsafeBufferPointer<UInt8>) -> (String, String) {
        guard let eq = bytes.firstIndex(of: UInt8(ascii: "=")) else {
            return (String(decoding: bytes, as: UTF8.self), "")
        }
        return (String(decoding: UnsafeBufferPointer(rebasing: bytes[..<eq]), as: UTF8.self),
                String(decoding: UnsafeBufferPointer(rebasing: bytes[(eq + 1)...]), as: UTF8.self))
    }

    /// `Status:` line, headers, `Content-Length`, blank line and body, as a CGI/FastCGI responder writes them.
    /// Header values are written as given: every header the endpoint sets is a fixed ASCII text.
    public static func encode(_ response: EndpointResponse, includeBody: Bool) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(128 + (includeBody ? response.body.count : 0))
        func append(_ text: String) {
            var text = text
            text.withUTF8 { bytes.append(contentsOf: $0) }
        }
        func appendNumber(_ value: Int) {
            if value >= 10 { appendNumber(value / 10) }
            bytes.append(UInt8(ascii: "0") + UInt8(value % 10))
        }
        append("Status: ")
        appendNumber(response.status)
        bytes.append(UInt8(ascii: " "))
        append(EndpointResponse.reason(response.status))
        bytes.append(contentsOf: [0x0D, 0x0A])
        for (name, value) in response.headers {
            append(name)
            bytes.append(contentsOf: [UInt8(ascii: ":"), UInt8(ascii: " ")])
            append(value)
            bytes.append(contentsOf: [0x0D, 0x0A])
        }
        append("Content-Length: ")
        appendNumber(response.body.count)
        bytes.append(contentsOf: [0x0D, 0x0A, 0x0D, 0x0A])
        if includeBody { bytes.append(contentsOf: response.body) }
        return bytes
    }
}

/// Collects a request body chunk by chunk, up to `cap` bytes. Past the cap it keeps reading (so the server gets an
/// answer rather than a reset) but stores nothing more and reports the body as too large.
public struct BodyCollector {
    /// The largest body kept.
    public let cap: Int
    /// The bytes collected so far (complete unless `tooLarge`).
    public private(set) var body: [UInt8] = []
    /// True once more than `cap` bytes arrived.
    public private(set) var tooLarge = false

    /// A collector that keeps at most `cap` bytes.
    public init(cap: Int) {
        self.cap = cap
    }

    /// Adds one chunk as read from the transport.
    public mutating func append(_ chunk: UnsafeRawBufferPointer) {
        if tooLarge { return }
        if body.count + chunk.count > cap {
            tooLarge = true
            body = []
            return
        }
        body.append(contentsOf: chunk)
    }

    /// The request these parameters and this body make (the method is `REQUEST_METHOD`, else GET).
    public func request(params: [(String, String)]) -> EndpointRequest {
        let method = params.first { $0.0 == "REQUEST_METHOD" }?.1 ?? "GET"
        return EndpointRequest(method: method, params: params, body: body, bodyTooLarge: tooLarge)
    }
}
