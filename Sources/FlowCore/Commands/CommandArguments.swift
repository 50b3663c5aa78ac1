/// The arguments of an operator command (and of the responder itself), read the same way everywhere: `--name value`
/// or `--name=value`, `-c` for `--config`, `-V` for `--version`, `--help`/`-h` for the command's own usage. An
/// unknown option, a missing or repeated value, or a value the command cannot use (a date that is not one, a number
/// out of its range) is a usage error: a message naming the argument and exit status 2. Dates and page sizes follow
/// the read API's rules (`ParameterRules`), so the command line and the API accept the same values.
public struct CommandArguments: Sendable {
    /// A usage error: the message names the argument.
    public struct Problem: Error {
        /// What is wrong, naming the argument.
        public let message: String
        /// The problem `message`.
        public init(message: String) { self.message = message }
    }

    /// The command, for messages (`bookings`).
    public let command: String
    private var values: [String: String] = [:]
    private var switches: Set<String> = []
    /// The arguments that are not options, in order.
    public private(set) var positional: [String] = []
    /// True when `--help` was given (the caller prints the usage).
    public private(set) var help = false

    /// No arguments yet, for `command`.
    public init(command: String) { self.command = command }

    /// Reads `arguments`, printing nothing: `help` is set for `--help`, a problem is thrown.
    public static func read(_ arguments: [String], command: String, valued: Set<String>,
                            switches: Set<String> = []) throws(Problem) -> CommandArguments {
        var result = CommandArguments(command: command)
        var i = 0
        while i < arguments.count {
            var argument = arguments[i]
            var inline: String?
            if argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") {
                inline = String(argument[argument.index(after: equals)...])
                argument = String(argument[..<equals])
            }
            if argument == "-c", valued.contains("--config") { argument = "--config" }
            if argument == "-V", switches.contains("--version") { argument = "--version" }
            i += 1
            if argument == "--help" || argument == "-h" {
                result.help = true
                return result
            }
            if valued.contains(argument) {
                // The next argument is the value, unless it is one of the options (`--from --config FILE`).
                let next = i < arguments.count ? arguments[i] : nil
                let isOption = next.map { valued.contains($0) || switches.contains($0) || $0 == "--help" } ?? false
                guard let value = inline ?? (isOption ? nil : next) else {
                    throw Problem(message: "\(argument) needs a value")
                }
                if inline == nil { i += 1 }
                guard result.values.updateValue(value, forKey: argument) == nil else {
                    throw Problem(message: "\(argument) given more than once")
                }
            } else if switches.contains(argument), inline == nil {
                result.switches.insert(argument)
            } else if argument.hasPrefix("-"), argument != "-" {
                throw Problem(message: switches.contains(argument) ? "\(argument) takes no value"
                    : "unknown option \(argument)")
            } else {
                result.positional.append(argument)
            }
        }
        return result
    }

    /// The value of option `name`, `nil` when not given.
    public subscript(name: String) -> String? { values[name] }

    /// True when switch `name` was given.
    public func has(_ name: String) -> Bool { switches.contains(name) }

    /// The whole number given for `name` within `range`, `nil` when not given.
    public func integer(_ name: String, range: ClosedRange<Int>) throws(Problem) -> Int? {
        guard let text = values[name] else { return nil }
        guard let number = ParameterRules.integer(text, in: range) else {
            throw Problem(message: ParameterRules.integerProblem(name, range) + ", not '\(Self.shown(text))'")
        }
        return number
    }

    /// The date (`YYYY-MM-DD`) given for `name`, `nil` when not given.
    public func date(_ name: String) throws(Problem) -> String? {
        guard let text = values[name] else { return nil }
        guard ParameterRules.isDate(text) else {
            throw Problem(message: ParameterRules.dateProblem(name) + ", not '\(Self.shown(text))'")
        }
        return text
    }

    /// At most 40 characters of a value, for a message.
    private static func shown(_ text: String) -> String { text.count > 40 ? String(text.prefix(39)) + "…" : text }
}
