extension Endpoint {
    /// Checks `Authorization: Bearer <API_TOKEN>` (read API and metrics): 404 when no token is configured, 401 when
    /// missing or wrong; `nil` when the request may go on.
    func apiTokenProblem(_ request: EndpointRequest) -> (Int, String, [(String, String)])? {
        guard let apiToken = configuration.webhook.apiToken else {
            return (404, "not found: the read API is disabled (no API_TOKEN configured)", [])
        }
        let authorization = request.values(of: "HTTP_AUTHORIZATION")
        guard authorization.count == 1, let header = authorization.first, header.utf8.count > 7,
            header.prefix(7).lowercased() == "bearer ",
            Endpoint.secretsEqual(String(header.dropFirst(7)).trimmingSpaces(), apiToken)
        else {
            let why = authorization.isEmpty ? "missing Authorization header" : "wrong bearer token"
            return (401, "unauthorized: \(why)", [("WWW-Authenticate", "Bearer")])
        }
        return nil
    }

    /// The read API: `Authorization: Bearer <API_TOKEN>`, GET only, JSON answers. `name` is the last path
    /// component: `messages` and `stats` are the core's, any other a served flow's resource.
    func readAPI(_ name: String, _ request: EndpointRequest, worker: Worker,
                 summary: inout RequestSummary) -> EndpointResponse {
        summary.route = name
        func fail(_ status: Int, _ message: String, _ headers: [(String, String)] = []) -> EndpointResponse {
            summary.reason = message
            var response = Endpoint.json(status, ["error": .string(message)])
            response.headers += headers
            return response
        }
        if let (status, message, headers) = apiTokenProblem(request) { return fail(status, message, headers) }
        guard request.method == "GET" else {
            return fail(405, "method \(request.method) not allowed", [("Allow", "GET")])
        }
        guard let database = worker.database else {
            log.error("the read API needs a database: set DATABASE_URL=sqlite:/path/flows.db")
            return fail(500, "internal error")
        }
        do {
            let value: JSONValue
            switch name {
            case "messages": value = try messages(request, database: database)
            case "stats": value = try stats(request, database: database)
            default:
                guard let resource = configuration.readResources[name] else { return fail(404, "not found") }
                value = try resource.answer(try ReadParameters(request, allowed: resource.parameters), database)
            }
            return Endpoint.json(200, value)
        } catch let error as BadParameter {
            return fail(400, error.message)
        } catch let error as DatabaseError where error.isUnavailable {
            log.error("storage unavailable", ["route": name, "error": error.description])
            return fail(503, "storage unavailable, try again later")
        } catch {
            log.error("read API failed", ["route": name, "error": String(describing: error)])
            return fail(500, "internal error")
        }
    }

    /// Messages newest first, filtered by sender (`from`), time (`since`) and text (`q`).
    private func messages(_ request: EndpointRequest, database: Database) throws -> JSONValue {
        let parameters = try ReadParameters(request, allowed: ["limit", "offset", "from", "since", "q"])
        let (limit, offset) = try parameters.page()
        var conditions: [String] = []
        var arguments: [SQLValue] = []
        if let from = try parameters.text("from") {
            guard !from.isEmpty, from.utf8.count <= 64 else { throw BadParameter("from must be 1 to 64 characters") }
            arguments.append(.text(from))
            conditions.append("sender = ?\(arguments.count)")
        }
        if let epoch = try parameters.time("since") {
            arguments.append(.integer(epoch))
            conditions.append("timestamp >= ?\(arguments.count)")
        }
        if let q = try parameters.text("q") {
            guard !q.isEmpty, q.utf8.count <= 200 else { throw BadParameter("q must be 1 to 200 characters") }
            var pattern = "%"
            for c in q {
                if c == "%" || c == "_" || c == "\\" { pattern.append("\\") }
                pattern.append(c)
            }
            arguments.append(.text(pattern + "%"))
            // Case-insensitive for ASCII letters only: SQLite's LIKE, PostgreSQL's ILIKE on a COLLATE "C" column.
            let like = database.dialect == .postgres ? "ILIKE" : "LIKE"
            conditions.append("text \(like) ?\(arguments.count) ESCAPE '\\'")
        }
        let filter = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
        let total = try database.query("SELECT count(*) FROM webhook_messages" + filter, arguments)
            .first?.first?.int ?? 0
        // Limit and offset bound, not written into the SQL: each distinct text is a statement cached per connection.
        let rows = try database.query("""
            SELECT id, sender, type, timestamp, text, flow_token, response_json FROM webhook_messages\(filter)
            ORDER BY timestamp DESC, rowid DESC LIMIT ?\(arguments.count + 1) OFFSET ?\(arguments.count + 2)
            """, arguments + [.integer(Int64(limit)), .integer(Int64(offset))])
        let data: [JSONValue] = rows.map { row in
            var item: [String: JSONValue] = [
                "id": .string(row[0].string ?? ""), "from": .string(row[1].string ?? ""),
                "type": .string(row[2].string ?? ""), "timestamp": .number(String(row[3].int ?? 0)),
                "time": .string(ISOTime.format(row[3].int ?? 0)), "text": .string(row[4].string ?? ""),
            ]
            if let token = row[5].string { item["flow_token"] = .string(token) }
            if let response = row[6].string, let parsed = try? JSONParser.parse(response) {
                item["response"] = parsed
            }
            return .object(item)
        }
        return ReadResource.page(data, total: total, limit: limit, offset: offset)
    }

    /// Message totals, top senders, first and last message time, and per-flow session counts.
    private func stats(_ request: EndpointRequest, database: Database) throws -> JSONValue {
        _ = try ReadParameters(request, allowed: [])
        let totals = try database.query("""
            SELECT count(*), count(DISTINCT sender), min(timestamp), max(timestamp) FROM webhook_messages
            """).first ?? []
        let top = try database.query("""
            SELECT sender, count(*) AS n FROM webhook_messages GROUP BY sender ORDER BY n DESC, sender LIMIT 10
            """)
        let statuses = try database.query("SELECT count(*) FROM webhook_statuses").first?.first?.int ?? 0
        let events = try database.query("SELECT count(*) FROM webhook_flow_events").first?.first?.int ?? 0
        let confirmations = try database.query("SELECT count(*) FROM webhook_confirmations").first?.first?.int ?? 0
        var flows: [String: JSONValue] = [:]
        for flow in configuration.servedFlows {
            guard let counts = try flow.sessionCounts(database: database) else { continue }
            flows[flow.name] = ["started": .number(String(counts.started)),
                                "completed": .number(String(counts.completed)),
                                "confirmed": .number(String(counts.confirmed))]
        }
        func number(_ value: SQLValue?) -> JSONValue { value?.int.map { .number(String($0)) } ?? .null }
        return [
            "total_messages": number(totals.first), "senders_count": number(totals.dropFirst().first),
            "first_message_ts": number(totals.dropFirst(2).first), "last_message_ts": number(totals.dropFirst(3).first),
            "messages_per_sender": .array(top.map { ["from": .string($0[0].string ?? ""), "count": number($0[1])] }),
            "total_statuses": .number(String(statuses)), "total_flow_alerts": .number(String(events)),
            "total_confirmations": .number(String(confirmations)), "flows": .object(flows),
        ]
    }
}
