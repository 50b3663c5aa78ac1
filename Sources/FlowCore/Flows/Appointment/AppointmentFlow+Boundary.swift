/// What the core needs from the appointment flow besides its answers: statistics, purge, the `bookings` read
/// resource, the `flows_bookings_total` gauge.
extension AppointmentFlow {
    /// Sessions live in `appointment_sessions` (for the read API's statistics).
    public var sessionTable: String? { "appointment_sessions" }

    /// Bookings whose slot started before `before` are anonymised; sessions created before `sessionsBefore` are
    /// deleted, each leaving a tombstone (see `AppointmentStore.purge`).
    public func purge(database: Database, before: Int64, sessionsBefore: Int64, dryRun: Bool)
        throws(DatabaseError) -> [(String, Int)]
    {
        guard try Retention.hasTable(database, "appointment_session_tombstones") else { return [] }
        return try AppointmentStore.purge(database: database, before: before, sessionsBefore: sessionsBefore,
                                          dryRun: dryRun)
    }

    /// `GET .../bookings`.
    public var readResources: [ReadResource] {
        [ReadResource(path: "bookings", parameters: ["limit", "offset", "from", "to", "all"],
                      answer: AppointmentFlow.bookings)]
    }

    /// `flows_bookings_total`.
    public var gauges: [FlowGauge] {
        [FlowGauge(name: "flows_bookings_total", help: "Bookings in the database now (purge removes old ones).",
                   query: "SELECT count(*) FROM appointment_bookings")]
    }

    /// Appointment bookings by start, `from`/`to` dates (`YYYY-MM-DD`), cancelled ones with `all=true`.
    @Sendable static func bookings(_ parameters: ReadParameters, database: Database) throws -> JSONValue {
        let (limit, offset) = try parameters.page()
        let from = try parameters.date("from"), to = try parameters.date("to")
        let all: Bool
        switch try parameters.text("all") {
        case nil, "false", "0": all = false
        case "true", "1": all = true
        default: throw BadParameter("all must be true or false")
        }
        // Only the page is read: the table grows with every booking, an answer does not.
        let total = try AppointmentStore.count(database: database, from: from, through: to, includeCancelled: all)
        let page = try AppointmentStore.list(database: database, from: from, through: to, includeCancelled: all,
                                             limit: limit, offset: offset)
        var data: [JSONValue] = []
        for b in page {
            var item: [String: JSONValue] = [
                "id": .number(String(b.id)), "created_at": .string(ISOTime.format(b.createdAt)),
                "flow_token": .string(b.flowToken), "department": .string(b.department),
                "location": .string(b.location), "date": .string(b.date), "time": .string(b.time),
                "starts_at": .string(b.startsAtText), "name": .string(b.name), "email": .string(b.email),
                "phone": .string(b.phone), "more_details": .string(b.moreDetails), "status": .string(b.status.rawValue),
                "confirmed": .bool(try WebhookStore.isConfirmed(database: database, token: b.flowToken)),
            ]
            if let cancelled = b.cancelledAt { item["cancelled_at"] = .string(ISOTime.format(cancelled)) }
            data.append(.object(item))
        }
        return ReadResource.page(data, total: total, limit: limit, offset: offset)
    }
}
