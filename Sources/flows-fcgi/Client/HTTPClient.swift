import CFlowsOpenSSL
import FlowCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Why a request or a connection failed, in words naming the target and the step.
struct HTTPError: Error, CustomStringConvertible {
    let description: String

    init(_ description: String) { self.description = description }
}

/// An HTTP answer: status, headers (names as sent) and the body (chunked answers already decoded).
struct HTTPResponse {
    let status: Int
    let headers: [(name: String, value: String)]
    let body: [UInt8]

    /// The first header called `name` (case-insensitive).
    func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }
}

/// A connected stream socket, with TLS on top when the target is `https://`. Closed on deinit.
final class Connection {
    private let fd: Int32
    private let what: String
    private var context: OpaquePointer?
    private var tls: OpaquePointer?
    /// libssl's functions, once TLS started.
    private var library: TLSLibrary?

    private init(fd: Int32, what: String) {
        self.fd = fd
        self.what = what
    }

    private var established = false

    deinit {
        if let library {
            if let tls {
                if established { _ = library.shutdown(tls) }
                library.free(tls)
                ERR_clear_error()
            }
            if let context { library.contextFree(context) }
        }
        close(fd)
    }

    /// Connects to `host`:`port` (every address it resolves to, in order); the timeout bounds connect, each send
    /// and each receive.
    static func tcp(host: String, port: UInt16, timeoutSeconds: Int) throws(HTTPError) -> Connection {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let first = list else {
            throw HTTPError("cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(list) }
        var lastError = "no address"
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let info = entry {
            let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue),
                            info.pointee.ai_protocol)
            if fd >= 0 {
                setTimeouts(fd, timeoutSeconds)
                if connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 {
                    return Connection(fd: fd, what: "\(host):\(port)")
                }
                lastError = "cannot connect to \(host):\(port): \(errnoText())"
                close(fd)
            }
            entry = info.pointee.ai_next
        }
        throw HTTPError(lastError)
    }

    /// Connects to the unix socket at `path`.
    static func unix(path: String, timeoutSeconds: Int) throws(HTTPError) -> Connection {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else { throw HTTPError("socket path too long: \(path)") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in bytes.enumerated() { raw[i] = byte }
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HTTPError("cannot create a unix socket: \(errnoText())") }
        setTimeouts(fd, timeoutSeconds)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard rc == 0 else {
            let reason = errnoText()
            close(fd)
            throw HTTPError("cannot connect to unix:\(path): \(reason)")
        }
        return Connection(fd: fd, what: "unix:\(path)")
    }

    private static func setTimeouts(_ fd: Int32, _ seconds: Int) {
        // On Linux the send timeout also bounds connect().
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Starts TLS for `host`: SNI, the certificate verified against the default trust store (`SSL_CERT_FILE`,
    /// `SSL_CERT_DIR` honoured) and its name checked against `host`.
    func startTLS(host: String) throws(HTTPError) {
        // OpenSSL writes to the socket without MSG_NOSIGNAL: a peer that has gone away must not kill the process.
        signal(SIGPIPE, SIG_IGN)
        ERR_clear_error()
        let library = try TLSLibrary.shared.get()
        self.library = library
        guard let context = library.contextNew(library.clientMethod()) else {
            throw HTTPError("TLS setup failed: \(drainOpenSSLErrors())")
        }
        self.context = context
        library.contextSetVerify(context, SSL_VERIFY_PEER, nil)
        guard library.contextDefaultPaths(context) == 1, let tls = library.new(context) else {
            throw HTTPError("TLS setup failed: \(drainOpenSSLErrors())")
        }
        self.tls = tls
        guard library.setFD(tls, fd) == 1, library.setServerName(tls, host), library.setHost(tls, host) == 1 else {
            throw HTTPError("TLS setup for \(host) failed: \(drainOpenSSLErrors())")
        }
        guard library.connect(tls) == 1 else {
            let verify = library.verifyResult(tls)
            let detail = verify == X509_V_OK ? drainOpenSSLErrors()
                : "certificate verification failed: \(String(cString: X509_verify_cert_error_string(verify)))"
            ERR_clear_error()
            throw HTTPError("TLS handshake with \(what) failed: \(detail)")
        }
        established = true
    }

    /// Sends all of `bytes`.
    func write(_ bytes: [UInt8]) throws(HTTPError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { raw -> Int in
                let start = raw.baseAddress! + offset
                if let tls, let library {
                    return Int(library.write(tls, start, Int32(min(raw.count - offset, 1 << 30))))
                }
                return send(fd, start, raw.count - offset, Int32(MSG_NOSIGNAL))
            }
            if n < 0, tls == nil, errno == EINTR { continue }
            guard n > 0 else {
                let reason = tls == nil ? errnoText() : drainOpenSSLErrors()
                throw HTTPError("sending to \(what) failed: \(reason)")
            }
            offset += n
        }
    }

    /// Receives what is available into `buffer` (appended); returns the count, 0 at the end of the stream.
    func read(into buffer: inout [UInt8]) throws(HTTPError) -> Int {
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = chunk.withUnsafeMutableBytes { raw -> Int in
                if let tls, let library { return Int(library.read(tls, raw.baseAddress, Int32(raw.count))) }
                return recv(fd, raw.baseAddress, raw.count, 0)
            }
            if n > 0 {
                buffer.append(contentsOf: chunk[0..<n])
                return n
            }
            if let tls, let library {
                let code = library.getError(tls, Int32(n))
                ERR_clear_error()
                // A peer that closes without close_notify ends the stream as well.
                if code == SSL_ERROR_ZERO_RETURN || code == SSL_ERROR_SYSCALL && errno == 0 { return 0 }
                throw HTTPError("receiving from \(what) failed (TLS error \(code))")
            }
            if n == 0 { return 0 }
            if errno == EINTR { continue }
            let reason = errno == EAGAIN ? "timed out" : errnoText()
            throw HTTPError("receiving from \(what) failed: \(reason)")
        }
    }
}

