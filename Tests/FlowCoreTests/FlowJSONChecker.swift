import FlowCore

/// Checks a Flow JSON file against the rules for Flows with a data endpoint, and the endpoint's answers against
/// that file (FLOWS-PROTOCOL.md section 3). Reusable by every flow's tests:
///
///     let checker = try FlowJSONChecker(flowFile: "expense.json")
///     #expect(checker.fileProblems() == [])
///     #expect(checker.problems(request: request, answer: answer) == [])
///
/// The file: a `version`, `data_api_version` "3.0", unique screen ids (letters and `_`, not `SUCCESS`); a
/// `routing_model` naming every screen, with forward edges only (no cycles), at most 10 edges, exactly one entry
/// screen (no edge points to it), every screen without outgoing edges `terminal` with a `Footer`; every declared
/// `data` field with a known `type` and an `__example__` of that type; every `${data.x}` used in a screen declared
/// in that screen's data, every `${form.x}` a component `name` on that screen, every `${screen.S.data.x}` and
/// `${screen.S.form.x}` resolvable; `error_message` (the client's own snackbar field) declared only where the layout
/// shows `${data.error_message}`; every `navigate` target an edge of the screen, with a payload that fills exactly
/// the target's declared data (every declared field is required).
///
/// An answer is checked as sent: the clear text the endpoint encrypts (`FlowAnswer.clearText`, so a prepared screen
/// is checked on its serialized bytes too). `SUCCESS` carries `extension_message_response.params.flow_token` equal
/// to the request's token and is exempt from data checks (never an answer to INIT); a 427 is always allowed; any
/// other screen must exist, be the entry screen for INIT (or for a request from a screen the file does not know),
/// the current screen or one of its edges for `data_exchange`, the current screen or one with an edge to it for
/// `BACK`; its data must have every declared name with the declared JSON type, and nothing else but a string
/// `error_message`.
struct FlowJSONChecker: Sendable {
    /// A file that is not JSON or cannot be read.
    struct LoadError: Error, CustomStringConvertible {
        /// What went wrong.
        let description: String
    }

    /// One screen as declared.
    struct Screen: Sendable {
        /// `id`.
        let id: String
        /// The declared `data` fields (name → schema with `type`, `__example__`).
        let data: [String: JSONValue]
        /// `terminal`.
        let terminal: Bool
        /// `layout`.
        let layout: JSONValue
    }

    /// Where the JSON came from (for messages).
    let source: String
    /// The whole document.
    let root: JSONValue
    /// Screen ids in file order.
    let screenOrder: [String]
    /// Screens by id.
    let screens: [String: Screen]
    /// `routing_model`: screen → the screens it may go to next.
    let routes: [String: [String]]

    /// The repository root, found from this file's path (`<root>/Tests/FlowCoreTests/FlowJSONChecker.swift`).
    static var repositoryRoot: String {
        var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return parts.joined(separator: "/")
    }

    /// Loads `<repository>/flows/<name>`.
    init(flowFile name: String) throws {
        let path = FlowJSONChecker.repositoryRoot + "/flows/" + name
        try self.init(bytes: try readFile(path, what: "Flow JSON"), source: path)
    }

    /// Checks a Flow JSON given as text.
    init(text: String) throws {
        try self.init(bytes: Array(text.utf8), source: "inline Flow JSON")
    }

    /// The checker of every registered flow's `flows/<name>.json`, loaded once for the whole test run.
    static let shipped: [String: FlowJSONChecker] = {
        var checkers: [String: FlowJSONChecker] = [:]
        for factory in FlowRegistry.all {
            do {
                checkers[factory.name] = try FlowJSONChecker(flowFile: factory.name + ".json")
            } catch {
                preconditionFailure("flows/\(factory.name).json: \(error)")
            }
        }
        return checkers
    }()

    /// The shipped flow's checker whose file has a screen `id` (screen ids differ between the shipped flows).
    static func shipped(knowing id: String) -> FlowJSONChecker? {
        shipped.values.first { $0.screens[id] != nil }
    }

