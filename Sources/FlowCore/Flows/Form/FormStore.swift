/// One form flow token's progress, as stored in `form_sessions`.
struct FormSession: Sendable {
    /// The last screen the endpoint answered.
    let screen: String
    /// The values collected so far (empty once completed: the submission holds them).
    let collected: [String: JSONValue]
    /// True once the submission is stored.
    let completed: Bool
    /// When the session was created (its first saved step), seconds since the epoch.
    let createdAt: Int64
}

/// A stored submission of a form flow.
public struct FormSubmission: Sendable, Equatable {
    /// The row id, sent to the business as `submission_id`.
    public let id: Int64
    /// The flow's name, e.g. `feedback`.
    public let flow: String
    /// The flow token that submitted it.
    public let flowToken: String
    /// When it was stored, seconds since the epoch.
    public let createdAt: Int64
    /// When its `nfm_reply` webhook arrived, if it did.
    public let confirmedAt: Int64?
    /// Every value submitted, by name.
    public let values: [String: JSONValue]
}

/// The tables every form flow shares: `form_sessions` (one row per flow and token: the screen reached and the
/// values collected), `form_submissions` (one row per completed token, `UNIQUE (flow, flow_token)`) and
/// `form_tombstones` (SHA-256 of each purged token, so it keeps getting 427).
public enum FormStore {
    /// The schema (applied once, whichever form flow's migrations name it first).
    public static let migrations: [Migration] = [
        Migration(id: "form-1", sql: """
            CREATE TABLE form_sessions (
                flow TEXT NOT NULL,
                flow_token TEXT NOT NULL,
                screen TEXT NOT NULL,
                values_json TEXT NOT NULL,
                completed INTEGER NOT NULL DEFAULT 0 CHECK (completed IN (0, 1)),
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL,
                PRIMARY KEY (flow, flow_token)
            ) WITHOUT ROWID;
            CREATE TABLE form_submissions (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                flow TEXT NOT NULL,
                flow_token TEXT NOT NULL,
                values_json TEXT,
                submitted_json TEXT,
                answer_json TEXT,
                created_at INTEGER NOT NULL,
                confirmed_at INTEGER,
                purged_at INTEGER,
                UNIQUE (flow, flow_token)
            );
            CREATE INDEX form_submissions_flow ON form_submissions (flow, id);
            CREATE TABLE form_tombstones (
                flow TEXT NOT NULL,
                token_sha256 TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                PRIMARY KEY (flow, token_sha256)
            ) WITHOUT ROWID;
            """),
    ]

    /// The session of `token`; a purged one comes back completed (its tombstone), `nil` when there is none.
    static func session(database: Database, flow: String, token: String) throws(DatabaseError) -> FormSession? {
        let rows = try database.query("""
            SELECT screen, values_json, completed, created_at FROM form_sessions WHERE flow = ?1 AND flow_token = ?2
            """, [.text(flow), .text(token)])
        guard let row = rows.first, row.count == 4 else {
            let purged = try database.query("SELECT 1 FROM form_tombstones WHERE flow = ?1 AND token_sha256 = ?2",
                                            [.text(flow), .text(Retention.tokenDigest(token))])
            return purged.isEmpty ? nil : FormSession(screen: "", collected: [:], completed: true, createdAt: 0)
        }
        let collected = (row[1].string.flatMap { try? JSONParser.parse($0) }?.objectValue) ?? [:]
        return FormSession(screen: row[0].string ?? "", collected: collected, completed: row[2].int == 1,
                           createdAt: row[3].int ?? 0)
    }

    /// Saves the step that answered `screen` with `collected` (call inside a write transaction).
    static func save(database: Database, flow: String, token: String, screen: String,
                     collected: [String: JSONValue], completed: Bool, now: Int64) throws(DatabaseError) {
        try database.query("""
            INSERT INTO form_sessions (flow, flow_token, screen, values_json, completed, created_at, updated_at)
            VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
            ON CONFLICT (flow, flow_token) DO UPDATE SET screen = excluded.screen,
                values_json = excluded.values_json, completed = excluded.completed, updated_at = excluded.updated_at
            """, [.text(flow), .text(token), .text(screen), .text(JSONValue.object(collected).text),
                  .integer(completed ? 1 : 0), .integer(now)])
    }

    /// Stores the submission of `token` and returns its id (call inside the write transaction that checked the
    /// session is not completed). `submitted` is the completing request (screen and payload) for recognising an
    /// identical retry; `answer` the answer's clear text when it is not `SUCCESS`.
    static func submit(database: Database, flow: String, token: String, values: [String: JSONValue],
                       submitted: String, answer: String?, now: Int64) throws(DatabaseError) -> Int64 {
        try database.query("""
            INSERT INTO form_submissions (flow, flow_token, values_json, submitted_json, answer_json, created_at)
            VALUES (?1, ?2, ?3, ?4, ?5, ?6)
            """, [.text(flow), .text(token), .text(JSONValue.object(values).text), .text(submitted),
                  answer.map(SQLValue.text) ?? .null, .integer(now)])
        return database.lastInsertRowID
    }

