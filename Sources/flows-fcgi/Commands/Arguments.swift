import FlowCore

extension CommandArguments {
    /// Parses `arguments` for `command`, which takes the options in `valued` (each with a value) and `switches`.
    /// Prints `usage` for `--help`; prints the problem and returns `nil` for an unknown option or a missing or
    /// repeated value.
    static func parse(_ arguments: [String], command: String, valued: Set<String>, switches: Set<String> = [],
                      usage: String) -> CommandArguments? {
        do throws(Problem) {
            let result = try read(arguments, command: command, valued: valued, switches: switches)
            if result.help { writeAll(1, Array((usage + "\n").utf8)) }
            return result
        } catch {
            _ = CommandArguments(command: command).usageError(error.message)
            return nil
        }
    }

    /// Prints `command: message (see flows-fcgi command --help)`; returns exit status 2.
    func usageError(_ message: String) -> Int32 {
        printError("\(command): \(message) (see flows-fcgi \(command) --help)")
        return ExitStatus.usage
    }
}

/// An operator command that cannot do its work (no database configured, none at the path): exit status 1.
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
}
