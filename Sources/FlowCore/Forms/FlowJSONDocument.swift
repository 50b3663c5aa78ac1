/// One thing wrong with a Flow JSON or sidecar file: the file, a JSON pointer into it, and plain words.
public struct FlowJSONProblem: Sendable, Equatable, CustomStringConvertible {
    /// The file name.
    public let file: String
    /// An RFC 6901 JSON pointer (`/screens/2/layout/children/0/max-chars`); empty for the whole document.
    public let pointer: String
    /// What is wrong.
    public let message: String

    /// A problem at `pointer` of `file`.
    public init(file: String, pointer: String, message: String) {
        self.file = file
        self.pointer = pointer
        self.message = message
    }

    /// `file: pointer: message`.
    public var description: String { "\(file): \(pointer.isEmpty ? "/" : pointer): \(message)" }
}

/// A form flow that cannot be served: every problem found, one a line.
public struct FormDefinitionError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The problems, in the order found (at least one).
    public let problems: [FlowJSONProblem]
    /// One problem a line.
    public var description: String { problems.map(\.description).joined(separator: "\n") }
}

/// Meta's rules for a Flow JSON served by a data endpoint (FLOWS-PROTOCOL.md section 3), for every flow, coded or
/// form: `version` 6.0 to 7.x and `data_api_version` "3.0" (or "4.0"); unique screen ids (not `SUCCESS`), each
/// declared data field with a `type` and an `__example__`; a `routing_model` naming every screen with at most 10
/// edges, no cycle (forward edges only) and exactly one entry screen; every route from the entry screen reaching a
/// terminal screen (screens past a terminal one, such as a terms page opened from it, are allowed, as in Meta's own
/// appointment template); a terminal screen has a Footer; `complete` only on a terminal screen; every `navigate`
/// along an edge with a payload filling exactly its target's declared data; every `${data.x}` declared by its
/// screen, every `${form.x}` a component of its screen, every `${screen.S.data.x}` / `${screen.S.form.x}` resolvable;
/// and the validation attributes of input components well formed (`max-chars` a positive integer, dates
/// `YYYY-MM-DD`, `pattern` a regular expression and only from version 6.2).
public enum FlowJSONRules {
    /// Every problem of `flowJSON` (empty when it follows the rules).
    public static func problems(flowJSON: JSONValue, file: String) -> [FlowJSONProblem] {
        var document = FlowDocument(flowJSON, file: file)
        if document.problems.isEmpty { document.checkMetaRules() }
        return document.problems
    }

    /// Every problem of the Flow JSON text `bytes` (a parse error is one problem).
    public static func problems(flowJSON bytes: [UInt8], file: String) -> [FlowJSONProblem] {
        do {
            return problems(flowJSON: try JSONParser.parse(bytes), file: file)
        } catch {
            return [FlowJSONProblem(file: file, pointer: "", message: "not JSON: \(error)")]
        }
    }
}

/// `base` + `/key`, escaped as RFC 6901 says.
func jsonPointer(_ base: String, _ key: String) -> String {
    var escaped = ""
    for character in key {
        switch character {
        case "~": escaped += "~0"
        case "/": escaped += "~1"
        default: escaped.append(character)
        }
    }
    return base + "/" + escaped
}

/// `base` + `/index`.
func jsonPointer(_ base: String, _ index: Int) -> String { base + "/" + String(index) }

/// An action (`on-click-action`, `on-select-action`, ...) in a screen's layout.
struct FlowDocumentAction {
    let name: String
    let pointer: String
    /// `next.name` of a navigate.
    let next: String?
    /// The payload's members, sorted by key.
    let payload: [(key: String, value: JSONValue)]
    /// True for the Footer's `on-click-action`.
    let inFooter: Bool
}

