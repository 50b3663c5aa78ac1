/// One booking, as the operator lists it.
public struct AppointmentBooking: Sendable, Equatable {
    /// Whether the booking still holds its slot.
    public enum Status: String, Sendable {
        /// Holds its slot.
        case booked
        /// Cancelled by the operator; the slot is free again.
        case cancelled
    }

    /// The booking id, also sent to the business as `booking_id`.
    public let id: Int64
    /// When it was booked, in seconds since the epoch.
    public let createdAt: Int64
    /// The flow token of the session that booked it (it arrives again in the `nfm_reply` webhook).
    public let flowToken: String
    /// The department id.
    public let department: String
    /// The location id.
    public let location: String
    /// The day, `YYYY-MM-DD` in the business time zone.
    public let date: String
    /// The start, `HH:MM` in the business time zone.
    public let time: String
    /// The start in seconds since the epoch.
    public let startsAt: Int64
    /// The business time zone's offset from UTC at the start, in seconds.
    public let utcOffsetSeconds: Int
    /// The customer's name.
    public let name: String
    /// The customer's email address.
    public let email: String
    /// The customer's phone number, as entered.
    public let phone: String
    /// The customer's further details (empty when none).
    public let moreDetails: String
    /// Booked or cancelled.
    public let status: Status
    /// When it was cancelled, if it was.
    public let cancelledAt: Int64?

    /// The start as ISO 8601 local time with its offset, e.g. `2026-03-02T11:30:00+00:00`.
    public var startsAtText: String {
        let offset = abs(utcOffsetSeconds) / 60
        let sign = utcOffsetSeconds < 0 ? "-" : "+"
        return "\(date)T\(time):00\(sign)\(twoDigits(offset / 60)):\(twoDigits(offset % 60))"
    }
}

/// What `AppointmentStore.cancel` did.
public enum AppointmentCancellation: Sendable, Equatable {
    /// The booking is now cancelled and its slot free.
    case cancelled(AppointmentBooking)
    /// It was cancelled before; nothing changed.
    case alreadyCancelled(AppointmentBooking)
    /// No booking has that id.
    case notFound
}

/// The choices made on the APPOINTMENT screen, as far as they go.
struct AppointmentChoices: Sendable, Equatable {
    var department: String?
    var location: String?
    var date: String?
    var time: String?
}

/// A session of the appointment flow, keyed by flow token.
struct AppointmentSession: Sendable, Equatable {
    /// When the session was created (the token's first saved step).
    let createdAt: Int64
    /// The last choices made (for BACK).
    let choices: AppointmentChoices
    /// True once a booking was made with the token.
    let completed: Bool
    /// The booking made, when completed.
    let bookingID: Int64?
    /// SHA-256 (hex) of the canonical confirm request that completed it, to recognise an identical retry.
    let submission: String?
}