/// A small HTTP/1.1 client: one request per connection (`Connection: close`), `http://` and `https://`.
enum HTTPClient {
    /// The largest answer read.
    static let maxAnswerBytes = 8 << 20

    /// Sends one request to `target` and returns the answer.
    static func send(_ method: String, to target: CallbackTarget, headers: [(String, String)] = [],
                     body: [UInt8] = [], timeoutSeconds: Int = 10) throws(HTTPError) -> HTTPResponse {
        let connection = try Connection.tcp(host: target.host, port: target.port, timeoutSeconds: timeoutSeconds)
        if target.secure { try connection.startTLS(host: target.host) }
        let defaultPort: UInt16 = target.secure ? 443 : 80
        let hostHeader = target.host.contains(":") ? "[\(target.host)]" : target.host
        var head = "\(method) \(target.path) HTTP/1.1\r\n"
            + "Host: \(hostHeader)\(target.port == defaultPort ? "" : ":\(target.port)")\r\n"
            + "User-Agent: flows-fcgi/\(flowsFCGIVersion)\r\nConnection: close\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if !body.isEmpty || method == "POST" || method == "PUT" { head += "Content-Length: \(body.count)\r\n" }
        try connection.write(Array((head + "\r\n").utf8) + body)
        var answer: [UInt8] = []
        while answer.count < maxAnswerBytes {
            if let complete = try parse(answer, final: false, from: target.url) { return complete }
            if try connection.read(into: &answer) == 0 { break }
        }
        guard let response = try parse(answer, final: true, from: target.url) else {
            throw HTTPError("incomplete HTTP answer from \(target.url)")
        }
        return response
    }

