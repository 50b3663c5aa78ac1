/// Reading the form flows' submissions: `GET .../submissions?flow=<name>` and `flows-fcgi submissions --flow NAME`.
public enum FormSubmissions {
    /// `GET .../submissions?flow=<name>[&limit=&offset=&since=]` over the form flows named `flows`.
    public static func resource(flows: [String]) -> ReadResource {
        let served = Set(flows)
        return ReadResource(path: "submissions", parameters: ["flow", "limit", "offset", "since"]) {
            parameters, database in
            guard let flow = try parameters.text("flow") else {
                throw BadParameter("flow is required: the name of a form flow (\(named(flows)))")
            }
            guard served.contains(flow) else {
                throw BadParameter("flow '\(String(flow.prefix(64)))' is not a served form flow (\(named(flows)))")
            }
            let (limit, offset) = try parameters.page()
            let since = try parameters.time("since")
            let (total, page) = try FormStore.list(database: database, flow: flow, since: since, limit: limit,
                                                   offset: offset)
            let data: [JSONValue] = page.map { s in
                var item: [String: JSONValue] = [
                    "id": .number(String(s.id)), "flow": .string(s.flow), "flow_token": .string(s.flowToken),
                    "created_at": .string(ISOTime.format(s.createdAt)), "values": .object(s.values),
                    "confirmed": .bool(s.confirmedAt != nil),
                ]
                if let confirmed = s.confirmedAt { item["confirmed_at"] = .string(ISOTime.format(confirmed)) }
                return .object(item)
            }
            return ReadResource.page(data, total: total, limit: limit, offset: offset)
        }
    }

    private static func named(_ flows: [String]) -> String {
        flows.isEmpty ? "none is served" : "served: " + flows.joined(separator: ", ")
    }

    /// `flows-fcgi submissions --flow NAME [--csv] [--limit N] [--offset N]`; `flows` are the served form flows.
    public static func command(flows: [String]) -> FlowCommand {
        FlowCommand(
            name: "submissions",
            summary: "list a form flow's submissions, newest first; --csv exports them all (oldest first) as CSV",
            usage: """
                usage: flows-fcgi submissions --flow NAME [--limit N] [--offset N] [--csv] [--config FILE]

                Lists the submissions of form flow NAME (FLOWS_DIR/NAME.json), newest first: --limit N of them \
                (\(ParameterRules.limit.lowerBound) to \(ParameterRules.limit.upperBound), default \
                \(ParameterRules.limit.upperBound), as the read API) after skipping --offset N, one line each with
                its values as JSON. --csv exports every submission, oldest first, as CSV with one column per value \
                name (cells starting with = + - @ get a leading '). Reads the database only (DATABASE_URL); exit
                status 1 when there is none, 2 for a bad argument or an unknown flow.
                """,
            valued: ["--flow", "--limit", "--offset"], switches: ["--csv"], access: .readOnly
        ) { parsed throws(CommandArguments.Problem) in
            if let extra = parsed.positional.first { throw .init(message: "unexpected argument \(extra)") }
            guard let flow = parsed["--flow"] else {
                throw .init(message: "--flow NAME is required (\(named(flows)))")
            }
            guard flows.contains(flow) else {
                throw .init(message: "--flow \(String(flow.prefix(64))) is not a served form flow (\(named(flows)))")
            }
            let limit = try parsed.integer("--limit", range: ParameterRules.limit) ?? ParameterRules.limit.upperBound
            let offset = try parsed.integer("--offset", range: ParameterRules.offset) ?? 0
            let csv = parsed.has("--csv")
            return { database, _ in
                if csv { return .done(try FormSubmissions.csv(database: database, flow: flow)) }
                let page = try FormStore.list(database: database, flow: flow, limit: limit, offset: offset).page
                // One line each, the values whole (a table would cut them at 40 characters).
                let lines = page.map { s in
                    "\(s.id)  \(ISOTime.format(s.createdAt))  \(JSONValue.object(s.values).text)\n"
                }
                return .done(lines.isEmpty ? "(none)\n" : lines.joined())
            }
        }
    }

    /// Every submission of `flow`, oldest first, as RFC 4180 CSV: `id,created_at,flow_token`, then one column per
    /// value name (sorted); text as is, other values as JSON; formula-like cells neutralised (`CSV.cell`).
    public static func csv(database: Database, flow: String) throws(DatabaseError) -> String {
        let all = try FormStore.list(database: database, flow: flow, limit: -1).page.reversed()
        let names = Set(all.flatMap(\.values.keys)).sorted()
        var out = CSV.line(["id", "created_at", "flow_token"] + names)
        for s in all {
            let cells = names.map { name -> String in
                switch s.values[name] {
                case nil, .null?: return ""
                case .string(let text)?: return text
                case let value?: return value.text
                }
            }
            out += CSV.line([String(s.id), ISOTime.format(s.createdAt), s.flowToken] + cells)
        }
        return out
    }
}