    private init(bytes: [UInt8], source: String) throws {
        do {
            root = try JSONParser.parse(bytes)
        } catch {
            throw LoadError(description: "\(source): not JSON: \(error)")
        }
        self.source = source
        var order: [String] = []
        var screens: [String: Screen] = [:]
        for value in root["screens"]?.arrayValue ?? [] {
            guard let id = value["id"]?.stringValue else { continue }
            order.append(id)
            screens[id] = Screen(id: id, data: value["data"]?.objectValue ?? [:],
                                 terminal: value["terminal"]?.boolValue ?? false, layout: value["layout"] ?? .null)
        }
        screenOrder = order
        self.screens = screens
        var routes: [String: [String]] = [:]
        for (from, targets) in root["routing_model"]?.objectValue ?? [:] {
            routes[from] = (targets.arrayValue ?? []).compactMap(\.stringValue)
        }
        self.routes = routes
    }

    /// The screens no edge points to (a valid file has exactly one: the answer to INIT).
    var entryScreens: [String] {
        let targets = Set(routes.values.joined())
        return screenOrder.filter { !targets.contains($0) }
    }

    // MARK: - The file

    /// Everything wrong with the file itself; empty when it is valid.
    func fileProblems() -> [String] {
        var problems: [String] = []
        func problem(_ text: String) { problems.append(text) }

        guard root.objectValue != nil else { return ["the document is not a JSON object"] }
        if root["version"]?.stringValue?.isEmpty ?? true { problem("`version` must be a non-empty string") }
        if root["data_api_version"] != "3.0" { problem("`data_api_version` must be \"3.0\" for a data endpoint") }

        // Screens.
        guard let rawScreens = root["screens"]?.arrayValue, !rawScreens.isEmpty else {
            return problems + ["`screens` must be a non-empty array"]
        }
        var seen: Set<String> = []
        for (index, raw) in rawScreens.enumerated() {
            guard let id = raw["id"]?.stringValue else {
                problem("screen #\(index) has no string `id`")
                continue
            }
            if !seen.insert(id).inserted { problem("screen id \(id) appears twice") }
            if id == "SUCCESS" { problem("screen id SUCCESS is reserved for completion") }
            if id.isEmpty || !id.unicodeScalars.allSatisfy({ $0.properties.isAlphabetic && $0.isASCII || $0 == "_" }) {
                problem("screen id '\(id)' may only contain letters and underscores")
            }
        }

        // Routing model.
        guard let routing = root["routing_model"]?.objectValue else {
            return problems + ["`routing_model` must be an object (required for a flow with a data endpoint)"]
        }
        var edgeCount = 0
        for (from, targets) in routing.sorted(by: { $0.key < $1.key }) {
            if screens[from] == nil { problem("routing_model names unknown screen \(from)") }
            guard let list = targets.arrayValue else {
                problem("routing_model.\(from) must be an array of screen ids")
                continue
            }
            var listed: Set<String> = []
            for target in list {
                guard let to = target.stringValue else {
                    problem("routing_model.\(from) holds a non-string")
                    continue
                }
                edgeCount += 1
                if to == from { problem("routing_model: \(from) -> \(from) (a refresh is implicit, do not list it)") }
                if to == "SUCCESS" { problem("routing_model: \(from) -> SUCCESS (completion is implicit)") }
                if screens[to] == nil { problem("routing_model: \(from) -> unknown screen \(to)") }
                if !listed.insert(to).inserted { problem("routing_model: \(from) -> \(to) listed twice") }
            }
        }
        if edgeCount > 10 { problem("routing_model has \(edgeCount) edges, at most 10 are allowed") }
        for id in screenOrder where routing[id] == nil { problem("screen \(id) is missing from routing_model") }
        if let cycle = findCycle() {
            problem("routing_model has a cycle \(cycle.joined(separator: " -> ")) (list forward edges only)")
        }
        let entries = entryScreens
        if entries.count != 1 {
            problem("routing_model needs exactly one entry screen (no edge pointing to it), found "
                + (entries.isEmpty ? "none" : entries.joined(separator: ", ")))
        }

        // Each screen.
        for id in screenOrder {
            guard let screen = screens[id] else { continue }
            let isEnd = (routes[id] ?? []).isEmpty
            if isEnd, !screen.terminal { problem("\(id): no outgoing edge, so it must be `terminal: true`") }
            if screen.terminal, components(of: screen).allSatisfy({ $0["type"] != "Footer" }) {
                problem("\(id): a terminal screen needs a Footer")
            }
            problems += declarationProblems(screen)
            problems += layoutProblems(screen)
        }
        return problems
    }

