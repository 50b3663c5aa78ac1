/// One stored expense.
public struct Expense: Sendable, Equatable {
    /// The row id, also sent to the business as `expense_id`.
    public let id: Int64
    /// When it was stored, in seconds since the epoch.
    public let createdAt: Int64
    /// The flow token of the session that stored it.
    public let flowToken: String
    /// The amount in hundredths of `currency` (1250 is 12.50).
    public let amountMinor: Int64
    /// The ISO 4217 code configured when it was stored, e.g. `EUR`.
    public let currency: String
    /// The category id, e.g. `food`.
    public let category: String
    /// The user's description, `nil` when left empty.
    public let description: String?
    /// The day of the expense, `YYYY-MM-DD`.
    public let expenseDate: String

    /// The amount as exact decimal text, e.g. `12.50`.
    public var amount: String { ExpenseAmount.format(minor: amountMinor) }
}

/// A session of the expense flow, keyed by flow token.
struct ExpenseSession: Sendable, Equatable {
    /// True once an expense was stored for the token.
    let completed: Bool
    /// The stored expense, when completed.
    let expenseID: Int64?
    /// The canonical JSON of the submit that completed it (to recognise an identical retry).
    let submission: String?
}

/// The expense flow's tables (`expenses`, `expense_sessions`), and the operator's listing and CSV export.
public enum ExpenseStore {
    /// The schema, applied when a worker opens its database.
    public static let migrations: [Migration] = [
        Migration(id: "expense-1", sql: """
            CREATE TABLE expenses (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                created_at INTEGER NOT NULL,
                flow_token TEXT NOT NULL UNIQUE,
                amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
                currency TEXT NOT NULL CHECK (length(currency) = 3),
                category TEXT NOT NULL,
                description TEXT,
                expense_date TEXT NOT NULL
            );
            CREATE TABLE expense_sessions (
                flow_token TEXT PRIMARY KEY,
                created_at INTEGER NOT NULL,
                completed INTEGER NOT NULL DEFAULT 0 CHECK (completed IN (0, 1)),
                completed_at INTEGER,
                expense_id INTEGER REFERENCES expenses (id),
                submission TEXT
            );
            """),
        // Tombstones of purged completed sessions (see `purge`): SHA-256 of the flow token.
        Migration(id: "expense-2", sql: """
            CREATE TABLE expense_session_tombstones (token_sha256 TEXT PRIMARY KEY) WITHOUT ROWID;
            """),
    ]

    private static let columns =
        "id, created_at, flow_token, amount_minor, currency, category, description, expense_date"

    /// Stored expenses, newest first.
    ///
    /// - Parameters:
    ///   - database: a connection opened with the flow's migrations.
    ///   - limit: at most this many (negative means no limit).
    ///   - offset: skip this many of the newest first.
    public static func list(database: Database, limit: Int = 100, offset: Int = 0) throws(DatabaseError) -> [Expense] {
        let rows = try database.query(
            "SELECT \(columns) FROM expenses ORDER BY id DESC LIMIT ?1 OFFSET ?2",
            [.integer(Int64(max(limit, -1))), .integer(Int64(max(offset, 0)))])
        return rows.compactMap(expense(from:))
    }

    /// Every stored expense, oldest first, as RFC 4180 CSV (CRLF line ends, a header line).
    ///
    /// Columns: `id,created_at,expense_date,amount,currency,category,description,flow_token`; `created_at` is UTC
    /// (`2026-01-31T12:04:05Z`), `amount` exact decimal text. A cell that a spreadsheet would take for a formula
    /// (starting with `=`, `+`, `-`, `@`, a tab or a carriage return) gets a leading `'`.
    public static func csv(database: Database) throws(DatabaseError) -> String {
        let rows = try database.query("SELECT \(columns) FROM expenses ORDER BY id")
        var out = "id,created_at,expense_date,amount,currency,category,description,flow_token\r\n"
        for row in rows {
            guard let expense = expense(from: row) else { continue }
            let cells = [
                String(expense.id), ISOTime.format(expense.createdAt), expense.expenseDate, expense.amount,
                expense.currency, expense.category, expense.description ?? "", expense.flowToken,
            ]
            out += CSV.line(cells)
        }
        return out
    }

    private static func expense(from row: [SQLValue]) -> Expense? {
        guard row.count == 8, let id = row[0].int, let createdAt = row[1].int, let token = row[2].string,
            let minor = row[3].int, let currency = row[4].string, let category = row[5].string,
            let date = row[7].string
        else { return nil }
        return Expense(id: id, createdAt: createdAt, flowToken: token, amountMinor: minor, currency: currency,
                       category: category, description: row[6].string, expenseDate: date)
    }

