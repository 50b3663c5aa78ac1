/// Where confirmed flow completions are forwarded (`CALLBACK_URL=http(s)://host[:port]/path`); also the parsed form
/// of any http(s) URL the operator commands send to.
public struct CallbackTarget: Sendable, Equatable {
    /// The host name or address to connect to.
    public let host: String
    /// The TCP port.
    public let port: UInt16
    /// The request path (with query, if any).
    public let path: String
    /// The URL as configured, for messages: a password or secret query value in it hidden
    /// (`Settings.hidingURLSecrets`), so log lines and errors can quote it.
    public let url: String
    /// `true` for `https://` (TLS, certificate verified against the system's trust store or `SSL_CERT_FILE`).
    public let secure: Bool

    /// Parses `url`, an `http://` or `https://` URL; `setting` names it in error messages.
    public init(url: String, setting: String = "CALLBACK_URL") throws(ConfigError) {
        let secure = url.hasPrefix("https://")
        guard secure || url.hasPrefix("http://") else {
            throw ConfigError(setting: setting, value: url, "expected an http:// or https:// URL")
        }
        let rest = url.dropFirst(secure ? "https://".count : "http://".count)
        let authority = rest.prefix { $0 != "/" && $0 != "?" }
        let path = String(rest.dropFirst(authority.count))
        guard !authority.contains("@") else {
            throw ConfigError(setting: setting, value: url, "user names and passwords in the URL are not supported")
        }
        var host = String(authority)
        var port: UInt16 = secure ? 443 : 80
        if let colon = authority.lastIndex(of: ":"), !authority.hasSuffix("]") {
            guard let parsed = UInt16(authority[authority.index(after: colon)...]), parsed > 0 else {
                throw ConfigError(setting: setting, value: url, "invalid port")
            }
            port = parsed
            host = String(authority[..<colon])
        }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else {
            throw ConfigError(setting: setting, value: url, "expected http(s)://host[:port]/path")
        }
        self.host = host
        self.port = port
        self.path = path.isEmpty ? "/" : (path.hasPrefix("?") ? "/" + path : path)
        self.url = Settings.hidingURLSecrets(url)
        self.secure = secure
    }
}

/// One completion waiting to be forwarded.
public struct CallbackItem: Sendable, Equatable {
    /// The outbox row.
    public let id: Int64
    /// The JSON body to POST.
    public let payload: String
    /// Attempts made before this one.
    public let attempts: Int
}

/// The outbox: completions confirmed by an `nfm_reply` are queued in the same transaction that stores the webhook,
/// then POSTed to `CALLBACK_URL` by every responder process's delivery thread, with retries and exponential
/// backoff, so a business system that was down still receives them. Delivery is at least once: the receiver should
/// de-duplicate on `flow_token`.
public enum CallbackOutbox {
    /// The schema (applied with the webhook tables).
    public static let migrations: [Migration] = [
        Migration(id: "webhook-outbox-1", sql: """
            CREATE TABLE webhook_outbox (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                flow_token TEXT NOT NULL UNIQUE,
                payload TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at INTEGER NOT NULL,
                lease_until INTEGER NOT NULL DEFAULT 0,
                delivered_at INTEGER,
                last_error TEXT
            );
            CREATE INDEX webhook_outbox_due ON webhook_outbox (delivered_at, next_attempt_at);
            """),
    ]

    /// How long a claimed item is reserved for the process delivering it.
    public static let leaseSeconds: Int64 = 60

    /// The wait before attempt `attempts + 1`: 5 s doubling per attempt, at most an hour.
    public static func backoff(afterAttempts attempts: Int) -> Int64 {
        min(5 << Int64(min(attempts, 20)), 3600)
    }

    /// Queues the completion of `message` (call inside the webhook's write transaction); `flow` names the form flow
    /// whose submission it confirms, if any.
    static func enqueue(_ message: WebhookMessage, token: String, flow: String? = nil, database: Database,
                        now: Int64) throws(DatabaseError) {
        let response = message.responseJSON.flatMap { try? JSONParser.parse($0) } ?? .null
        var fields: [String: JSONValue] = [
            "flow_token": .string(token), "message_id": .string(message.id), "from": .string(message.from),
            "timestamp": .number(String(message.timestamp)), "response": response,
        ]
        if let flow { fields["flow"] = .string(flow) }
        let payload = JSONValue.object(fields).text
        try database.query("""
            INSERT INTO webhook_outbox (flow_token, payload, created_at, next_attempt_at) VALUES (?1, ?2, ?3, ?3)
            ON CONFLICT (flow_token) DO NOTHING
            """, [.text(token), .text(payload), .integer(now)])
    }

    /// Claims the oldest due item for `leaseSeconds`, so other processes skip it; `nil` when none is due.
    public static func claim(database: Database, now: Int64) throws(DatabaseError) -> CallbackItem? {
        let rows = try database.query("""
            UPDATE webhook_outbox SET lease_until = ?1 + ?2
            WHERE id = (SELECT id FROM webhook_outbox
                        WHERE delivered_at IS NULL AND next_attempt_at <= ?1 AND lease_until <= ?1
                        ORDER BY next_attempt_at, id LIMIT 1)
            RETURNING id, payload, attempts
            """, [.integer(now), .integer(leaseSeconds)])
        guard let row = rows.first, let id = row[0].int, let payload = row[1].string, let attempts = row[2].int else {
            return nil
        }
        return CallbackItem(id: id, payload: payload, attempts: Int(attempts))
    }

    /// Records a successful delivery.
    public static func delivered(_ item: CallbackItem, database: Database, now: Int64) throws(DatabaseError) {
        try database.query("""
            UPDATE webhook_outbox SET delivered_at = ?2, attempts = attempts + 1, lease_until = 0, last_error = NULL
            WHERE id = ?1
            """, [.integer(item.id), .integer(now)])
    }

    /// Records a failed attempt and schedules the next one with backoff.
    public static func failed(_ item: CallbackItem, error: String, database: Database, now: Int64) throws(DatabaseError) {
        try database.query("""
            UPDATE webhook_outbox SET attempts = attempts + 1, lease_until = 0, last_error = ?2, next_attempt_at = ?3
            WHERE id = ?1
            """, [.integer(item.id), .text(String(error.prefix(300))), .integer(now + backoff(afterAttempts: item.attempts))])
    }

    /// Items not delivered yet (for tests and the operator).
    public static func pendingCount(database: Database) throws(DatabaseError) -> Int {
        Int(try database.query("SELECT count(*) FROM webhook_outbox WHERE delivered_at IS NULL").first?.first?.int ?? 0)
    }
}