/// A screen as read from the file, before the engine's checks.
struct FlowDocumentScreen {
    let id: String
    let pointer: String
    let terminal: Bool
    /// Declared data sorted by name: name, kind (nil when the type is unknown), pointer.
    var declared: [(name: String, kind: FormValueKind?, pointer: String)] = []
    /// The input components.
    var components: [FormComponent] = []
    /// Every `${data.x}` a component attribute reads: field, attribute pointer, component index.
    var dataAttributes: [(field: String, pointer: String, component: Int)] = []
    /// Every component `name` of the screen (inputs and others).
    var names: Set<String> = []
    var actions: [FlowDocumentAction] = []
    /// Every `${...}` in the layout: inside, pointer of the string.
    var references: [(expression: String, pointer: String)] = []
    var footerPointer: String?

    func declares(_ name: String) -> Bool { declared.contains { $0.name == name } }
    func component(named name: String) -> Int? { components.firstIndex { $0.name == name } }
}

/// A Flow JSON read into screens, routing and components, collecting problems as it goes.
struct FlowDocument {
    let file: String
    var problems: [FlowJSONProblem] = []
    var version = ""
    var versionNumber = (major: 0, minor: 0)
    var screens: [FlowDocumentScreen] = []
    var index: [String: Int] = [:]
    /// Forward edges by screen index, in file order.
    var edges: [[Int]] = []
    var entry = 0

    static let inputTypes: Set<String> = [
        "TextInput", "TextArea", "DatePicker", "CheckboxGroup", "Dropdown", "RadioButtonsGroup", "OptIn",
    ]

    mutating func problem(_ pointer: String, _ message: String) {
        let found = FlowJSONProblem(file: file, pointer: pointer, message: message)
        if !problems.contains(found) { problems.append(found) }
    }

    init(_ root: JSONValue, file: String) {
        self.file = file
        guard let top = root.objectValue else {
            problem("", "the Flow JSON must be an object")
            return
        }
        if let text = top["version"]?.stringValue, let parsed = FlowDocument.parseVersion(text) {
            version = text
            versionNumber = parsed
            if !(6...7).contains(parsed.major) {
                problem("/version", "version \"\(text)\" is not served: use 6.0 to 7.x (7.x recommended)")
            }
        } else {
            problem("/version", "must be a version string such as \"7.0\"")
        }
        let api = top["data_api_version"]?.stringValue
        if api != "3.0" && api != "4.0" {
            problem("/data_api_version", "must be \"3.0\" (or \"4.0\"): the flow is served by a data endpoint")
        }
        guard let rawScreens = top["screens"]?.arrayValue, !rawScreens.isEmpty else {
            problem("/screens", "must be a non-empty array of screens")
            return
        }
        for (i, raw) in rawScreens.enumerated() { readScreen(raw, pointer: jsonPointer("/screens", i)) }
        readRouting(top["routing_model"])
    }