    private func findCycle() -> [String]? {
        var state: [String: Int] = [:]  // 1 visiting, 2 done
        var stack: [String] = []
        func visit(_ id: String) -> [String]? {
            state[id] = 1
            stack.append(id)
            for next in routes[id] ?? [] where next != id {
                if state[next] == 1 {
                    let start = stack.firstIndex(of: next) ?? 0
                    return Array(stack[start...]) + [next]
                }
                if state[next] == nil, let cycle = visit(next) { return cycle }
            }
            stack.removeLast()
            state[id] = 2
            return nil
        }
        for id in routes.keys.sorted() where state[id] == nil {
            if let cycle = visit(id) { return cycle }
        }
        return nil
    }

    private static let knownTypes: Set<String> = ["string", "number", "integer", "boolean", "array", "object"]

    private func declarationProblems(_ screen: Screen) -> [String] {
        var problems: [String] = []
        for (name, schema) in screen.data.sorted(by: { $0.key < $1.key }) {
            guard let type = schema["type"]?.stringValue, FlowJSONChecker.knownTypes.contains(type) else {
                problems.append("\(screen.id): data.\(name) needs a `type` (string, number, integer, boolean, "
                    + "array or object)")
                continue
            }
            guard let example = schema["__example__"] else {
                problems.append("\(screen.id): data.\(name) needs an `__example__`")
                continue
            }
            let path = "\(screen.id): data.\(name)"
            problems += FlowJSONChecker.conformance(of: example, to: schema, at: path + ".__example__")
            problems += FlowJSONChecker.schemaProblems(schema, at: path)
        }
        return problems
    }

    private static func schemaProblems(_ schema: JSONValue, at path: String) -> [String] {
        guard let type = schema["type"]?.stringValue, knownTypes.contains(type) else {
            return ["\(path): unknown or missing `type`"]
        }
        switch type {
        case "array":
            guard let items = schema["items"] else { return ["\(path): an array needs `items`"] }
            return schemaProblems(items, at: path + "[]")
        case "object":
            guard let properties = schema["properties"]?.objectValue else { return [] }
            return properties.sorted(by: { $0.key < $1.key }).flatMap {
                schemaProblems($0.value, at: "\(path).\($0.key)")
            }
        default:
            return []
        }
    }

    /// Every component (an object with a capitalised `type`) of the screen's layout, depth first.
    private func components(of screen: Screen) -> [JSONValue] {
        var found: [JSONValue] = []
        func walk(_ value: JSONValue) {
            switch value {
            case .object(let members):
                if let type = members["type"]?.stringValue, let first = type.unicodeScalars.first,
                    first.properties.isUppercase
                {
                    found.append(value)
                }
                for key in members.keys.sorted() { walk(members[key]!) }
            case .array(let elements):
                elements.forEach(walk)
            default:
                break
            }
        }
        walk(screen.layout)
        return found
    }

    private func componentNames(of screen: Screen) -> [String] {
        components(of: screen).compactMap { $0["name"]?.stringValue }
    }

