/// `flows-fcgi copy-database`: a one-host installation's SQLite database copied into a PostgreSQL database, for the
/// operator who outgrows one host (issue 18).
///
/// - The tables are the source's own (`sqlite_master`), not a list kept here: whatever the migrations of a flow
///   created is copied, a flow added later too. Each must have its counterpart in the target, with the same columns,
///   once the target's migrations have run (the responder's code, for the flows the settings serve); a table or a
///   column without one stops the copy, named. SQLite's implicit `rowid` fills a target column named `rowid`
///   (`webhook_messages` keeps its arrival order).
/// - The target must hold no rows (checked before anything is written, migrations included). The copy is one
///   transaction on the target, committed only when every table's row count there equals the source's; ids are
///   kept, and every identity sequence is set past the largest id copied (and past SQLite's `sqlite_sequence`, so
///   an id SQLite handed out once is not handed out again).
/// - The source is read in one read transaction: a consistent snapshot while responders keep writing to it.
/// - Values go through `Database`, so text is stored as `PostgresStore` stores it (U+0000 escaped reversibly) and
///   reads back as it was; integers, reals and NULL as they are. A BLOB (which no column of the schema holds, and
///   which would come back as text) stops the copy, naming its table and column.
public enum DatabaseCopy {
    /// Why the copy cannot be done, naming the table; nothing was committed to the target.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        /// The reason, in plain words.
        public let description: String
    }

    /// One table copied and its rows.
    public struct Table: Sendable, Equatable {
        /// The table's name.
        public let name: String
        /// Rows copied (equal in the source and the target).
        public let rows: Int64
    }

    /// How one table is copied, worked out before the copy starts.
    private struct Plan {
        let table: String
        /// The target's columns, in its order.
        let columns: [String]
        /// The source expression for each of `columns`: the same column, or `rowid`.
        let sources: [String]
        /// The target's columns that take their default from a sequence (identity or serial).
        let sequenced: [String]
        /// The source's `sqlite_sequence` value for the table (the largest AUTOINCREMENT id ever given), or 0.
        let autoincrement: Int64
        /// Rows in the source's snapshot.
        let rows: Int64
    }

    /// At most this many parameters per INSERT (PostgreSQL allows 65,535).
    static let parametersPerInsert = 4000

    /// Copies every table of `source` (a SQLite database, opened read-only) into `target` (a PostgreSQL database),
    /// after applying `migrations` (the responder's) to the target.
    ///
    /// - Returns: each table copied and its rows, in the order copied (a referenced table before the tables
    ///   referencing it).
    /// - Throws: `Failure` (a target with rows, a table or column without its counterpart, a BLOB, counts that
    ///   differ), or the `DatabaseError` of either database. The target then has no row of the source; its
    ///   migrations, applied first, stay.
    public static func run(from source: Database, to target: Database, migrations: [Migration]) throws -> [Table] {
        guard source.dialect == .sqlite, target.dialect == .postgres else {
            throw Failure(description: "copy-database copies a SQLite database into a PostgreSQL database")
        }
        guard try source.hasTable("schema_migrations") else {
            throw Failure(description: "\(source.location) is not a flows-fcgi database (it has no schema_migrations "
                + "table; nothing was changed)")
        }
        if let problem = try rowsProblem(target) { throw Failure(description: problem) }
        try target.migrate(migrations)

        try source.execute("BEGIN")
        defer { try? source.execute("ROLLBACK") }
        // The first read starts the snapshot: the schema and every row below come from the same instant.
        let applied = Set(try source.query("SELECT id FROM schema_migrations").compactMap { $0.first?.string })
        let notApplied = migrations.map(\.id).filter { !applied.contains($0) }
        var plans: [Plan] = []
        for table in try tablesInOrder(source) {
            plans.append(try plan(table, source: source, target: target, notApplied: notApplied))
        }

        var mismatch: String?
        do {
            try target.writeTransaction { () throws(DatabaseError) in
                mismatch = nil
                for plan in plans {
                    mismatch = try copy(plan, from: source, to: target)
                    if let mismatch {  // rolls the transaction back
                        throw DatabaseError(outcome: .failure, sqlState: nil, message: mismatch,
                                            context: "verifying \(plan.table)")
                    }
                }
                // After the counts are verified (setval is not undone by a rollback).
                for plan in plans { try setSequences(plan, target) }
            }
        } catch {
            if let mismatch { throw Failure(description: mismatch) }
            throw error
        }
        return plans.map { Table(name: $0.table, rows: $0.rows) }
    }

    // MARK: - Before the copy

    /// The target's tables that hold rows, as a refusal, or `nil` when none does (`schema_migrations` aside).
    private static func rowsProblem(_ target: Database) throws(DatabaseError) -> String? {
        let tables = try target.query("""
            SELECT table_name FROM information_schema.tables
            WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' AND table_name <> 'schema_migrations'
            ORDER BY table_name
            """).compactMap { $0.first?.string }
        var filled: [String] = []
        for table in tables {
            let rows = try target.query("SELECT count(*) FROM \(quoted(table))").first?.first?.int ?? 0
            if rows > 0 { filled.append("\(table) (\(rows) row\(rows == 1 ? "" : "s"))") }
        }
        guard !filled.isEmpty else { return nil }
        return "the target database \(target.location) is not empty: " + filled.joined(separator: ", ")
            + " (copy-database fills only a database without rows; nothing was changed)"
    }

    /// The source's tables (not SQLite's own, not `schema_migrations`), a table referenced by a foreign key before
    /// the tables referencing it, else in the order they were created.
    private static func tablesInOrder(_ source: Database) throws(DatabaseError) -> [String] {
        var left = try source.query("""
            SELECT name FROM sqlite_master
            WHERE type = 'table' AND substr(name, 1, 7) <> 'sqlite_' AND name <> 'schema_migrations' ORDER BY rowid
            """).compactMap { $0.first?.string }
        var references: [String: Set<String>] = [:]
        for table in left {
            let referenced = try source.query("SELECT \"table\" FROM pragma_foreign_key_list(?1)", [.text(table)])
            references[table] = Set(referenced.compactMap { $0.first?.string }).subtracting([table])
        }
        var ordered: [String] = []
        while !left.isEmpty {
            // A cycle (none in this schema) is copied in creation order; PostgreSQL then names the violated key.
            let next = left.firstIndex { references[$0, default: []].isSubset(of: ordered) } ?? left.startIndex
            ordered.append(left.remove(at: next))
        }
        return ordered
    }

    /// How `table` is copied: its columns matched with the target's, its row count and BLOB check, its sequences.
    private static func plan(_ table: String, source: Database, target: Database,
                             notApplied: [String]) throws -> Plan {
        let sourceColumns = try source.query("SELECT name FROM pragma_table_info(?1) ORDER BY cid", [.text(table)])
            .compactMap { $0.first?.string }
        let targetRows = try target.query("""
            SELECT CAST(column_name AS text), pg_get_serial_sequence(?2, CAST(column_name AS text)) IS NOT NULL
            FROM information_schema.columns
            WHERE table_schema = current_schema() AND table_name = ?1 ORDER BY ordinal_position
            """, [.text(table), .text(quoted(table))])
        guard !targetRows.isEmpty else {
            throw Failure(description: "table \(table) of the source has no counterpart in the target: no migration "
                + "of the flows this configuration serves creates it (run copy-database with the responder's "
                + "--config, so that it serves the same flows)")
        }
        let columns = targetRows.compactMap { $0.first?.string }
        var sources: [String] = []
        var onlyTarget: [String] = []
        for column in columns {
            if sourceColumns.contains(column) {
                sources.append(quoted(column))
            } else if column == "rowid", try hasRowid(table, source) {
                sources.append("rowid")  // SQLite's implicit rowid, an explicit column on PostgreSQL
            } else {
                onlyTarget.append(column)
            }
        }
        let onlySource = sourceColumns.filter { !columns.contains($0) }
        if !onlyTarget.isEmpty || !onlySource.isEmpty {
            var reason = "table \(table): the columns differ between the source and the target ("
                + [("only in the source", onlySource), ("only in the target", onlyTarget)].filter { !$0.1.isEmpty }
                    .map { "\($0.0): \($0.1.joined(separator: ", "))" }.joined(separator: "; ") + ")"
            if !notApplied.isEmpty {
                reason += "; the source lacks migration \(notApplied.joined(separator: ", ")) of this version: start "
                    + "this version's responder on it once (it applies them), then copy"
            }
            throw Failure(description: reason)
        }

        // The row count and, per column, the BLOBs: one scan.
        let blobCounts = sources.map { "sum(typeof(\($0)) = 'blob')" }.joined(separator: ", ")
        let counted = try source.query("SELECT count(*), \(blobCounts) FROM \(quoted(table))").first ?? []
        let blobs = zip(columns, counted.dropFirst()).filter { ($0.1.int ?? 0) > 0 }.map(\.0)
        if !blobs.isEmpty {
            throw Failure(description: "table \(table): column \(blobs.joined(separator: ", ")) holds binary values "
                + "(BLOB), which no column of the PostgreSQL schema holds as they are; flows-fcgi stores none")
        }
        var autoincrement: Int64 = 0
        if try source.hasTable("sqlite_sequence") {
            autoincrement = try source.query("SELECT seq FROM sqlite_sequence WHERE name = ?1", [.text(table)])
                .first?.first?.int ?? 0
        }
        return Plan(table: table, columns: columns, sources: sources,
                    sequenced: targetRows.filter { $0.count == 2 && $0[1].int == 1 }.compactMap { $0[0].string },
                    autoincrement: autoincrement, rows: counted.first?.int ?? 0)
    }

    /// True when SQLite's `table` has a rowid (it is not `WITHOUT ROWID`).
    private static func hasRowid(_ table: String, _ source: Database) throws -> Bool {
        do {
            _ = try source.query("SELECT rowid FROM \(quoted(table)) LIMIT 0")
            return true
        } catch {
            return false
        }
    }

    // MARK: - The copy (inside the target's transaction)

    /// Copies `plan`'s rows in INSERTs of many rows each, then compares the counts: the problem, or `nil`.
    private static func copy(_ plan: Plan, from source: Database, to target: Database) throws(DatabaseError)
        -> String?
    {
        let table = quoted(plan.table)
        if try target.query("SELECT count(*) FROM \(table)").first?.first?.int != 0 {
            return "table \(plan.table) of the target received rows while copying (is a responder using it?)"
        }
        let perInsert = max(1, min(500, parametersPerInsert / plan.columns.count))
        let head = "INSERT INTO \(table) (\(plan.columns.map(quoted).joined(separator: ", "))) VALUES "
        var batch: [SQLValue] = []
        batch.reserveCapacity(perInsert * plan.columns.count)
        var read: Int64 = 0
        let insert = { (values: [SQLValue]) throws(DatabaseError) in
            _ = try target.query(head + placeholders(rows: values.count / plan.columns.count,
                                                     columns: plan.columns.count), values)
        }
        try source.forEachRow("SELECT \(plan.sources.joined(separator: ", ")) FROM \(table)") {
            row throws(DatabaseError) in
            batch += row
            read += 1
            if batch.count == perInsert * plan.columns.count {
                try insert(batch)
                batch.removeAll(keepingCapacity: true)
            }
        }
        if !batch.isEmpty { try insert(batch) }
        let copied = try target.query("SELECT count(*) FROM \(table)").first?.first?.int ?? -1
        guard read == plan.rows, copied == plan.rows else {
            return "table \(plan.table): \(plan.rows) rows in the source, \(read) read, \(copied) in the target after "
                + "the copy: rolled back, nothing was changed"
        }
        return nil
    }

    /// `(?1, ?2), (?3, ?4)` for 2 rows of 2 columns.
    private static func placeholders(rows: Int, columns: Int) -> String {
        (0..<rows).map { row in
            "(" + (1...columns).map { "?\(row * columns + $0)" }.joined(separator: ", ") + ")"
        }.joined(separator: ", ")
    }

    /// Sets each sequence of `plan`'s table past the largest value copied into its column, and past SQLite's
    /// AUTOINCREMENT counter when the table has that one sequence: a new row gets a new id.
    private static func setSequences(_ plan: Plan, _ target: Database) throws(DatabaseError) {
        for column in plan.sequenced {
            let largest = try target.query("SELECT max(\(quoted(column))) FROM \(quoted(plan.table))")
                .first?.first?.int ?? 0
            let last = max(largest, plan.sequenced.count == 1 ? plan.autoincrement : 0)
            guard last > 0 else { continue }  // nothing copied, no id handed out: the sequence starts at 1
            try target.query("SELECT setval(pg_get_serial_sequence(?1, ?2), ?3)",
                             [.text(quoted(plan.table)), .text(column), .integer(last)])
        }
    }

    /// `name` as a quoted SQL identifier (both engines).
    private static func quoted(_ name: String) -> String { "\"" + name.replacing("\"", with: "\"\"") + "\"" }
}