/// The appointment flow's tables (`appointment_bookings`, `appointment_sessions`) and the operator's list and cancel.
///
/// Every write runs in a write transaction. On SQLite that is `BEGIN IMMEDIATE`, so concurrent processes serialise
/// on the write lock; on PostgreSQL (several hosts, read committed) the seat numbers' unique index decides who gets
/// the last seat (see `insert`), so no slot is ever double-booked on either.
public enum AppointmentStore {
    /// The schema, applied when a worker opens its database.
    public static let migrations: [Migration] = [
        Migration(id: "appointment-1", sqlite: """
            CREATE TABLE appointment_bookings (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                created_at INTEGER NOT NULL,
                flow_token TEXT NOT NULL UNIQUE,
                department TEXT NOT NULL,
                location TEXT NOT NULL,
                date TEXT NOT NULL,
                time TEXT NOT NULL,
                starts_at INTEGER NOT NULL,
                utc_offset INTEGER NOT NULL,
                name TEXT NOT NULL,
                email TEXT NOT NULL,
                phone TEXT NOT NULL,
                more_details TEXT NOT NULL DEFAULT '',
                status TEXT NOT NULL DEFAULT 'booked' CHECK (status IN ('booked', 'cancelled')),
                cancelled_at INTEGER
            );
            CREATE INDEX appointment_bookings_slot ON appointment_bookings (location, department, date, time)
                WHERE status = 'booked';
            CREATE INDEX appointment_bookings_date ON appointment_bookings (date, time);
            CREATE TABLE appointment_sessions (
                flow_token TEXT PRIMARY KEY,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL,
                department TEXT,
                location TEXT,
                date TEXT,
                time TEXT,
                completed INTEGER NOT NULL DEFAULT 0 CHECK (completed IN (0, 1)),
                completed_at INTEGER,
                booking_id INTEGER REFERENCES appointment_bookings (id),
                submission TEXT
            );
            """, postgres: """
            CREATE TABLE appointment_bookings (
                id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                created_at bigint NOT NULL,
                flow_token text NOT NULL UNIQUE,
                department text COLLATE "C" NOT NULL,
                location text COLLATE "C" NOT NULL,
                date text COLLATE "C" NOT NULL,
                time text COLLATE "C" NOT NULL,
                starts_at bigint NOT NULL,
                utc_offset bigint NOT NULL,
                name text NOT NULL,
                email text NOT NULL,
                phone text NOT NULL,
                more_details text NOT NULL DEFAULT '',
                status text NOT NULL DEFAULT 'booked' CHECK (status IN ('booked', 'cancelled')),
                cancelled_at bigint
            );
            CREATE INDEX appointment_bookings_slot ON appointment_bookings (location, department, date, time)
                WHERE status = 'booked';
            CREATE INDEX appointment_bookings_date ON appointment_bookings (date, time);
            CREATE TABLE appointment_sessions (
                flow_token text PRIMARY KEY,
                created_at bigint NOT NULL,
                updated_at bigint NOT NULL,
                department text,
                location text,
                date text,
                time text,
                completed integer NOT NULL DEFAULT 0 CHECK (completed IN (0, 1)),
                completed_at bigint,
                booking_id bigint REFERENCES appointment_bookings (id),
                submission text
            );
            """),
        // Tombstones of purged sessions (see `purge`): SHA-256 of the flow token, so a purged token keeps its 427.
        Migration(id: "appointment-2", sqlite: """
            CREATE TABLE appointment_session_tombstones (
                token_sha256 TEXT PRIMARY KEY,
                created_at INTEGER NOT NULL,
                completed INTEGER NOT NULL CHECK (completed IN (0, 1))
            ) WITHOUT ROWID;
            """, postgres: """
            CREATE TABLE appointment_session_tombstones (
                token_sha256 text PRIMARY KEY,
                created_at bigint NOT NULL,
                completed integer NOT NULL CHECK (completed IN (0, 1))
            );
            """),
        // The seat a booking holds in its slot (1...capacity), unique among the slot's booked rows: two bookings
        // can never hold the same seat, however many hosts race for the last one (see `insert`). Existing booked
        // rows are numbered in booking order; cancelled ones hold none.
        Migration(id: "appointment-3", sqlite: """
            ALTER TABLE appointment_bookings ADD COLUMN seat INTEGER;
            \(seatNumbering)
            """, postgres: """
            ALTER TABLE appointment_bookings ADD COLUMN seat bigint;
            \(seatNumbering)
            """),
    ]

    private static let seatNumbering = """
        UPDATE appointment_bookings SET seat = numbered.n
        FROM (SELECT id, row_number() OVER (PARTITION BY location, department, date, time ORDER BY id) AS n
              FROM appointment_bookings WHERE status = 'booked') AS numbered
        WHERE appointment_bookings.id = numbered.id;
        CREATE UNIQUE INDEX appointment_bookings_seat ON appointment_bookings (location, department, date, time, seat)
            WHERE status = 'booked';
        """

    // MARK: - Sessions