    private func layoutProblems(_ screen: Screen) -> [String] {
        var problems: [String] = []
        let id = screen.id
        guard screen.layout["type"] == "SingleColumnLayout", screen.layout["children"]?.arrayValue != nil else {
            return ["\(id): `layout` must be a SingleColumnLayout with `children`"]
        }
        var names: Set<String> = []
        for name in componentNames(of: screen) where !names.insert(name).inserted {
            problems.append("\(id): component name \(name) used twice")
        }
        let shown = FlowJSONChecker.expressions(in: screen.layout)
        if screen.data["error_message"] != nil, !shown.contains("data.error_message") {
            problems.append("\(id): declares data.error_message, which the layout does not show (the client shows "
                + "it as a snackbar undeclared; a declared field must be in every answer)")
        }

        // Dynamic references in every string of the layout.
        for expression in FlowJSONChecker.expressions(in: screen.layout) {
            let parts = expression.split(separator: ".", omittingEmptySubsequences: false).map {
                String($0.prefix(while: { $0 != "[" }))
            }
            switch parts.first {
            case "data":
                if parts.count < 2 || screen.data[parts[1]] == nil {
                    problems.append("\(id): ${\(expression)} is not declared in the screen's data")
                }
            case "form":
                if parts.count < 2 || !names.contains(parts[1]) {
                    problems.append("\(id): ${\(expression)} names no component on the screen")
                }
            case "screen":
                guard parts.count >= 4, let other = screens[parts[1]] else {
                    problems.append("\(id): ${\(expression)} names no known screen")
                    continue
                }
                if parts[2] == "data", other.data[parts[3]] == nil {
                    problems.append("\(id): ${\(expression)} is not declared in \(other.id)'s data")
                } else if parts[2] == "form", !componentNames(of: other).contains(parts[3]) {
                    problems.append("\(id): ${\(expression)} names no component on \(other.id)")
                } else if parts[2] != "data", parts[2] != "form" {
                    problems.append("\(id): ${\(expression)}: expected screen.<id>.data or screen.<id>.form")
                }
            default:
                problems.append("\(id): ${\(expression)}: unknown reference (expected data, form or screen)")
            }
        }

        // Actions.
        for action in FlowJSONChecker.actions(in: screen.layout) {
            guard let name = action["name"]?.stringValue else {
                problems.append("\(id): an action without a `name`")
                continue
            }
            switch name {
            case "navigate":
                guard let target = action["next"]?["name"]?.stringValue else {
                    problems.append("\(id): navigate without `next.name`")
                    continue
                }
                guard (routes[id] ?? []).contains(target) else {
                    problems.append("\(id): navigate to \(target) is not an edge of routing_model.\(id)")
                    continue
                }
                let payload = action["payload"]?.objectValue ?? [:]
                let declared = screens[target]?.data ?? [:]
                for key in payload.keys.sorted() where declared[key] == nil {
                    problems.append("\(id): navigate payload \(key) is not declared in \(target)'s data")
                }
                for key in declared.keys.sorted() where payload[key] == nil {
                    problems.append("\(id): navigate payload to \(target) leaves out data.\(key), which \(target) "
                        + "declares")
                }
            case "data_exchange", "complete", "update_data", "open_url":
                break
            default:
                problems.append("\(id): unknown action \(name)")
            }
        }
        return problems
    }

    /// The inside of every `${...}` in every string under `value`.
    static func expressions(in value: JSONValue) -> [String] {
        switch value {
        case .string(let text):
            var found: [String] = []
            var rest = Substring(text)
            while let start = rest.firstRange(of: "${") {
                let after = rest[start.upperBound...]
                guard let end = after.firstIndex(of: "}") else { break }
                found.append(String(after[..<end]))
                rest = after[after.index(after: end)...]
            }
            return found
        case .array(let elements):
            return elements.flatMap(expressions(in:))
        case .object(let members):
            return members.keys.sorted().flatMap { expressions(in: members[$0]!) }
        default:
            return []
        }
    }

    /// Every action object (the value of an `...-action` member) under `value`.
    static func actions(in value: JSONValue) -> [JSONValue] {
        switch value {
        case .array(let elements):
            return elements.flatMap(actions(in:))
        case .object(let members):
            var found: [JSONValue] = []
            for key in members.keys.sorted() {
                if key.hasSuffix("-action") { found.append(members[key]!) }
                found += actions(in: members[key]!)
            }
            return found
        default:
            return []
        }
    }

