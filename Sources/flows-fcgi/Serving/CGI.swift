import FlowCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Serves one plain-CGI request: parameters from the environment, the body from stdin to end of stream (under the
/// cap; `CONTENT_LENGTH` is not trusted), the answer on stdout.
func serveCGI(endpoint: Endpoint) -> Int32 {
    var params: [(String, String)] = []
    var entry = environ
    while let pointer = entry.pointee {
        if let param = CGIMessage.readParam(pointer) { params.append(param) }
        entry += 1
    }
    var collector = BodyCollector(cap: endpoint.configuration.transportBodyLimit)
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(0, &buffer, buffer.count)
        if n < 0, errno == EINTR { continue }
        if n <= 0 { break }
        buffer.withUnsafeBytes { collector.append(UnsafeRawBufferPointer(rebasing: $0.prefix(n))) }
    }
    let request = collector.request(params: params)
    let metrics = openMetrics(endpoint: endpoint)
    let worker: Worker
    do {
        worker = try Worker(configuration: endpoint.configuration, metrics: metrics)
    } catch {
        endpoint.log.error("cannot open the database", ["error": error.description])
        writeAll(1, CGIMessage.encode(.text(503, "storage unavailable, try again later"), includeBody: true))
        return 0
    }
    defer { worker.close() }
    // Counted in a file of its own like any serving process; folded once 32 files are there (or at a scrape), so
    // not every request pays for rewriting the accumulated file.
    defer { retireMetrics(metrics, endpoint: endpoint, minimumFiles: 32) }
    let response = endpoint.handle(request, worker: worker)
    writeAll(1, CGIMessage.encode(response, includeBody: request.method != "HEAD"))
    // The answer is complete once stdout closes; only then try the callback outbox (a CGI process has no thread
    // of its own for it: each request tries what is due, so deliveries are retried as requests come in).
    if let target = endpoint.configuration.webhook.callback, let database = worker.database {
        close(1)
        CallbackDelivery.deliverDue(database: database, target: target, log: endpoint.log, limit: 5)
    }
    return 0
}

/// Writes every byte to `fd`, retrying short writes; gives up silently when the reader went away.
func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
    bytes.withUnsafeBytes { raw in
        var offset = 0
        while offset < raw.count {
            let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
            if n < 0, errno == EINTR { continue }
            if n <= 0 { return }
            offset += n
        }
    }
}
