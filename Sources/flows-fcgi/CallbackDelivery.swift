import FlowCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Forwards queued completions (the callback outbox) to `CALLBACK_URL`, apart from answering requests: a FastCGI
/// process runs one delivery thread with its own database connection; a CGI process tries once after answering.
enum CallbackDelivery {
    /// One POST with a JSON body over HTTP/1.1; `nil` on a 2xx answer, else why it failed.
    static func post(_ body: String, to target: CallbackTarget, timeoutSeconds: Int = 5) -> String? {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(target.host, String(target.port), &hints, &list)
        guard rc == 0, let first = list else { return "cannot resolve \(target.host): \(String(cString: gai_strerror(rc)))" }
        defer { freeaddrinfo(list) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        var fd: Int32 = -1
        var lastError = "no address"
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let info = entry {
            fd = socket(info.pointee.ai_family, info.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue),
                        info.pointee.ai_protocol)
            if fd >= 0 {
                // On Linux the send timeout also bounds connect().
                setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                if connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 { break }
                lastError = "cannot connect to \(target.host):\(target.port): \(errnoText())"
                close(fd)
                fd = -1
            }
            entry = info.pointee.ai_next
        }
        guard fd >= 0 else { return lastError }
        defer { close(fd) }
        let payload = Array(body.utf8)
        let head = "POST \(target.path) HTTP/1.1\r\nHost: \(target.host):\(target.port)\r\n"
            + "Content-Type: application/json\r\nContent-Length: \(payload.count)\r\nConnection: close\r\n"
            + "User-Agent: flows-fcgi/\(flowsFCGIVersion)\r\n\r\n"
        let request = Array(head.utf8) + payload
        let sent = request.withUnsafeBytes { raw -> Bool in
            var offset = 0
            while offset < raw.count {
                let n = send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                if n < 0, errno == EINTR { continue }
                if n <= 0 { return false }
                offset += n
            }
            return true
        }
        guard sent else { return "sending to \(target.url) failed: \(errnoText())" }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1024)
        while !answer.contains(0x0A), answer.count < 8192 {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n < 0, errno == EINTR { continue }
            if n <= 0 { break }
            answer.append(contentsOf: buffer[0..<n])
        }
        let statusLine = String(decoding: answer.prefix { $0 != 0x0D && $0 != 0x0A }, as: UTF8.self)
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            return "no HTTP answer from \(target.url)"
        }
        return (200..<300).contains(status) ? nil : "\(target.url) answered HTTP \(status)"
    }

    /// Delivers every due item (at most `limit`); returns how many were delivered.
    @discardableResult
    static func deliverDue(database: Database, target: CallbackTarget, log: Logger, limit: Int = 50) -> Int {
        var delivered = 0
        for _ in 0..<limit {
            do {
                guard let item = try CallbackOutbox.claim(database: database, now: Int64(time(nil))) else { break }
                if let failure = post(item.payload, to: target) {
                    try CallbackOutbox.failed(item, error: failure, database: database, now: Int64(time(nil)))
                    log.warning("callback delivery failed; will retry", [
                        "outbox_id": String(item.id), "attempt": String(item.attempts + 1), "error": failure,
                        "retry_in_s": String(CallbackOutbox.backoff(afterAttempts: item.attempts)),
                    ])
                    break  // the target is likely down: leave the rest for later
                }
                try CallbackOutbox.delivered(item, database: database, now: Int64(time(nil)))
                log.info("callback delivered", ["outbox_id": String(item.id), "attempt": String(item.attempts + 1)])
                delivered += 1
            } catch {
                log.error("callback outbox unavailable", ["error": String(describing: error)])
                break
            }
        }
        return delivered
    }

    /// Starts the delivery thread of a FastCGI process, when a callback URL and a database are configured. It polls
    /// the outbox every second and stops when the process is asked to stop.
    static func start(configuration: Configuration, log: Logger) -> pthread_t? {
        guard let target = configuration.webhook.callback, let path = configuration.databasePath else { return nil }
        let timeout = configuration.busyTimeoutMilliseconds
        return startThread {
            let database: Database
            do {
                database = try Database(path: path, busyTimeoutMilliseconds: timeout)
            } catch {
                log.error("callback delivery cannot open the database", ["error": String(describing: error)])
                return
            }
            defer { database.close() }
            while !stopRequested.load(ordering: .relaxed) {
                deliverDue(database: database, target: target, log: log)
                for _ in 0..<10 where !stopRequested.load(ordering: .relaxed) {
                    var pause = timespec(tv_sec: 0, tv_nsec: 100_000_000)
                    nanosleep(&pause, nil)
                }
            }
        }
    }
}