    /// Where `value` does not match the declared `schema` (`type`, array `items`, object `properties`).
    static func conformance(of value: JSONValue, to schema: JSONValue, at path: String) -> [String] {
        guard let type = schema["type"]?.stringValue else { return ["\(path): the declaration has no type"] }
        switch (type, value) {
        case ("string", .string), ("boolean", .bool), ("number", .number):
            return []
        case ("integer", .number(let text)):
            let isInteger = !text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" })
            return isInteger ? [] : ["\(path): expected integer, got \(text)"]
        case ("array", .array(let elements)):
            guard let items = schema["items"] else { return [] }
            return elements.enumerated().flatMap { conformance(of: $0.element, to: items, at: "\(path)[\($0.offset)]") }
        case ("object", .object(let members)):
            guard let properties = schema["properties"]?.objectValue else { return [] }
            return members.keys.sorted().flatMap { key -> [String] in
                guard let property = properties[key] else { return ["\(path).\(key) is not declared"] }
                return conformance(of: members[key]!, to: property, at: "\(path).\(key)")
            }
        default:
            return ["\(path): expected \(type), got \(value.text.prefix(60))"]
        }
    }

    // MARK: - Answers

    /// Everything wrong with `answer` as a reply to `request`, checked on the clear text the endpoint sends for it;
    /// empty when WhatsApp would accept it.
    func problems(request: FlowRequest, answer: FlowAnswer) -> [String] {
        guard answer.status == 200 else { return [] }  // 427 is always allowed
        do {
            return problems(request: request, sent: try JSONParser.parse(answer.clearText))
        } catch {
            return ["the answer's clear text is not JSON: \(error)"]
        }
    }

    /// Everything wrong with `sent`, the decrypted clear text of a 200 answer to `request`.
    func problems(request: FlowRequest, sent: JSONValue) -> [String] {
        guard let id = sent["screen"]?.stringValue, let data = sent["data"]?.objectValue,
            Set(sent.objectValue?.keys ?? [:].keys) == ["screen", "data"]
        else {
            return ["the answer is not {\"screen\": <id>, \"data\": {...}}: \(sent.text.prefix(80))"]
        }
        let from = request.screen

        if id == "SUCCESS" {
            var problems: [String] = []
            if request.action == .initial { problems.append("SUCCESS answered to INIT") }
            if Set(data.keys) != ["extension_message_response"] {
                problems.append("SUCCESS data must hold only extension_message_response")
            }
            guard let params = data["extension_message_response"]?["params"]?.objectValue else {
                return problems + ["SUCCESS without extension_message_response.params"]
            }
            if params["flow_token"] != .string(request.flowToken) {
                problems.append("SUCCESS params.flow_token is not the request's flow token")
            }
            return problems
        }

        guard let screen = screens[id] else { return ["answer names unknown screen \(id)"] }
        var problems: [String] = []
        let entry = entryScreens.first
        let known = screens[from] != nil
        switch request.action {
        case .initial:
            if id != entry { problems.append("INIT answered with \(id), not the entry screen \(entry ?? "?")") }
        case .dataExchange:
            if !known {
                if id != entry { problems.append("a request from unknown screen \(from) answered with \(id)") }
            } else if id != from, !(routes[from] ?? []).contains(id) {
                problems.append("\(from) -> \(id) is neither a refresh nor an edge of routing_model")
            }
        case .back:
            let predecessors = routes.filter { $0.value.contains(from) }.map(\.key)
            if !known {
                if id != entry { problems.append("BACK from unknown screen \(from) answered with \(id)") }
            } else if id != from, !predecessors.contains(id) {
                problems.append("BACK to \(from) answered with \(id)")
            }
        }

        for key in data.keys.sorted() {
            if key == "error_message", screen.data[key] == nil {
                if data[key]?.stringValue == nil { problems.append("\(id): data.error_message is not a string") }
                continue
            }
            guard let schema = screen.data[key] else {
                problems.append("\(id): data.\(key) is not declared")
                continue
            }
            problems += FlowJSONChecker.conformance(of: data[key]!, to: schema, at: "\(id): data.\(key)")
        }
        for key in screen.data.keys.sorted() where data[key] == nil {
            problems.append("\(id): declared data.\(key) is missing")
        }
        return problems
    }
}
