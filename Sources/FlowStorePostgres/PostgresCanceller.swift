import CFlowsPostgres
import Synchronization

/// Cancels the statement a connection is running, from another thread (a watchdog whose request is past its
/// deadline): libpq's `PQcancel`, which asks the server over a connection of its own. One per connection, kept
/// across reconnects (the server process it addresses is updated each time the connection is made).
public final class PostgresCanceller: Sendable {
    /// The `PGcancel` of the current server connection, as a bit pattern (0: none).
    private let cancel = Mutex<UInt>(0)

    /// A canceller with no connection yet.
    public init() {}

    deinit { replace(with: nil) }

    /// After a connection is made: addresses its server process (`PQgetCancel`); `nil` after it is closed.
    func replace(with handle: OpaquePointer?) {
        guard let pq = try? LibPQ.load() else { return }
        cancel.withLock { bits in
            if let old = OpaquePointer(bitPattern: bits) { pq.PQfreeCancel(old) }
            let fresh = handle.flatMap { pq.PQgetCancel($0) }
            bits = fresh.map { UInt(bitPattern: Int(bitPattern: UnsafeRawPointer($0))) } ?? 0
        }
    }

    /// Asks the server to cancel the statement running now, if any (the statement then fails with SQLSTATE 57014,
    /// `.statementTimeout`); true when the request was delivered.
    @discardableResult
    public func cancelRunningStatement() -> Bool {
        guard let pq = try? LibPQ.load() else { return false }
        return cancel.withLock { bits -> Bool in
            guard let handle = OpaquePointer(bitPattern: bits) else { return false }
            var error = [CChar](repeating: 0, count: 256)
            return pq.PQcancel(handle, &error, Int32(error.count)) == 1
        }
    }
}
