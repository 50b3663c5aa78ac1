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
    /// One POST with a JSON body (HTTP/1.1, over TLS for `https://`); `nil` on a 2xx answer, else why it failed.
    static func post(_ body: String, to target: CallbackTarget, timeoutSeconds: Int = 5) -> String? {
        do {
            let answer = try HTTPClient.send("POST", to: target, headers: [("Content-Type", "application/json")],
                                             body: Array(body.utf8), timeoutSeconds: timeoutSeconds)
            return (200..<300).contains(answer.status) ? nil : "\(target.url) answered HTTP \(answer.status)"
        } catch {
            return error.description
        }
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
        guard let target = configuration.webhook.callback, let location = configuration.database else { return nil }
        let timeout = configuration.busyTimeoutMilliseconds
        return startThread {
            let database: Database
            do {
                database = try location.open(busyTimeoutMilliseconds: timeout)
            } catch {
                log.error("callback delivery cannot open the database", ["error": String(describing: error)])
                return
            }
            defer { database.close() }
            repeat {
                deliverDue(database: database, target: target, log: log)
            } while pauseUnlessStopping(seconds: 1)
        }
    }
}
