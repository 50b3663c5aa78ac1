#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The form flows of `FLOWS_DIR`: every `<name>.json` (name `[a-z0-9][a-z0-9_-]{0,63}`) that is not a coded flow's
/// Flow JSON, with its optional sidecar `<name>.rules.json`; the coded flows' Flow JSON is checked against Meta's
/// rules too. Loaded once per process, at startup, by the responder, `flows-fcgi check` and the operator commands.
public enum FormFlows {
    /// What loading a folder found.
    public struct Loaded: Sendable {
        /// The form flows, by file name order.
        public var flows: [FormFlow] = []
        /// Every problem of every file (`file: /pointer: message`); serving must not start unless empty.
        public var problems: [FlowJSONProblem] = []
        /// Things worth telling the operator (a file ignored, no folder found).
        public var warnings: [String] = []
    }

    /// True for a flow name: `[a-z0-9][a-z0-9_-]{0,63}`.
    public static func isFlowName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard let first = bytes.first, bytes.count <= 64, isLowerOrDigit(first) else { return false }
        return bytes.allSatisfy { isLowerOrDigit($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
    }

    private static func isLowerOrDigit(_ byte: UInt8) -> Bool {
        (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x30 && byte <= 0x39)
    }

    /// Loads `directory`: compiles each form flow, checks each coded flow's (`coded`) Flow JSON.
    /// - Throws: `ConfigError` when the folder cannot be listed or a file read.
    public static func load(directory: String, coded: Set<String>,
                            sessionHours: Int) throws(ConfigError) -> Loaded {
        guard let folder = opendir(directory) else {
            throw ConfigError("FLOWS_DIR \(directory): cannot list: \(String(cString: strerror(errno)))")
        }
        var names: [String] = []
        while let entry = readdir(folder) {
            names.append(withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            })
        }
        closedir(folder)
        names.sort()
        let files = Set(names)
        var loaded = Loaded()
        for file in names where file.hasSuffix(".json") {
            let stem = String(file.dropLast(5))
            let path = directory + "/" + file
            if stem.hasSuffix(".rules") {
                let flow = String(stem.dropLast(6))
                if isFlowName(flow), !files.contains(flow + ".json") {
                    loaded.problems.append(FlowJSONProblem(file: path, pointer: "", message: "a sidecar without "
                        + "its Flow JSON \(flow).json"))
                }
                continue
            }
            guard !stem.contains(".") else { continue }  // a companion, such as appointment.catalog.json
            guard isFlowName(stem) else {
                loaded.warnings.append("FLOWS_DIR: \(file) ignored: a flow's name is 1 to 64 of a-z, 0-9, _ and -, "
                    + "starting with a letter or digit")
                continue
            }
            let bytes = try readFile(path, what: "Flow JSON")
            if coded.contains(stem) {
                loaded.problems += FlowJSONRules.problems(flowJSON: bytes, file: path)
                continue
            }
            let sidecarPath = directory + "/" + stem + ".rules.json"
            let sidecar = files.contains(stem + ".rules.json") ? try readFile(sidecarPath, what: "sidecar") : nil
            do {
                let definition = try FormDefinition.compile(flowJSON: bytes, sidecar: sidecar, file: path,
                                                            sidecarFile: sidecarPath)
                loaded.flows.append(FormFlow(name: stem, definition: definition, sessionHours: sessionHours))
            } catch {
                loaded.problems += error.problems
            }
        }
        return loaded
    }

    /// The `FLOWS_DIR` folder for `settings`, or `nil` with a warning when it is not set and the shipped folder is
    /// not found (then only the coded flows are served).
    /// - Throws: `ConfigError` when `FLOWS_DIR` is set but not a folder.
    public static func directory(_ settings: Settings, warnings: inout [String]) throws(ConfigError) -> String? {
        do {
            return try Configuration.flowsDirectory(settings)
        } catch {
            if settings["FLOWS_DIR"] != nil { throw error }
            warnings.append("\(error.description); serving the coded flows only")
            return nil
        }
    }

    /// Loads the form flows `settings` configure: `FLOWS_DIR` (see `directory`) with `FORM_SESSION_HOURS`.
    /// - Throws: `ConfigError` listing every problem, one `file: /pointer: message` a line.
    public static func load(_ settings: Settings, coded: Set<String>,
                            warnings: inout [String]) throws(ConfigError) -> [FormFlow] {
        let hours = try FormFlow.sessionHours(settings)
        guard let directory = try directory(settings, warnings: &warnings) else { return [] }
        let loaded = try load(directory: directory, coded: coded, sessionHours: hours)
        warnings += loaded.warnings
        guard loaded.problems.isEmpty else {
            throw ConfigError("FLOWS_DIR \(directory): Flow JSON that cannot be served:\n"
                + loaded.problems.map(\.description).joined(separator: "\n"))
        }
        return loaded.flows
    }
}
