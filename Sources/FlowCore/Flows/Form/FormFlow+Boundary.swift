/// What the core needs from a form flow besides its answers: statistics, purge, confirmations, callbacks, its gauge.
/// The `submissions` read resource and command serve every form flow at once (`FormFlows`).
extension FormFlow {
    /// Counted in `form_sessions`, this flow's rows only.
    public func sessionCounts(database: Database)
        throws(DatabaseError) -> (started: Int64, completed: Int64, confirmed: Int64)?
    {
        try FormStore.counts(database: database, flow: name)
    }

    /// Submissions created before `before` lose their values (a tombstone keeps their token getting 427), sessions
    /// created before `sessionsBefore` go, each leaving a tombstone (see `FormStore.purge`), dated by the cutoff
    /// (`Flow.purge` is not given the time).
    public func purge(database: Database, before: Int64, sessionsBefore: Int64, dryRun: Bool)
        throws(DatabaseError) -> [(String, Int)]
    {
        guard try Retention.hasTable(database, "form_tombstones") else { return [] }
        return try FormStore.purge(database: database, flow: name, before: before, sessionsBefore: sessionsBefore,
                                   stamp: before, dryRun: dryRun)
    }

    /// Marks this flow's submission of `token`, if any, confirmed.
    public func confirmed(token: String, messageID: String, database: Database, now: Int64) throws(DatabaseError) {
        try FormStore.confirm(database: database, flow: name, token: token, now: now)
    }

    /// This flow's name when `token` submitted it.
    public func callbackFlowName(token: String, database: Database) throws(DatabaseError) -> String? {
        let rows = try database.query("SELECT 1 FROM form_submissions WHERE flow = ?1 AND flow_token = ?2",
                                      [.text(name), .text(token)])
        return rows.isEmpty ? nil : name
    }

    /// `flows_submissions_total{flow="<name>"}`.
    public var gauges: [FlowGauge] {
        // The name is `[a-z0-9][a-z0-9_-]*` (FormFlows.isFlowName): safe in a label and in SQL.
        [FlowGauge(name: "flows_submissions_total{flow=\"\(name)\"}",
                   help: "Form flow submissions in the database now, by flow (purge removes their values).",
                   query: "SELECT count(*) FROM form_submissions WHERE flow = '\(name)' AND values_json IS NOT NULL")]
    }
}