    static func session(_ database: Database, token: String) throws(DatabaseError) -> AppointmentSession? {
        // The session, else a purged session's tombstone (a session with no choices, completed or expired, so it
        // answers 427): one statement, as INIT asks this for every new token.
        let rows = try database.query("""
            SELECT 0, created_at, department, location, date, time, completed, booking_id, submission
            FROM appointment_sessions WHERE flow_token = ?1
            UNION ALL
            SELECT 1, created_at, NULL, NULL, NULL, NULL, completed, NULL, NULL
            FROM appointment_session_tombstones WHERE token_sha256 = ?2
            ORDER BY 1 LIMIT 1
            """, [.text(token), .text(Retention.tokenDigest(token))])
        guard let row = rows.first else { return nil }
        return AppointmentSession(
            createdAt: row[1].int ?? 0,
            choices: AppointmentChoices(department: row[2].string, location: row[3].string, date: row[4].string,
                                        time: row[5].string),
            completed: row[6].int == 1, bookingID: row[7].int, submission: row[8].string)
    }

    static func createSession(_ database: Database, token: String, now: Int64)
        throws(DatabaseError) -> AppointmentSession
    {
        // ON CONFLICT: on PostgreSQL another host may create it meanwhile; then its session is the one.
        let inserted = try database.query("""
            INSERT INTO appointment_sessions (flow_token, created_at, updated_at) VALUES (?1, ?2, ?2)
            ON CONFLICT DO NOTHING RETURNING 1
            """, [.text(token), .integer(now)])
        if inserted.isEmpty, let session = try session(database, token: token) { return session }
        return AppointmentSession(createdAt: now, choices: AppointmentChoices(), completed: false, bookingID: nil,
                                  submission: nil)
    }

    static func saveChoices(_ database: Database, token: String, choices: AppointmentChoices, now: Int64)
        throws(DatabaseError)
    {
        func text(_ value: String?) -> SQLValue { value.map { .text($0) } ?? .null }
        try database.query("""
            UPDATE appointment_sessions SET department = ?2, location = ?3, date = ?4, time = ?5, updated_at = ?6
            WHERE flow_token = ?1
            """, [.text(token), text(choices.department), text(choices.location), text(choices.date),
                  text(choices.time), .integer(now)])
    }

    static func complete(_ database: Database, token: String, bookingID: Int64, submission: String, now: Int64)
        throws(DatabaseError)
    {
        try database.query("""
            UPDATE appointment_sessions SET completed = 1, completed_at = ?2, updated_at = ?2, booking_id = ?3,
                submission = ?4
            WHERE flow_token = ?1
            """, [.text(token), .integer(now), .integer(bookingID), .text(submission)])
    }

    // MARK: - Bookings

    /// Bookings holding a seat in one slot.
    static func bookedCount(_ database: Database, department: String, location: String, date: String, time: String)
        throws(DatabaseError) -> Int
    {
        let rows = try database.query("""
            SELECT COUNT(*) FROM appointment_bookings
            WHERE location = ?1 AND department = ?2 AND date = ?3 AND time = ?4 AND status = 'booked'
            """, [.text(location), .text(department), .text(date), .text(time)])
        return Int(rows.first?.first?.int ?? 0)
    }

    /// Bookings holding seats per slot (`"YYYY-MM-DD HH:MM"`) of one department at one location over a date range.
    static func bookedCounts(_ database: Database, department: String, location: String, from: String,
                             through: String) throws(DatabaseError) -> [String: Int]
    {
        let rows = try database.query("""
            SELECT date, time, COUNT(*) FROM appointment_bookings
            WHERE location = ?1 AND department = ?2 AND date >= ?3 AND date <= ?4 AND status = 'booked'
            GROUP BY date, time
            """, [.text(location), .text(department), .text(from), .text(through)])
        var counts: [String: Int] = [:]
        for row in rows {
            guard let date = row[0].string, let time = row[1].string else { continue }
            counts[date + " " + time] = Int(row[2].int ?? 0)
        }
        return counts
    }

