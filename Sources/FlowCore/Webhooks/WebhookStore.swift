/// The webhook tables: messages (once per id), status updates (once per id and status), flow completions
/// confirmed by an `nfm_reply` (once per flow token) and Flows alerts.
public enum WebhookStore {
    /// The schema, applied with the flows' migrations when a worker opens its database.
    public static let migrations: [Migration] = [
        Migration(id: "webhook-1", sql: """
            CREATE TABLE webhook_messages (
                id TEXT PRIMARY KEY,
                sender TEXT NOT NULL,
                type TEXT NOT NULL,
                timestamp INTEGER NOT NULL,
                text TEXT NOT NULL,
                flow_token TEXT,
                response_json TEXT,
                raw TEXT NOT NULL,
                received_at INTEGER NOT NULL
            );
            CREATE INDEX webhook_messages_time ON webhook_messages (timestamp);
            CREATE INDEX webhook_messages_sender ON webhook_messages (sender, timestamp);
            CREATE TABLE webhook_statuses (
                message_id TEXT NOT NULL,
                status TEXT NOT NULL,
                timestamp INTEGER NOT NULL,
                recipient TEXT,
                raw TEXT NOT NULL,
                received_at INTEGER NOT NULL,
                PRIMARY KEY (message_id, status)
            );
            CREATE TABLE webhook_confirmations (
                flow_token TEXT PRIMARY KEY,
                message_id TEXT NOT NULL,
                confirmed_at INTEGER NOT NULL
            );
            CREATE TABLE webhook_flow_events (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                entry_id TEXT,
                event TEXT NOT NULL,
                flow_id TEXT,
                raw TEXT NOT NULL UNIQUE,
                received_at INTEGER NOT NULL
            );
            """),
    ] + CallbackOutbox.migrations

    /// What storing a batch changed.
    public struct Stored: Sendable, Equatable {
        /// Messages not seen before.
        public var messages = 0
        /// Status updates not seen before.
        public var statuses = 0
        /// Flow tokens newly confirmed.
        public var confirmations = 0
        /// Flows alerts not seen before, by event name.
        public var newFlowEvents: [String] = []
    }

    /// Stores `batch` in one write transaction; items seen before are left as they are. Each newly confirmed
    /// completion is passed to every one of `flows` (`Flow.confirmed`) and, with `forward`, queued in the callback
    /// outbox, in the same transaction.
    public static func store(_ batch: WebhookBatch, database: Database, now: Int64, flows: [any Flow] = [],
                             forward: Bool = false) throws -> Stored
    {
        try database.writeTransaction { () throws(DatabaseError) -> Stored in
            var stored = Stored()
            for m in batch.messages {
                let inserted = try database.query("""
                    INSERT INTO webhook_messages
                        (id, sender, type, timestamp, text, flow_token, response_json, raw, received_at)
                    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (id) DO NOTHING RETURNING 1
                    """, [.text(m.id), .text(m.from), .text(m.type), .integer(m.timestamp), .text(m.text),
                          m.flowToken.map(SQLValue.text) ?? .null, m.responseJSON.map(SQLValue.text) ?? .null,
                          .text(m.raw), .integer(now)])
                guard !inserted.isEmpty else { continue }
                stored.messages += 1
                if let token = m.flowToken {
                    let confirmed = try database.query("""
                        INSERT INTO webhook_confirmations (flow_token, message_id, confirmed_at) VALUES (?1, ?2, ?3)
                        ON CONFLICT (flow_token) DO NOTHING RETURNING 1
                        """, [.text(token), .text(m.id), .integer(now)])
                    guard !confirmed.isEmpty else { continue }
                    stored.confirmations += 1
                    for flow in flows {
                        try flow.confirmed(token: token, messageID: m.id, database: database, now: now)
                    }
                    if forward {
                        var flowName: String?
                        for flow in flows where flowName == nil {
                            flowName = try flow.callbackFlowName(token: token, database: database)
                        }
                        try CallbackOutbox.enqueue(m, token: token, flow: flowName, database: database, now: now)
                    }
                }
            }
            for s in batch.statuses {
                let inserted = try database.query("""
                    INSERT INTO webhook_statuses (message_id, status, timestamp, recipient, raw, received_at)
                    VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (message_id, status) DO NOTHING RETURNING 1
                    """, [.text(s.messageID), .text(s.status), .integer(s.timestamp),
                          s.recipient.map(SQLValue.text) ?? .null, .text(s.raw), .integer(now)])
                stored.statuses += inserted.count
            }
            for event in batch.flowEvents {
                let inserted = try database.query("""
                    INSERT INTO webhook_flow_events (entry_id, event, flow_id, raw, received_at)
                    VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (raw) DO NOTHING RETURNING 1
                    """, [event.entryID.map(SQLValue.text) ?? .null, .text(event.event),
                          event.flowID.map(SQLValue.text) ?? .null, .text(event.raw), .integer(now)])
                if !inserted.isEmpty { stored.newFlowEvents.append(event.event) }
            }
            return stored
        }
    }

