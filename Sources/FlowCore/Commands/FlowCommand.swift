/// An operator command a flow declares (`flows-fcgi bookings`): the command line dispatches to it by name, reads
/// the configuration (`--config` and the environment), opens the database with `access` and prints the outcome.
public struct FlowCommand: Sendable {
    /// What a run of the command came to.
    public enum Outcome: Sendable, Equatable {
        /// Done: this text goes to standard output, exit status 0.
        case done(String)
        /// Not done (no such row, already done): this message goes to standard error, exit status 1.
        case failed(String)
    }

    /// The work, once the arguments are checked: run over the database at time `now` (seconds since the epoch).
    public typealias Work = @Sendable (_ database: Database, _ now: Int64) throws -> Outcome

    /// The command name, e.g. `bookings`.
    public let name: String
    /// One line for `flows-fcgi --help`.
    public let summary: String
    /// The text `--help` prints.
    public let usage: String
    /// The options taking a value (`--config` is always accepted).
    public let valued: Set<String>
    /// The options taking none.
    public let switches: Set<String>
    /// How the database is opened: `.readOnly` for a listing, `.existing` for a command that writes.
    public let access: Database.Access
    /// Checks the parsed arguments before any database is opened (a `CommandArguments.Problem` is a usage
    /// error, exit status 2) and returns the work.
    public let prepare: @Sendable (CommandArguments) throws(CommandArguments.Problem) -> Work

    /// A command `name` taking `valued` options and `switches`.
    public init(name: String, summary: String, usage: String, valued: Set<String> = [], switches: Set<String> = [],
                access: Database.Access,
                prepare: @escaping @Sendable (CommandArguments) throws(CommandArguments.Problem) -> Work) {
        self.name = name
        self.summary = summary
        self.usage = usage
        self.valued = valued
        self.switches = switches
        self.access = access
        self.prepare = prepare
    }

    /// Reads `arguments` for this command (`--config` included) and checks them: the work to run, or `nil` for
    /// `--help`.
    public func parse(_ arguments: [String]) throws(CommandArguments.Problem) -> (CommandArguments, Work?) {
        let parsed = try CommandArguments.read(arguments, command: name, valued: valued.union(["--config"]),
                                               switches: switches)
        if parsed.help { return (parsed, nil) }
        return (parsed, try prepare(parsed))
    }

    /// The command called `name` among those `factories` declare, first registered first.
    public static func find(_ name: String, in factories: [FlowFactory]) -> FlowCommand? {
        for factory in factories {
            if let command = factory.commands.first(where: { $0.name == name }) { return command }
        }
        return nil
    }

    /// Aligned columns (cells cut at 40 characters, `(none)` under a lone header), or CSV.
    public static func table(_ table: [[String]], csv: Bool) -> String {
        var out = ""
        if csv {
            for row in table { out += CSV.line(row) }
            return out
        }
        var widths = [Int](repeating: 0, count: table.first?.count ?? 0)
        for row in table { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], min(cell.count, 40)) } }
        for row in table {
            let cells = row.enumerated().map { i, cell in
                let shown = cell.count > 40 ? String(cell.prefix(39)) + "…" : cell
                return i == row.count - 1 ? shown : shown + String(repeating: " ", count: widths[i] - shown.count)
            }
            out += cells.joined(separator: "  ") + "\n"
        }
        if table.count == 1 { out += "(none)\n" }
        return out
    }
}
