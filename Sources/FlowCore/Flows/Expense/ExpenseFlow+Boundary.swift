/// What the core needs from the expense flow besides its answers: statistics, purge, the `expenses` read
/// resource, the `flows_expenses_total` gauge.
extension ExpenseFlow {
    /// Sessions live in `expense_sessions` (for the read API's statistics).
    public var sessionTable: String? { "expense_sessions" }

    /// Expenses created before `before` lose their description; sessions likewise go, a tombstone for each
    /// completed one (see `ExpenseStore.purge`). Expense tokens do not expire, so `sessionsBefore` is not used.
    public func purge(database: Database, before: Int64, sessionsBefore: Int64, dryRun: Bool)
        throws(DatabaseError) -> [(String, Int)]
    {
        guard try Retention.hasTable(database, "expense_session_tombstones") else { return [] }
        return try ExpenseStore.purge(database: database, before: before, dryRun: dryRun)
    }

    /// `GET .../expenses`.
    public var readResources: [ReadResource] {
        [ReadResource(path: "expenses", parameters: ["limit", "offset"], answer: ExpenseFlow.expenses)]
    }

    /// `flows_expenses_total`.
    public var gauges: [FlowGauge] {
        [FlowGauge(name: "flows_expenses_total", help: "Expenses in the database now (purge removes old ones).",
                   query: "SELECT count(*) FROM expenses")]
    }

    /// Expenses newest first.
    @Sendable static func expenses(_ parameters: ReadParameters, database: Database) throws -> JSONValue {
        let (limit, offset) = try parameters.page()
        let total = try database.query("SELECT count(*) FROM expenses").first?.first?.int ?? 0
        var data: [JSONValue] = []
        for e in try ExpenseStore.list(database: database, limit: limit, offset: offset) {
            var item: [String: JSONValue] = [
                "id": .number(String(e.id)), "created_at": .string(ISOTime.format(e.createdAt)),
                "flow_token": .string(e.flowToken), "amount": .string(e.amount), "currency": .string(e.currency),
                "category": .string(e.category), "date": .string(e.expenseDate),
                "confirmed": .bool(try WebhookStore.isConfirmed(database: database, token: e.flowToken)),
            ]
            if let description = e.description { item["description"] = .string(description) }
            data.append(.object(item))
        }
        return ReadResource.page(data, total: total, limit: limit, offset: offset)
    }
}