    /// The expense with `id`.
    static func expense(database: Database, id: Int64) throws(DatabaseError) -> Expense? {
        try database.query("SELECT \(columns) FROM expenses WHERE id = ?1", [.integer(id)]).first
            .flatMap(expense(from:))
    }

    /// The session of `token`, if any.
    static func session(database: Database, token: String) throws(DatabaseError) -> ExpenseSession? {
        let rows = try database.query(
            "SELECT completed, expense_id, submission FROM expense_sessions WHERE flow_token = ?1", [.text(token)])
        guard let row = rows.first, row.count == 3 else {
            let purged = try database.query("SELECT 1 FROM expense_session_tombstones WHERE token_sha256 = ?1",
                                            [.text(Retention.tokenDigest(token))])
            return purged.isEmpty ? nil : ExpenseSession(completed: true, expenseID: nil, submission: nil)
        }
        return ExpenseSession(completed: row[0].int == 1, expenseID: row[1].int, submission: row[2].string)
    }

    /// The session of `token`, created (not completed) if missing.
    static func openSession(database: Database, token: String, now: Int64) throws(DatabaseError) -> ExpenseSession {
        if let session = try session(database: database, token: token) { return session }
        return try database.writeTransaction { () throws(DatabaseError) -> ExpenseSession in
            try database.query(
                "INSERT INTO expense_sessions (flow_token, created_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                [.text(token), .integer(now)])
            return try session(database: database, token: token)
                ?? ExpenseSession(completed: false, expenseID: nil, submission: nil)
        }
    }

    /// Stores `expense` and marks the session of its token completed by `submission`; returns the new id.
    /// Call inside a write transaction that has checked the session is not completed.
    static func complete(database: Database, token: String, submission: String, now: Int64, amountMinor: Int64,
                         currency: String, category: String, description: String?,
                         expenseDate: String) throws(DatabaseError) -> Int64 {
        try database.query(
            """
            INSERT INTO expenses (created_at, flow_token, amount_minor, currency, category, description, expense_date)
            VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
            """,
            [.integer(now), .text(token), .integer(amountMinor), .text(currency), .text(category),
             description.map(SQLValue.text) ?? .null, .text(expenseDate)])
        let id = database.lastInsertRowID
        try database.query(
            """
            INSERT INTO expense_sessions (flow_token, created_at, completed, completed_at, expense_id, submission)
            VALUES (?1, ?2, 1, ?2, ?3, ?4)
            ON CONFLICT (flow_token) DO UPDATE SET completed = 1, completed_at = excluded.completed_at,
                expense_id = excluded.expense_id, submission = excluded.submission
            """,
            [.text(token), .integer(now), .integer(id), .text(submission)])
        return id
    }

    /// Removes personal data older than the retention period, in one write transaction (rolled back when `dryRun`),
    /// and returns the counts as `(table, rows)`.
    ///
    /// - Expenses stored before `before` lose their description (the free text is the personal part) and their flow
    ///   token (`purged:<id>`); amount, currency, category and date stay for the books.
    /// - Sessions created before `before` are deleted. A completed one leaves a tombstone (SHA-256 of the token)
    ///   that `session` still finds, so its token keeps getting 427; an uncompleted one carries nothing and expense
    ///   tokens do not expire, so it goes without one (the token may start over, as it could before).
    public static func purge(database: Database, before: Int64, dryRun: Bool) throws(DatabaseError) -> [(String, Int)] {
        try database.writeTransaction(commit: !dryRun) { () throws(DatabaseError) -> [(String, Int)] in
            let expenses = try database.query("""
                UPDATE expenses SET description = NULL, flow_token = 'purged:' || id
                WHERE created_at < ?1 AND flow_token NOT LIKE 'purged:%' RETURNING 1
                """, [.integer(before)]).count
            let completed = try database.query(
                "SELECT flow_token FROM expense_sessions WHERE created_at < ?1 AND completed = 1", [.integer(before)])
            for row in completed {
                try database.query(
                    "INSERT INTO expense_session_tombstones (token_sha256) VALUES (?1) ON CONFLICT DO NOTHING",
                    [.text(Retention.tokenDigest(row[0].string ?? ""))])
            }
            let sessions = try database.query(
                "DELETE FROM expense_sessions WHERE created_at < ?1 RETURNING 1", [.integer(before)]).count
            return [("expenses (descriptions removed)", expenses), ("expense_sessions", sessions)]
        }
    }
}
