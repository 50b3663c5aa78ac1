/// The expense flow's operator command: `expenses`.
extension ExpenseFlow {
    /// `flows-fcgi expenses`.
    public static let commands = [
        FlowCommand(
            name: "expenses",
            summary: "list expenses, newest first; --csv exports every expense (oldest first) as CSV",
            usage: """
                usage: flows-fcgi expenses [--limit N] [--offset N] [--csv] [--config FILE]

                Lists expenses, newest first: --limit N of them (\(ParameterRules.limit.lowerBound) to \
                \(ParameterRules.limit.upperBound), default \(ParameterRules.limit.upperBound), as the read API) after
                skipping --offset N. --csv exports every expense, oldest first, as CSV \
                (cells starting with = + - @ get a
                leading '). Reads the database only (DATABASE_URL); exit status 1 when there is none, 2 for a bad \
                argument.
                """,
            valued: ["--limit", "--offset"], switches: ["--csv"], access: .readOnly
        ) { parsed throws(CommandArguments.Problem) in
            if let extra = parsed.positional.first { throw .init(message: "unexpected argument \(extra)") }
            let limit = try parsed.integer("--limit", range: ParameterRules.limit) ?? ParameterRules.limit.upperBound
            let offset = try parsed.integer("--offset", range: ParameterRules.offset) ?? 0
            let csv = parsed.has("--csv")
            return { database, _ in
                if csv { return .done(try ExpenseStore.csv(database: database)) }
                let list = try ExpenseStore.list(database: database, limit: limit, offset: offset)
                let header = ["id", "date", "amount", "currency", "category", "description"]
                let rows = list.map { [String($0.id), $0.expenseDate, $0.amount, $0.currency, $0.category,
                                       $0.description ?? ""] }
                return .done(FlowCommand.table([header] + rows, csv: false))
            }
        },
    ]
}
