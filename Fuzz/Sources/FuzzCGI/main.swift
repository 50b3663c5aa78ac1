import FlowCore
import FuzzSupport

/// FastCGI params and body handling: fuzzed `NAME=value` params and body chunks through `CGIMessage.readParam`,
/// `BodyCollector`, `Endpoint.handle` (every route: flows, webhook, read API, metrics, health) and
/// `CGIMessage.encode`, exactly as the FastCGI and CGI adapters chain them.
///
/// Input: a flags byte, a chunk-size byte (n: chunks of 8n bytes; 0: one chunk), then NUL-terminated params up
/// to an empty one, then the body.
/// Flags: 1 signs the body with the app secret (replacing any `HTTP_X_HUB_SIGNATURE_256` param), 2 adds
/// `HTTP_AUTHORIZATION: Bearer <API_TOKEN>`, 4 logs JSON lines instead of text, 8 adds a correct `CONTENT_LENGTH`.
///
/// Invariants: `readParam` keeps exactly the names the endpoint reads, split as both `splitParam` forms split them
/// (which agree); the answer starts with `Status: <code> <reason>` for a code the endpoint documents (never 500 or
/// 503: the database is always available); every header line is one `Name: value` line; `Content-Length` equals
/// the body that follows (none for HEAD); every log line is one well-formed line.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCGI(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let bytes = fuzzBytes(start, count)
    guard bytes.count >= 2 else { return 0 }
    let flags = bytes[0]
    let chunkSize = bytes[1] == 0 ? Int.max : Int(bytes[1]) * 8
    var params: [(String, String)] = []
    var index = 2
    while index < bytes.count {
        let end = bytes[index...].firstIndex(of: 0) ?? bytes.count
        if end == index {
            index += 1
            break
        }
        if let param = read(Array(bytes[index..<end])) { params.append(param) }
        index = end + 1
    }
    let body = Array(bytes[min(index, bytes.count)...])
    if flags & 1 != 0 {
        params.removeAll { $0.0 == Signature.parameterName }
        params.append((Signature.parameterName, Signature.header(for: body, secret: Array(FuzzService.appSecret.utf8))))
    }
    if flags & 2 != 0 { params.append(("HTTP_AUTHORIZATION", "Bearer \(FuzzService.apiToken)")) }
    if flags & 8 != 0 { params.append(("CONTENT_LENGTH", String(body.count))) }

    var collector = BodyCollector(cap: Process.service.textEndpoint.configuration.transportBodyLimit)
    body.withUnsafeBytes { raw in
        var offset = 0
        while offset < raw.count {
            let next = offset + min(chunkSize, raw.count - offset)
            collector.append(UnsafeRawBufferPointer(rebasing: raw[offset..<next]))
            offset = next
        }
    }
    require(collector.tooLarge ? collector.body.isEmpty && body.count > collector.cap : collector.body == body,
            "the body collector lost or kept the wrong bytes")
    let request = collector.request(params: params)
    let json = flags & 4 != 0
    let response = (json ? Process.service.jsonEndpoint : Process.service.textEndpoint).handle(request, worker: Process.service.worker)
    let includeBody = request.method != "HEAD"
    check(CGIMessage.encode(response, includeBody: includeBody), response: response, includeBody: includeBody)
    Process.service.checkLog(json: json)
    Process.service.countRun()
    return 0
}

/// Reads one param as the transports do: `readParam` on a C string, which keeps only the names the endpoint reads
/// (`EndpointRequest.parameterNames`). Checked against both `splitParam` forms on the same bytes.
private func read(_ entry: [UInt8]) -> (String, String)? {
    let fromBuffer = entry.withUnsafeBufferPointer { CGIMessage.splitParam($0) }
    let (fromCString, kept) = (entry + [0]).withUnsafeBufferPointer { buffer in
        buffer.withMemoryRebound(to: CChar.self) {
            (CGIMessage.splitParam($0.baseAddress!), CGIMessage.readParam($0.baseAddress!))
        }
    }
    require(fromBuffer == fromCString, "the two splitParam forms disagree")
    let name = entry.prefix { $0 != UInt8(ascii: "=") }
    let wanted = EndpointRequest.parameterNames.contains { known in
        known.withUTF8Buffer { $0.elementsEqual(name) }
    }
    require(wanted == (kept != nil), "readParam kept or dropped the wrong parameter")
    require(kept.map { $0 == fromBuffer } ?? true, "readParam splits differently from splitParam")
    return kept
}

/// The statuses the endpoint documents (500 and 503 are left out: with an available database they are bugs).
private let knownStatuses: Set<Int> = [200, 400, 401, 403, 404, 405, 413, 421, 427, 432]

private func check(_ encoded: [UInt8], response: EndpointResponse, includeBody: Bool) {
    require(knownStatuses.contains(response.status), "unexpected status \(response.status): "
        + String(decoding: response.body.prefix(300), as: UTF8.self))
    let separator: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A]
    guard let end = encoded.indices.first(where: { encoded[$0...].starts(with: separator) }) else {
        fatalError("fuzz invariant broken: the answer has no blank line after its headers")
    }
    let lines = encoded[..<(end + 2)].split(separator: 0x0A, omittingEmptySubsequences: false).dropLast()
    require(lines.allSatisfy { $0.last == 0x0D }, "a header line ends without CR LF")
    let texts = lines.map { String(decoding: $0.dropLast(), as: UTF8.self) }
    require(texts.first == "Status: \(response.status) \(EndpointResponse.reason(response.status))",
            "the first line is not the status: \(texts.first ?? "")")
    var contentLength: Int?
    for line in texts.dropFirst() {
        let parts = line.split(separator: ":", maxSplits: 1)
        require(parts.count == 2 && parts[1].hasPrefix(" ") && !parts[0].isEmpty
                    && parts[0].utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) && !line.utf8.contains(0x0D),
                "a malformed header line: \(line)")
        if parts[0] == "Content-Length" {
            require(contentLength == nil, "Content-Length twice")
            contentLength = Int(parts[1].dropFirst())
        }
    }
    let rest = encoded.count - end - separator.count
    require(contentLength == response.body.count, "Content-Length is not the body length")
    require(rest == (includeBody ? response.body.count : 0), "the bytes after the headers are not the body")
}

/// What the target sets up once per process.
private enum Process {
    /// The endpoint and its database; body limits at their minimum (1024), so 413 is reached. Reset every 2,000
    /// runs: `/metrics` renders every series the worker has counted, and fuzzing counts many.
    nonisolated(unsafe) static let service = FuzzService(extra: ["MAX_BODY_BYTES": "1024",
                                                                  "WEBHOOK_MAX_BODY_BYTES": "1024"],
                                                          resetInterval: 2000)
}

runLibFuzzer(fuzzCGI)