    /// True when the flow completion of `token` was confirmed by an `nfm_reply`.
    public static func isConfirmed(database: Database, token: String) throws(DatabaseError) -> Bool {
        try !database.query("SELECT 1 FROM webhook_confirmations WHERE flow_token = ?1", [.text(token)]).isEmpty
    }

    /// Session counts of a flow whose sessions live in `table` (a `flow_token` and a 0/1 `completed` column):
    /// started, completed, and confirmed by an `nfm_reply` webhook.
    public static func flowCounts(database: Database, sessionTable table: String)
        throws(DatabaseError) -> (started: Int64, completed: Int64, confirmed: Int64)
    {
        // The name comes from code (`Flow.sessionTable`), never from a request; checked all the same.
        guard !table.isEmpty, table.utf8.allSatisfy({ $0 == UInt8(ascii: "_") || ($0 >= 0x30 && $0 <= 0x39)
            || ($0 >= 0x61 && $0 <= 0x7A) })
        else { return (0, 0, 0) }
        let row = try database.query("""
            SELECT count(*), coalesce(sum(s.completed), 0), count(c.flow_token)
            FROM \(table) s LEFT JOIN webhook_confirmations c ON c.flow_token = s.flow_token
            """).first ?? []
        return (row.first?.int ?? 0, row.dropFirst().first?.int ?? 0, row.dropFirst(2).first?.int ?? 0)
    }

    /// Deletes webhook data received before `before` (messages with their sender, text and raw JSON, status
    /// updates, confirmations, Flows alerts, and callback outbox items, delivered or not) in one write transaction,
    /// rolled back when `dryRun`; returns the counts as `(table, rows)`. The read API's statistics then count only
    /// what is left.
    public static func purge(database: Database, before: Int64, dryRun: Bool) throws(DatabaseError) -> [(String, Int)] {
        try database.writeTransaction(commit: !dryRun) { () throws(DatabaseError) -> [(String, Int)] in
            let deletes = [
                ("webhook_messages", "DELETE FROM webhook_messages WHERE received_at < ?1 RETURNING 1"),
                ("webhook_statuses", "DELETE FROM webhook_statuses WHERE received_at < ?1 RETURNING 1"),
                ("webhook_confirmations", "DELETE FROM webhook_confirmations WHERE confirmed_at < ?1 RETURNING 1"),
                ("webhook_flow_events", "DELETE FROM webhook_flow_events WHERE received_at < ?1 RETURNING 1"),
                ("webhook_outbox", "DELETE FROM webhook_outbox WHERE created_at < ?1 RETURNING 1"),
            ]
            var counts: [(String, Int)] = []
            for (table, sql) in deletes {
                counts.append((table, try database.query(sql, [.integer(before)]).count))
            }
            return counts
        }
    }
}
