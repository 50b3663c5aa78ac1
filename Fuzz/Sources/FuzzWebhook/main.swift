import FlowCore
import FuzzSupport

/// The webhook body: `WebhookBatch.parse` on the raw POST body and, when it parses, `WebhookStore.store` into the
/// service's SQLite database (with callback forwarding on every other input, so the outbox is written too).
///
/// Invariants: storing a parsed batch never fails (the database is always available); it stores at most what the
/// batch holds; storing the same batch again stores nothing new (delivery is idempotent).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWebhook(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let bytes = fuzzBytes(start, count)
    defer { Process.service.countRun() }
    guard let batch = try? WebhookBatch.parse(bytes) else { return 0 }
    let forward = bytes.count % 2 == 1
    do {
        let stored = try WebhookStore.store(batch, database: Process.service.database, now: FuzzService.now, forward: forward)
        require(stored.messages <= batch.messages.count && stored.statuses <= batch.statuses.count
                    && stored.confirmations <= stored.messages && stored.newFlowEvents.count <= batch.flowEvents.count,
                "stored more than the batch holds")
        let again = try WebhookStore.store(batch, database: Process.service.database, now: FuzzService.now, forward: forward)
        require(again.messages == 0 && again.statuses == 0 && again.confirmations == 0 && again.newFlowEvents.isEmpty,
                "storing the same batch twice stored something new: \(again)")
    } catch {
        fatalError("fuzz invariant broken: storing a parsed webhook failed: \(error)")
    }
    return 0
}

/// What the target sets up once per process.
private enum Process {
    /// The endpoint and its database.
    nonisolated(unsafe) static let service = FuzzService()
}

runLibFuzzer(fuzzWebhook)