    /// Parses `bytes` as an HTTP answer; `nil` while more is needed (`final`: the stream has ended).
    static func parse(_ bytes: [UInt8], final: Bool, from url: String) throws(HTTPError) -> HTTPResponse? {
        guard let end = headEnd(bytes) else {
            if final { throw HTTPError(bytes.isEmpty ? "no answer from \(url)" : "no HTTP answer from \(url)") }
            return nil
        }
        let lines = String(decoding: bytes[..<end], as: UTF8.self)
            .split(separator: "\r\n", omittingEmptySubsequences: false)
        let parts = lines[0].split(separator: " ")
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            throw HTTPError("no HTTP answer from \(url) (it sent: \(lines[0].prefix(60)))")
        }
        var headers: [(name: String, value: String)] = []
        for line in lines.dropFirst() where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append((String(line[..<colon]), String(line[line.index(after: colon)...]).trimmed))
        }
        var response = HTTPResponse(status: status, headers: headers, body: [])
        let rest = Array(bytes[(end + 4)...])
        if response.header("Transfer-Encoding")?.lowercased().containsBytes("chunked") == true {
            guard let body = try dechunk(rest, from: url) else {
                if final { throw HTTPError("truncated chunked answer from \(url)") }
                return nil
            }
            response = HTTPResponse(status: status, headers: headers, body: body)
        } else if let length = response.header("Content-Length").flatMap({ Int($0) }) {
            guard rest.count >= length else {
                if final { throw HTTPError("truncated answer from \(url) (\(rest.count) of \(length) bytes)") }
                return nil
            }
            response = HTTPResponse(status: status, headers: headers, body: Array(rest.prefix(length)))
        } else {
            guard final || status == 204 || status == 304 else { return nil }
            response = HTTPResponse(status: status, headers: headers, body: status == 204 ? [] : rest)
        }
        return response
    }

    private static func headEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for i in 0...(bytes.count - 4) where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13
            && bytes[i + 3] == 10 {
            return i
        }
        return nil
    }

    /// Decodes a chunked body; `nil` while the last chunk has not arrived.
    private static func dechunk(_ bytes: [UInt8], from url: String) throws(HTTPError) -> [UInt8]? {
        var body: [UInt8] = []
        var i = 0
        while true {
            guard let lineEnd = bytes[i...].firstIndex(of: 10) else { return nil }
            let sizeText = String(decoding: bytes[i..<lineEnd], as: UTF8.self).split(separator: ";").first ?? ""
            guard let size = Int(sizeText.trimmed, radix: 16), size >= 0 else {
                throw HTTPError("malformed chunked answer from \(url)")
            }
            i = lineEnd + 1
            if size == 0 { return body }
            guard bytes.count >= i + size + 2 else { return nil }
            body.append(contentsOf: bytes[i..<(i + size)])
            i += size + 2
        }
    }
}

/// A `multipart/form-data` body (RFC 7578), as the Graph API takes file uploads.
struct MultipartForm {
    /// One part: a form field, or a file when `fileName` is given.
    struct Part {
        let name: String
        let fileName: String?
        let contentType: String?
        let bytes: [UInt8]

        /// A plain field `name=value`.
        static func field(_ name: String, _ value: String) -> Part {
            Part(name: name, fileName: nil, contentType: nil, bytes: Array(value.utf8))
        }

        /// A file `name` called `fileName`, its `bytes` sent as they are.
        static func file(_ name: String, fileName: String, contentType: String, bytes: [UInt8]) -> Part {
            Part(name: name, fileName: fileName, contentType: contentType, bytes: bytes)
        }
    }

    /// The boundary: random, and found in no part.
    let boundary: String
    /// The encoded body.
    let body: [UInt8]
    /// The `Content-Type` header value, with the boundary.
    var contentType: String { "multipart/form-data; boundary=" + boundary }

    /// Encodes `parts` in order. (Names and file names are sent as given: they come from the program, not from
    /// users; a quote or line break in one is replaced so that it cannot end the header.)
    init(_ parts: [Part]) {
        var generator = SystemRandomNumberGenerator()
        var boundary: String
        repeat {
            boundary = "flows-fcgi-" + String(generator.next() as UInt64, radix: 16)
                + String(generator.next() as UInt64, radix: 16)
        } while parts.contains { Self.contains($0.bytes, Array(boundary.utf8)) }
        let safe = { (text: String) in String(text.map { $0 == "\"" || $0 == "\r" || $0 == "\n" ? "_" : $0 }) }
        var body: [UInt8] = []
        for part in parts {
            var head = "--\(boundary)\r\nContent-Disposition: form-data; name=\"\(safe(part.name))\""
            if let fileName = part.fileName { head += "; filename=\"\(safe(fileName))\"" }
            if let type = part.contentType { head += "\r\nContent-Type: \(type)" }
            body += Array((head + "\r\n\r\n").utf8) + part.bytes + Array("\r\n".utf8)
        }
        body += Array("--\(boundary)--\r\n".utf8)
        self.boundary = boundary
        self.body = body
    }

    private static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard haystack.count >= needle.count else { return false }
        return (0...(haystack.count - needle.count)).contains { start in
            haystack[start..<(start + needle.count)].elementsEqual(needle)
        }
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces, tabs and line ends.
    var trimmed: String {
        let blank: Set<Character> = [" ", "\t", "\r", "\n"]
        return String(drop { blank.contains($0) }.reversed().drop { blank.contains($0) }.reversed())
    }
}