    /// What a new booking holds.
    struct NewBooking {
        let flowToken: String
        let department: String
        let location: String
        let date: String
        let time: String
        let startsAt: Int64
        let utcOffsetSeconds: Int
        let name: String
        let email: String
        let phone: String
        let moreDetails: String
    }

    /// Books the lowest free seat of the slot not above `capacity` and returns the booking, or `nil` when
    /// another transaction took the seat (or this token's booking) meanwhile: read again and decide again.
    ///
    /// One statement on both engines: the seat numbers 1...capacity (a recursive CTE: SQLite has no
    /// `generate_series`), minus those the slot's booked rows hold; the unique index on booked seats makes a
    /// concurrent insert of the same seat wait for the first, then do nothing. Check `bookedCount` first, so a
    /// capacity lowered in the catalog answers "taken" as before.
    static func insert(_ database: Database, _ new: NewBooking, capacity: Int, now: Int64)
        throws(DatabaseError) -> AppointmentBooking?
    {
        let rows = try database.query("""
            WITH RECURSIVE seats(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seats WHERE n < CAST(?13 AS BIGINT))
            INSERT INTO appointment_bookings (created_at, flow_token, department, location, date, time, starts_at,
                utc_offset, name, email, phone, more_details, seat)
            SELECT CAST(?1 AS BIGINT), ?2, ?3, ?4, ?5, ?6, CAST(?7 AS BIGINT), CAST(?8 AS BIGINT), ?9, ?10, ?11, ?12, n
            FROM seats
            WHERE n NOT IN (SELECT seat FROM appointment_bookings WHERE location = ?4 AND department = ?3
                            AND date = ?5 AND time = ?6 AND status = 'booked' AND seat IS NOT NULL)
            ORDER BY n LIMIT 1
            ON CONFLICT DO NOTHING
            RETURNING \(columns)
            """, [.integer(now), .text(new.flowToken), .text(new.department), .text(new.location),
                  .text(new.date), .text(new.time), .integer(new.startsAt),
                  .integer(Int64(new.utcOffsetSeconds)), .text(new.name), .text(new.email),
                  .text(new.phone), .text(new.moreDetails), .integer(Int64(capacity))])
        return rows.first.map(AppointmentStore.booking)
    }

    private static let columns = """
        id, created_at, flow_token, department, location, date, time, starts_at, utc_offset, name, email, phone,
        more_details, status, cancelled_at
        """

    private static func booking(_ row: [SQLValue]) -> AppointmentBooking {
        AppointmentBooking(
            id: row[0].int ?? 0, createdAt: row[1].int ?? 0, flowToken: row[2].string ?? "",
            department: row[3].string ?? "", location: row[4].string ?? "", date: row[5].string ?? "",
            time: row[6].string ?? "", startsAt: row[7].int ?? 0, utcOffsetSeconds: Int(row[8].int ?? 0),
            name: row[9].string ?? "", email: row[10].string ?? "", phone: row[11].string ?? "",
            moreDetails: row[12].string ?? "",
            status: AppointmentBooking.Status(rawValue: row[13].string ?? "") ?? .booked,
            cancelledAt: row[14].int)
    }

    /// The booking with `id`, if there is one.
    public static func booking(database: Database, id: Int64) throws(DatabaseError) -> AppointmentBooking? {
        try database.query("SELECT \(columns) FROM appointment_bookings WHERE id = ?1", [.integer(id)]).first
            .map(booking)
    }

    /// Bookings by start time, optionally only those on or after `from` and on or before `through` (`YYYY-MM-DD`),
    /// cancelled ones only when `includeCancelled`; at most `limit` of them from `offset` on (all when `nil`).
    public static func list(database: Database, from: String? = nil, through: String? = nil,
                            includeCancelled: Bool = false, limit: Int? = nil, offset: Int = 0)
        throws(DatabaseError) -> [AppointmentBooking]
    {
        let rows = try database.query("""
            SELECT \(columns) FROM appointment_bookings \(listFilter)
            ORDER BY date, time, location, department, id LIMIT ?4 OFFSET ?5
            """, listArguments(from, through, includeCancelled) + [.integer(Int64(limit ?? Int.max)),
                                                                   .integer(Int64(offset))])
        return rows.map(booking)
    }