    /// The completing request and answer of `token`'s submission: `nil` when it is gone (purged).
    static func completion(database: Database, flow: String,
                           token: String) throws(DatabaseError) -> (id: Int64, submitted: String, answer: String?)? {
        let rows = try database.query("""
            SELECT id, submitted_json, answer_json FROM form_submissions
            WHERE flow = ?1 AND flow_token = ?2 AND submitted_json IS NOT NULL
            """, [.text(flow), .text(token)])
        guard let row = rows.first, let id = row[0].int, let submitted = row[1].string else { return nil }
        return (id, submitted, row[2].string)
    }

    /// Submissions of `flow` (not purged) created at or after `since`, newest first, and how many there are.
    public static func list(database: Database, flow: String, since: Int64? = nil, limit: Int = 100,
                            offset: Int = 0) throws(DatabaseError) -> (total: Int64, page: [FormSubmission]) {
        let filter = "WHERE flow = ?1 AND values_json IS NOT NULL AND created_at >= ?2"
        let arguments: [SQLValue] = [.text(flow), .integer(since ?? Int64.min)]
        let total = try database.query("SELECT count(*) FROM form_submissions \(filter)", arguments)
            .first?.first?.int ?? 0
        let rows = try database.query("""
            SELECT id, flow_token, created_at, confirmed_at, values_json FROM form_submissions \(filter)
            ORDER BY id DESC LIMIT ?3 OFFSET ?4
            """, arguments + [.integer(Int64(max(limit, -1))), .integer(Int64(max(offset, 0)))])
        let page = rows.compactMap { row -> FormSubmission? in
            guard row.count == 5, let id = row[0].int, let token = row[1].string, let created = row[2].int else {
                return nil
            }
            let values = (row[4].string.flatMap { try? JSONParser.parse($0) }?.objectValue) ?? [:]
            return FormSubmission(id: id, flow: flow, flowToken: token, createdAt: created, confirmedAt: row[3].int,
                                  values: values)
        }
        return (total, page)
    }

    /// Marks `token`'s submission of `flow` confirmed by its `nfm_reply`; true when there was one to mark.
    @discardableResult
    static func confirm(database: Database, flow: String, token: String, now: Int64) throws(DatabaseError) -> Bool {
        try !database.query("""
            UPDATE form_submissions SET confirmed_at = ?3 WHERE flow = ?1 AND flow_token = ?2 AND confirmed_at IS NULL
            RETURNING 1
            """, [.text(flow), .text(token), .integer(now)]).isEmpty
    }

    /// Purges `flow`'s personal data in one write transaction (rolled back when `dryRun`): submissions created
    /// before `before` lose their values and token (`purged:<id>`; id, flow and dates stay), sessions created
    /// before `sessionsBefore` are deleted; each purged token leaves a tombstone (SHA-256) so it keeps getting 427.
    /// `stamp` dates the purge (`purged_at`, the tombstones' `created_at`).
    static func purge(database: Database, flow: String, before: Int64, sessionsBefore: Int64, stamp: Int64,
                      dryRun: Bool) throws(DatabaseError) -> [(String, Int)] {
        try database.writeTransaction(commit: !dryRun) { () throws(DatabaseError) -> [(String, Int)] in
            func tombstone(_ token: String?) throws(DatabaseError) {
                try database.query("""
                    INSERT INTO form_tombstones (flow, token_sha256, created_at) VALUES (?1, ?2, ?3)
                    ON CONFLICT DO NOTHING
                    """, [.text(flow), .text(Retention.tokenDigest(token ?? "")), .integer(stamp)])
            }
            let submissions = try database.query("""
                SELECT flow_token FROM form_submissions WHERE flow = ?1 AND created_at < ?2 AND purged_at IS NULL
                """, [.text(flow), .integer(before)])
            for row in submissions { try tombstone(row[0].string) }
            try database.query("""
                UPDATE form_submissions SET values_json = NULL, submitted_json = NULL, answer_json = NULL,
                    flow_token = 'purged:' || id, purged_at = ?3
                WHERE flow = ?1 AND created_at < ?2 AND purged_at IS NULL
                """, [.text(flow), .integer(before), .integer(stamp)])
            let sessions = try database.query(
                "SELECT flow_token FROM form_sessions WHERE flow = ?1 AND created_at < ?2",
                [.text(flow), .integer(sessionsBefore)])
            for row in sessions { try tombstone(row[0].string) }
            try database.query("DELETE FROM form_sessions WHERE flow = ?1 AND created_at < ?2",
                               [.text(flow), .integer(sessionsBefore)])
            return [("form_submissions \(flow) (values removed)", submissions.count),
                    ("form_sessions \(flow)", sessions.count)]
        }
    }

    /// Started, completed and confirmed sessions of `flow` (the read API's statistics).
    static func counts(database: Database, flow: String)
        throws(DatabaseError) -> (started: Int64, completed: Int64, confirmed: Int64)
    {
        let row = try database.query("""
            SELECT count(*), coalesce(sum(s.completed), 0), count(c.flow_token)
            FROM form_sessions s LEFT JOIN webhook_confirmations c ON c.flow_token = s.flow_token
            WHERE s.flow = ?1
            """, [.text(flow)]).first ?? []
        return (row.first?.int ?? 0, row.dropFirst().first?.int ?? 0, row.dropFirst(2).first?.int ?? 0)
    }
}