    static func parseVersion(_ text: String) -> (major: Int, minor: Int)? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let major = Int(parts[0]), let minor = Int(parts[1]), major >= 0, minor >= 0 else {
            return nil
        }
        return (major, minor)
    }

    private mutating func readScreen(_ raw: JSONValue, pointer: String) {
        guard let id = raw["id"]?.stringValue, !id.isEmpty,
            id.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || $0 == "_") })
        else {
            problem(jsonPointer(pointer, "id"), "a screen needs an `id` of letters and underscores")
            return
        }
        if id == "SUCCESS" { problem(jsonPointer(pointer, "id"), "SUCCESS is reserved for completion") }
        if index[id] != nil { problem(jsonPointer(pointer, "id"), "screen id \(id) is used twice") }
        var screen = FlowDocumentScreen(id: id, pointer: pointer, terminal: raw["terminal"]?.boolValue ?? false)
        let dataPointer = jsonPointer(pointer, "data")
        switch raw["data"] {
        case nil: break
        case .object(let fields)?:
            for name in fields.keys.sorted() {
                let fieldPointer = jsonPointer(dataPointer, name)
                let schema = fields[name]!
                let kind = schema["type"]?.stringValue.flatMap(FormValueKind.init(declared:))
                if kind == nil {
                    problem(jsonPointer(fieldPointer, "type"),
                            "must be string, number, integer, boolean, array or object")
                } else if schema["__example__"] == nil {
                    problem(fieldPointer, "needs an `__example__`")
                }
                screen.declared.append((name, kind, fieldPointer))
            }
        default: problem(dataPointer, "must be an object of declared fields")
        }
        let layoutPointer = jsonPointer(pointer, "layout")
        if let layout = raw["layout"], layout["type"] == "SingleColumnLayout",
            let children = layout["children"]?.arrayValue
        {
            scanReferences(layout, pointer: layoutPointer, into: &screen)
            walk(children, pointer: jsonPointer(layoutPointer, "children"), conditional: false, into: &screen)
        } else {
            problem(layoutPointer, "must be a SingleColumnLayout with `children`")
        }
        index[id] = screens.count
        screens.append(screen)
    }

    private func scanReferences(_ value: JSONValue, pointer: String, into screen: inout FlowDocumentScreen) {
        switch value {
        case .string(let text):
            var rest = Substring(text)
            while let start = rest.firstByteRange(of: "${") {
                let after = rest[start.upperBound...]
                guard let end = after.firstIndex(of: "}") else { break }
                screen.references.append((String(after[..<end]), pointer))
                rest = after[after.index(after: end)...]
            }
        case .array(let elements):
            for (i, element) in elements.enumerated() {
                scanReferences(element, pointer: jsonPointer(pointer, i), into: &screen)
            }
        case .object(let members):
            for key in members.keys.sorted() {
                scanReferences(members[key]!, pointer: jsonPointer(pointer, key), into: &screen)
            }
        default: break
        }
    }

    private mutating func walk(_ children: [JSONValue], pointer: String, conditional: Bool,
                               into screen: inout FlowDocumentScreen) {
        for (i, child) in children.enumerated() {
            let childPointer = jsonPointer(pointer, i)
            guard let members = child.objectValue, let type = members["type"]?.stringValue else {
                problem(childPointer, "a component needs a `type`")
                continue
            }
            if let name = members["name"]?.stringValue {
                if !screen.names.insert(name).inserted {
                    problem(jsonPointer(childPointer, "name"), "component name \(name) is used twice on \(screen.id)")
                }
            }
            if type == "Footer" { screen.footerPointer = childPointer }
            for key in members.keys.sorted() where key.hasSuffix("-action") {
                readAction(members[key]!, pointer: jsonPointer(childPointer, key),
                           inFooter: type == "Footer" && key == "on-click-action", into: &screen)
            }
            if FlowDocument.inputTypes.contains(type) {
                readComponent(members, type: type, pointer: childPointer, conditional: conditional, into: &screen)
            }
            if let nested = members["children"]?.arrayValue {
                walk(nested, pointer: jsonPointer(childPointer, "children"), conditional: conditional,
                     into: &screen)
            }
            for branch in ["then", "else"] {
                if let nested = members[branch]?.arrayValue {
                    walk(nested, pointer: jsonPointer(childPointer, branch), conditional: true, into: &screen)
                }
            }
            if let cases = members["cases"]?.objectValue {
                for key in cases.keys.sorted() {
                    guard let nested = cases[key]?.arrayValue else { continue }
                    walk(nested, pointer: jsonPointer(jsonPointer(childPointer, "cases"), key), conditional: true,
                         into: &screen)
                }
            }
        }
    }

    private mutating func readAction(_ value: JSONValue, pointer: String, inFooter: Bool,
                                     into screen: inout FlowDocumentScreen) {
        guard let name = value["name"]?.stringValue else {
            problem(jsonPointer(pointer, "name"), "an action needs a `name`")
            return
        }
        let payload = (value["payload"]?.objectValue ?? [:]).sorted { $0.key < $1.key }
            .map { (key: $0.key, value: $0.value) }
        screen.actions.append(FlowDocumentAction(name: name, pointer: pointer,
                                                 next: value["next"]?["name"]?.stringValue, payload: payload,
                                                 inFooter: inFooter))
    }

    /// `${data.x}` when `value` is exactly that string.
    static func dataReference(_ value: JSONValue) -> String? { reference(value, prefix: "${data.") }

    /// `${form.x}` when `value` is exactly that string.
    static func formReference(_ value: JSONValue) -> String? { reference(value, prefix: "${form.") }

    private static func reference(_ value: JSONValue, prefix: String) -> String? {
        guard case .string(let text) = value, text.hasPrefix(prefix), text.hasSuffix("}") else { return nil }
        let name = text.dropFirst(prefix.count).dropLast()
        guard !name.isEmpty, !name.contains(where: { $0 == "." || $0 == "[" || $0 == "}" || $0 == " " }) else {
            return nil
        }
        return String(name)
    }

    private mutating func readComponent(_ members: [String: JSONValue], type: String, pointer: String,
                                        conditional: Bool, into screen: inout FlowDocumentScreen) {
        guard let name = members["name"]?.stringValue, !name.isEmpty else {
            problem(jsonPointer(pointer, "name"), "an input component needs a `name`")
            return
        }
        let kind: FormComponent.Kind
        switch type {
        case "TextInput":
            var inputType = FormComponent.InputType.text
            if let given = members["input-type"] {
                if let text = given.stringValue, let parsed = FormComponent.InputType(rawValue: text) {
                    inputType = parsed
                } else {
                    problem(jsonPointer(pointer, "input-type"),
                            "must be text, number, email, password, passcode or phone")
                }
            }
            kind = .textInput(inputType)
        case "TextArea": kind = .textArea
        case "DatePicker": kind = .datePicker
        case "CheckboxGroup": kind = .checkboxGroup
        case "Dropdown": kind = .dropdown
        case "RadioButtonsGroup": kind = .radioButtons
        default: kind = .optIn
        }
        let labelText = members["label"]?.stringValue.flatMap { $0.containsBytes("${") ? nil : $0 }
        var component = FormComponent(name: name, label: labelText ?? name, kind: kind, pointer: pointer)
        component.alwaysShown = !conditional
        let componentIndex = screen.components.count
        var dataAttributes: [(String, String, Int)] = []

        func attribute<Value>(_ key: String, _ expected: String,
                              _ convert: (JSONValue) -> Value?) -> FormAttribute<Value>? {
            guard let value = members[key] else { return nil }
            let attributePointer = jsonPointer(pointer, key)
            if let field = FlowDocument.dataReference(value) {
                dataAttributes.append((field, attributePointer, componentIndex))
                return .data(field)
            }
            guard let converted = convert(value) else {
                problem(attributePointer, "must be \(expected) or ${data.<field>}")
                return nil
            }
            return .fixed(converted)
        }
        func positive(_ value: JSONValue) -> Int? {
            guard case .number(let text) = value, let number = Int(text), number > 0 else { return nil }
            return number
        }
        func nonNegative(_ value: JSONValue) -> Int? {
            guard case .number(let text) = value, let number = Int(text), number >= 0 else { return nil }
            return number
        }

        component.required = attribute("required", "true or false", \.boolValue)
        for key in ["visible", "enabled"] {
            guard let value = members[key] else { continue }
            let parsed: FormAttribute<Bool>?
            if let flag = value.boolValue {
                parsed = .fixed(flag)
            } else if let field = FlowDocument.dataReference(value) {
                dataAttributes.append((field, jsonPointer(pointer, key), componentIndex))
                parsed = .data(field)
            } else {
                parsed = nil
                component.alwaysShown = false  // a condition the engine does not evaluate
            }
            if key == "visible" { component.visible = parsed } else { component.enabled = parsed }
        }
        if let initValue = members["init-value"] { component.initField = FlowDocument.dataReference(initValue) }
        component.helperText = members["helper-text"]?.stringValue.flatMap { $0.containsBytes("${") ? nil : $0 }

        switch kind {
        case .textInput:
            component.minChars = attribute("min-chars", "a whole number of 0 or more", nonNegative)
            component.maxChars = attribute("max-chars", "a positive integer", positive)
            if case .fixed(let min)? = component.minChars, case .fixed(let max)? = component.maxChars, min > max {
                problem(jsonPointer(pointer, "min-chars"), "must not be more than max-chars (\(max))")
            }
            if let value = members["pattern"] {
                let patternPointer = jsonPointer(pointer, "pattern")
                if versionNumber < (6, 2) {
                    problem(patternPointer, "`pattern` needs Flow JSON version 6.2 or later (this file is \(version))")
                } else if let text = value.stringValue, !text.containsBytes("${") {
                    do {
                        component.pattern = try FormPattern(text)
                    } catch {
                        problem(patternPointer, "is not a supported regular expression: \(error)")
                    }
                } else {
                    problem(patternPointer, "must be a literal regular expression (the engine compiles it once)")
                }
            }
        case .textArea:
            component.maxChars = attribute("max-length", "a positive integer", positive)
        case .datePicker:
            component.minDate = attribute("min-date", "a date YYYY-MM-DD", FormComponent.day)
            component.maxDate = attribute("max-date", "a date YYYY-MM-DD", FormComponent.day)
            component.unavailableDates = attribute("unavailable-dates", "an array of dates YYYY-MM-DD",
                                                   FormComponent.days)
            if case .fixed(let min)? = component.minDate, case .fixed(let max)? = component.maxDate, min > max {
                problem(jsonPointer(pointer, "min-date"), "must not be after max-date (\(max))")
            }
        case .checkboxGroup, .dropdown, .radioButtons:
            if case .checkboxGroup = kind {
                component.minItems = attribute("min-selected-items", "a positive integer", positive)
                component.maxItems = attribute("max-selected-items", "a positive integer", positive)
                if case .fixed(let min)? = component.minItems, case .fixed(let max)? = component.maxItems, min > max {
                    problem(jsonPointer(pointer, "min-selected-items"),
                            "must not be more than max-selected-items (\(max))")
                }
            }
            component.options = attribute("data-source", "an array of {\"id\", \"title\"} options") { value in
                guard let options = FormOption.list(value), options.count == value.arrayValue?.count,
                    Set(options.map(\.id)).count == options.count
                else { return nil }
                return options
            }
            if members["data-source"] == nil {
                problem(jsonPointer(pointer, "data-source"), "is required: the options to choose from")
            }
        case .optIn:
            break
        }
        screen.components.append(component)
        screen.dataAttributes += dataAttributes.map { (field: $0.0, pointer: $0.1, component: $0.2) }
    }

    private mutating func readRouting(_ value: JSONValue?) {
        edges = Array(repeating: [], count: screens.count)
        guard let routing = value?.objectValue else {
            problem("/routing_model", "must be an object: each screen and the screens it may go to next")
            return
        }
        var count = 0
        for key in routing.keys.sorted() {
            let pointer = jsonPointer("/routing_model", key)
            guard let from = index[key] else {
                problem(pointer, "names no screen")
                continue
            }
            guard let targets = routing[key]?.arrayValue else {
                problem(pointer, "must be an array of screen ids")
                continue
            }
            for (i, target) in targets.enumerated() {
                guard let name = target.stringValue, let to = index[name] else {
                    problem(jsonPointer(pointer, i), "names no screen")
                    continue
                }
                if to == from || edges[from].contains(to) {
                    problem(jsonPointer(pointer, i), "\(key) -> \(name) is listed twice or points to itself")
                    continue
                }
                edges[from].append(to)
                count += 1
            }
        }
        for screen in screens where routing[screen.id] == nil {
            problem("/routing_model", "screen \(screen.id) is missing (list it, with [] when it has no edge)")
        }
        if count > 10 { problem("/routing_model", "has \(count) edges; at most 10 are allowed") }
    }
}

/// Version tuples compare major first.
private func < (a: (major: Int, minor: Int), b: (Int, Int)) -> Bool { a.major < b.0 || a.major == b.0 && a.minor < b.1 }