    /// How many bookings `list` would give without a limit.
    public static func count(database: Database, from: String? = nil, through: String? = nil,
                             includeCancelled: Bool = false) throws(DatabaseError) -> Int64 {
        try database.query("SELECT count(*) FROM appointment_bookings \(listFilter)",
                           listArguments(from, through, includeCancelled)).first?.first?.int ?? 0
    }

    private static let listFilter = "WHERE date >= ?1 AND date <= ?2 AND (?3 = 1 OR status = 'booked')"

    private static func listArguments(_ from: String?, _ through: String?, _ includeCancelled: Bool) -> [SQLValue] {
        [.text(from ?? "0000-00-00"), .text(through ?? "9999-99-99"), .integer(includeCancelled ? 1 : 0)]
    }

    /// Cancels booking `id`, freeing its seat; `now` is recorded as the cancellation time.
    public static func cancel(database: Database, id: Int64, now: Int64)
        throws(DatabaseError) -> AppointmentCancellation
    {
        try database.writeTransaction { () throws(DatabaseError) -> AppointmentCancellation in
            guard let existing = try booking(database: database, id: id) else { return .notFound }
            guard existing.status == .booked else { return .alreadyCancelled(existing) }
            try database.query("""
                UPDATE appointment_bookings SET status = 'cancelled', cancelled_at = ?2 WHERE id = ?1
                """, [.integer(id), .integer(now)])
            guard let updated = try booking(database: database, id: id) else { return .notFound }
            return .cancelled(updated)
        }
    }

    // MARK: - Retention

    /// Removes personal data older than the retention period, in one write transaction (rolled back when `dryRun`),
    /// and returns the counts as `(table, rows)`.
    ///
    /// - Bookings whose slot started before `before` are anonymised, not deleted: name, email, phone and further
    ///   details become empty and the flow token becomes `purged:<id>`; department, location, date, time and status
    ///   stay for statistics and capacity history.
    /// - Sessions created before `sessionsBefore` are deleted, each leaving a tombstone (SHA-256 of the token,
    ///   creation time, completed flag) that `session` still finds: a purged token is never new again, so it keeps
    ///   getting 427 (completed or expired) instead of starting a fresh session. Pass a time at least one session
    ///   lifetime ago, so only sessions that could no longer be used are purged. Tombstones are kept.
    public static func purge(database: Database, before: Int64, sessionsBefore: Int64, dryRun: Bool)
        throws(DatabaseError) -> [(String, Int)]
    {
        try database.writeTransaction(commit: !dryRun) { () throws(DatabaseError) -> [(String, Int)] in
            let bookings = try database.query("""
                UPDATE appointment_bookings
                SET name = '', email = '', phone = '', more_details = '', flow_token = 'purged:' || id
                WHERE starts_at < ?1 AND flow_token NOT LIKE 'purged:%' RETURNING 1
                """, [.integer(before)]).count
            let old = try database.query("""
                SELECT flow_token, created_at, completed FROM appointment_sessions WHERE created_at < ?1
                """, [.integer(sessionsBefore)])
            for row in old {
                try database.query("""
                    INSERT INTO appointment_session_tombstones (token_sha256, created_at, completed)
                    VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING
                    """, [.text(Retention.tokenDigest(row[0].string ?? "")), row[1], row[2]])
            }
            let sessions = try database.query(
                "DELETE FROM appointment_sessions WHERE created_at < ?1 RETURNING 1", [.integer(sessionsBefore)]).count
            return [("appointment_bookings (anonymised)", bookings), ("appointment_sessions", sessions)]
        }
    }
}
