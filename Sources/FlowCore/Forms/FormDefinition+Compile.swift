extension FormDefinition {
    /// Compiles a form flow from the bytes of its Flow JSON and optional sidecar.
    /// - Throws: `FormDefinitionError` with every problem found (file name and JSON pointer each).
    public static func compile(flowJSON: [UInt8], sidecar: [UInt8]?, file: String,
                               sidecarFile: String? = nil) throws(FormDefinitionError) -> FormDefinition {
        let rulesFile = sidecarFile ?? FormDefinition.sidecarName(of: file)
        let root: JSONValue
        var rules: JSONValue?
        do {
            root = try JSONParser.parse(flowJSON)
        } catch {
            throw FormDefinitionError(problems: [FlowJSONProblem(file: file, pointer: "",
                                                                 message: "not JSON: \(error)")])
        }
        if let sidecar {
            do {
                rules = try JSONParser.parse(sidecar)
            } catch {
                throw FormDefinitionError(problems: [FlowJSONProblem(file: rulesFile, pointer: "",
                                                                     message: "not JSON: \(error)")])
            }
        }
        return try compile(flowJSON: root, sidecar: rules, file: file, sidecarFile: rulesFile)
    }

    /// Compiles a form flow from its parsed Flow JSON and optional sidecar: Meta's rules (`FlowJSONRules`), then
    /// what the engine needs to serve it:
    /// - the Footer of each screen submits by `data_exchange` (its payload values `${form.x}` of an input component,
    ///   `${data.x}` or literals) or `navigate`; a terminal screen may end with `complete` only when the endpoint's
    ///   answer shows it and it has no input component (its values would reach the webhook only); a screen without
    ///   Footer is an information page reached by `navigate`, without inputs; only the Footer sends `data_exchange`;
    /// - a screen is shown either by the endpoint's answers or by `navigate` from one screen, never both; whatever
    ///   the engine checks against (`${data.x}` in a validation attribute or carried in a payload) has a source it
    ///   knows (its own values, a literal, or a component of an earlier screen);
    /// - each `data_exchange` that does not complete goes to one screen: its only forward edge left after the
    ///   screen's own `navigate` targets, or the sidecar's `routes`; every answer the endpoint sends can fill every
    ///   field its screen declares, on every path, from the values collected by then (same name, fitting type) and
    ///   the sidecar's `values`;
    /// - the sidecar names existing screens, edges and fields, with values of the declared types.
    /// - Throws: `FormDefinitionError` with every problem found.
    public static func compile(flowJSON: JSONValue, sidecar: JSONValue?, file: String,
                               sidecarFile: String? = nil) throws(FormDefinitionError) -> FormDefinition {
        var compiler = FormCompiler(document: FlowDocument(flowJSON, file: file),
                                    sidecarFile: sidecarFile ?? FormDefinition.sidecarName(of: file))
        if compiler.document.problems.isEmpty { compiler.document.checkMetaRules() }
        guard compiler.document.problems.isEmpty else {
            throw FormDefinitionError(problems: compiler.document.problems)
        }
        compiler.readSidecar(sidecar)
        compiler.compileScreens()
        let problems = compiler.document.problems + compiler.sidecarProblems
        guard problems.isEmpty else { throw FormDefinitionError(problems: problems) }
        return compiler.definition()
    }

    /// `name.json` → `name.rules.json`.
    static func sidecarName(of file: String) -> String {
        (file.hasSuffix(".json") ? String(file.dropLast(5)) : file) + ".rules.json"
    }
}

/// The engine's checks and the compiled screens (see `FormDefinition.compile`).
struct FormCompiler {
    var document: FlowDocument
    let sidecarFile: String
    var sidecarProblems: [FlowJSONProblem] = []
    var screens: [FormScreen] = []
    /// Sidecar routes by screen, with the pointer of the list.
    var routes: [Int: (routes: [FormRoute], pointer: String)] = [:]
    /// Sidecar conditions and checks to verify against the collectable fields: screen, field, pointer.
    var fieldUses: [(screen: Int, field: String, pointer: String)] = []
    /// The fields collected on some path by the time each screen submits (its own payload included).
    var available: [Set<String>] = []

    init(document: FlowDocument, sidecarFile: String) {
        self.document = document
        self.sidecarFile = sidecarFile
        screens = document.screens.map { screen in
            FormScreen(id: screen.id, terminal: screen.terminal,
                       declared: screen.declared.map { FormDeclared(name: $0.name, kind: $0.kind ?? .string) },
                       declaresErrorMessage: screen.declares("error_message"), components: screen.components)
        }
        available = Array(repeating: [], count: screens.count)
    }

    private mutating func sidecarProblem(_ pointer: String, _ message: String) {
        sidecarProblems.append(FlowJSONProblem(file: sidecarFile, pointer: pointer, message: message))
    }

    private mutating func unknownKeys(_ object: [String: JSONValue], allowed: [String], at pointer: String) {
        for key in object.keys.sorted() where !allowed.contains(key) {
            sidecarProblem(jsonPointer(pointer, key), "unknown key (expected \(allowed.joined(separator: ", ")))")
        }
    }

    private mutating func screen(_ id: JSONValue?, at pointer: String) -> Int? {
        guard let name = id?.stringValue, let s = document.index[name] else {
            sidecarProblem(pointer, "names no screen of \(document.file)")
            return nil
        }
        return s
    }

    // MARK: - Sidecar

    mutating func readSidecar(_ sidecar: JSONValue?) {
        guard let sidecar else { return }
        guard let top = sidecar.objectValue else {
            sidecarProblem("", "must be an object with routes, checks and values (all optional)")
            return
        }
        unknownKeys(top, allowed: ["routes", "checks", "values"], at: "")
        if let value = top["routes"] {
            if let object = value.objectValue {
                for key in object.keys.sorted() { readRoutes(key, object[key]!, pointer: jsonPointer("/routes", key)) }
            } else {
                sidecarProblem("/routes", "must be an object: screen id -> list of routes")
            }
        }
        if let value = top["checks"] {
            if let list = value.arrayValue {
                for (i, check) in list.enumerated() { readCheck(check, pointer: jsonPointer("/checks", i)) }
            } else {
                sidecarProblem("/checks", "must be an array of checks")
            }
        }
        if let value = top["values"] {
            if let object = value.objectValue {
                for key in object.keys.sorted() { readValues(key, object[key]!, pointer: jsonPointer("/values", key)) }
            } else {
                sidecarProblem("/values", "must be an object: screen id -> {field: value}")
            }
        }
    }

    private mutating func readRoutes(_ id: String, _ value: JSONValue, pointer: String) {
        guard let s = screen(.string(id), at: pointer) else { return }
        guard let list = value.arrayValue, !list.isEmpty else {
            sidecarProblem(pointer, "must be a non-empty array of {\"when\", \"next\"}")
            return
        }
        var parsed: [FormRoute] = []
        for (i, item) in list.enumerated() {
            let itemPointer = jsonPointer(pointer, i)
            guard let object = item.objectValue else {
                sidecarProblem(itemPointer, "must be an object {\"when\", \"next\"}")
                continue
            }
            unknownKeys(object, allowed: ["when", "next"], at: itemPointer)
            let nextPointer = jsonPointer(itemPointer, "next")
            guard let next = screen(object["next"], at: nextPointer) else { continue }
            if !document.edges[s].contains(next) {
                // Left out: a route back to an earlier screen would make the path checks go round in circles.
                sidecarProblem(nextPointer, "\(id) -> \(document.screens[next].id) is not an edge of routing_model")
                continue
            }
            var condition: FormCondition?
            if let when = object["when"] {
                condition = readCondition(when, screen: s, pointer: jsonPointer(itemPointer, "when"))
                if i == list.count - 1 {
                    sidecarProblem(jsonPointer(itemPointer, "when"), "the last route must have no `when` (the "
                        + "route taken when no other applies)")
                }
            } else if i != list.count - 1 {
                sidecarProblem(itemPointer, "only the last route may leave out `when`")
            }
            parsed.append(FormRoute(condition: condition, next: next))
        }
        routes[s] = (parsed, pointer)
    }

    private mutating func readCondition(_ value: JSONValue, screen s: Int, pointer: String) -> FormCondition? {
        guard let object = value.objectValue, let field = object["field"]?.stringValue else {
            sidecarProblem(pointer, "must be {\"field\": F, \"equals\" | \"in\" | \"present\": ...}")
            return nil
        }
        unknownKeys(object, allowed: ["field", "equals", "in", "present"], at: pointer)
        fieldUses.append((s, field, jsonPointer(pointer, "field")))
        let tests = ["equals", "in", "present"].filter { object[$0] != nil }
        guard tests.count == 1 else {
            sidecarProblem(pointer, "needs exactly one of equals, in, present")
            return nil
        }
        switch tests[0] {
        case "equals": return .equals(field, object["equals"]!)
        case "in":
            guard let values = object["in"]?.arrayValue else {
                sidecarProblem(jsonPointer(pointer, "in"), "must be an array of values")
                return nil
            }
            return .oneOf(field, values)
        default:
            guard let wanted = object["present"]?.boolValue else {
                sidecarProblem(jsonPointer(pointer, "present"), "must be true or false")
                return nil
            }
            return .present(field, wanted)
        }
    }

    private mutating func readCheck(_ value: JSONValue, pointer: String) {
        guard let object = value.objectValue else {
            sidecarProblem(pointer, "must be an object {screen, field, rule, message}")
            return
        }
        unknownKeys(object, allowed: ["screen", "field", "not_before", "not_after", "min", "max", "message"],
                    at: pointer)
        guard let s = screen(object["screen"], at: jsonPointer(pointer, "screen")) else { return }
        guard let field = object["field"]?.stringValue else {
            sidecarProblem(jsonPointer(pointer, "field"), "must name a field the screen sends")
            return
        }
        guard let message = object["message"]?.stringValue, !message.isEmpty else {
            sidecarProblem(jsonPointer(pointer, "message"), "must be the sentence shown to the user")
            return
        }
        let sent = document.screens[s].actions.first { $0.inFooter && $0.name == "data_exchange" }?
            .payload.map(\.key) ?? []
        if !sent.contains(field) {
            sidecarProblem(jsonPointer(pointer, "field"), "\(document.screens[s].id) does not send \(field) with "
                + "data_exchange")
        }
        var rule: FormCheck.Rule?
        for key in ["not_before", "not_after"] {
            guard let other = object[key] else { continue }
            guard let name = other.stringValue else {
                sidecarProblem(jsonPointer(pointer, key), "must name another collected field")
                continue
            }
            fieldUses.append((s, name, jsonPointer(pointer, key)))
            rule = key == "not_before" ? .notBefore(name) : .notAfter(name)
        }
        var bounds: [Double?] = [nil, nil]
        for (i, key) in ["min", "max"].enumerated() {
            guard let bound = object[key] else { continue }
            guard case .number(let text) = bound, let number = Double(text) else {
                sidecarProblem(jsonPointer(pointer, key), "must be a number")
                continue
            }
            bounds[i] = number
        }
        if bounds[0] != nil || bounds[1] != nil {
            if rule != nil {
                sidecarProblem(pointer, "one check is either a date rule (not_before/not_after) or a range (min/max)")
            }
            rule = .range(min: bounds[0], max: bounds[1])
        }
        guard let rule else {
            sidecarProblem(pointer, "needs a rule: not_before, not_after, min or max")
            return
        }
        screens[s].checks.append(FormCheck(field: field, rule: rule, message: message))
    }

    private mutating func readValues(_ id: String, _ value: JSONValue, pointer: String) {
        guard let s = screen(.string(id), at: pointer) else { return }
        guard let fields = value.objectValue else {
            sidecarProblem(pointer, "must be an object {field: value}")
            return
        }
        for name in fields.keys.sorted() {
            let fieldPointer = jsonPointer(pointer, name)
            guard let declared = screens[s].declared.first(where: { $0.name == name }), name != "error_message" else {
                sidecarProblem(fieldPointer, "\(id) declares no data field \(name)")
                continue
            }
            let given = fields[name]!
            let parsed: FormSidecarValue
            if let object = given.objectValue, object.count == 1, let key = object.keys.first,
                key == "today" || key == "today_millis"
            {
                guard case .number(let text)? = object[key], let days = Int(text) else {
                    sidecarProblem(jsonPointer(fieldPointer, key), "must be a whole number of days")
                    continue
                }
                parsed = key == "today" ? .today(days) : .todayMillis(days)
            } else {
                parsed = .literal(given)
            }
            guard let kind = parsed.kind, kind.fits(declared.kind) else {
                sidecarProblem(fieldPointer, "gives a value that does not fit \(name)'s declared type "
                    + "\(declared.kind.rawValue)")
                continue
            }
            screens[s].values[name] = parsed
        }
    }

    // MARK: - Screens

    private mutating func problem(_ pointer: String, _ message: String) { document.problem(pointer, message) }

    mutating func compileScreens() {
        let count = screens.count
        // Submits.
        for s in 0..<count { readSubmit(s) }
        // Transitions: navigate (the phone) and the endpoint's answers.
        var navigatedFrom: [[(screen: Int, action: FlowDocumentAction)]] = Array(repeating: [], count: count)
        var answeredFrom: [[Int]] = Array(repeating: [], count: count)
        for s in 0..<count {
            for action in document.screens[s].actions where action.name == "navigate" {
                if let t = action.next.flatMap({ document.index[$0] }) { navigatedFrom[t].append((s, action)) }
            }
        }
        for s in 0..<count { readNext(s, navigatedFrom: navigatedFrom) }
        for s in 0..<count { for t in engineTargets(s) { answeredFrom[t].append(s) } }
        for t in 0..<count {
            let pointer = document.screens[t].pointer
            let navigators = Set(navigatedFrom[t].map(\.screen))
            screens[t].enteredByEngine = navigators.isEmpty
            if !navigators.isEmpty, let from = answeredFrom[t].first {
                problem(pointer, "\(screens[t].id) is shown both by navigate (from \(screens[navigators.min()!].id)) "
                    + "and by the endpoint's answer (from \(screens[from].id)): the engine could not tell its data")
            }
            if navigators.count > 1 {
                problem(pointer, "\(screens[t].id) is reached by navigate from several screens ("
                    + navigators.sorted().map { screens[$0].id }.joined(separator: ", ") + "): the engine could not "
                    + "tell where its data came from")
            }
        }
        for t in topologicalOrder() {
            guard let (p, action) = navigatedFrom[t].first else { continue }
            for (key, value) in action.payload { screens[t].origins[key] = origin(of: value, on: p) }
        }
        for s in 0..<count { checkScreen(s) }
        checkFilling()
        for use in fieldUses where !available[use.screen].contains(use.field) {
            sidecarProblem(use.pointer, "\(use.field) is not collected by the time \(screens[use.screen].id) submits")
        }
    }

    private mutating func readSubmit(_ s: Int) {
        let screen = document.screens[s]
        for action in screen.actions where action.name == "data_exchange" && !action.inFooter {
            problem(jsonPointer(action.pointer, "name"), "the form engine answers only the Footer's data_exchange "
                + "(use navigate here, or send it from the Footer)")
        }
        guard let footer = screen.actions.first(where: \.inFooter) else { return }
        switch footer.name {
        case "navigate":
            if let t = footer.next.flatMap({ document.index[$0] }) { screens[s].submit = .navigate(t) }
        case "complete":
            screens[s].submit = .complete
        case "data_exchange":
            var entries: [FormPayloadEntry] = []
            for (key, value) in footer.payload {
                let pointer = jsonPointer(jsonPointer(footer.pointer, "payload"), key)
                if key == "error_message" {
                    problem(pointer, "error_message is the client's own field: send the value under another name")
                } else if let name = FlowDocument.formReference(value) {
                    if let c = screen.component(named: name) {
                        entries.append(FormPayloadEntry(key: key, source: .form(c)))
                    } else {
                        problem(pointer, "${form.\(name)} is not an input component the engine can check")
                    }
                } else if let field = FlowDocument.dataReference(value) {
                    entries.append(FormPayloadEntry(key: key, source: .data(field)))
                } else if value.stringValue?.containsBytes("${") == true {
                    problem(pointer, "the engine cannot check this value: use ${form.<name>}, ${data.<name>} or a "
                        + "literal")
                } else {
                    entries.append(FormPayloadEntry(key: key, source: .literal(value)))
                }
            }
            screens[s].submit = .dataExchange(entries)
        default:
            problem(jsonPointer(footer.pointer, "name"), "the Footer must submit by data_exchange, navigate or "
                + "complete")
        }
    }

    private mutating func readNext(_ s: Int, navigatedFrom: [[(screen: Int, action: FlowDocumentAction)]]) {
        guard case .dataExchange = screens[s].submit else {
            if let pointer = routes[s]?.pointer {
                sidecarProblem(pointer, "\(screens[s].id) does not submit data_exchange: its routes are never used")
            }
            return
        }
        if screens[s].terminal {
            screens[s].next = .complete
            if let pointer = routes[s]?.pointer {
                sidecarProblem(pointer, "\(screens[s].id) is terminal: its submit completes the flow, routes are "
                    + "never used")
            }
            return
        }
        if let (list, _) = routes[s] {
            screens[s].next = .routes(list)
            return
        }
        let navigated = Set(document.screens[s].actions.compactMap { $0.name == "navigate" ? $0.next : nil }
            .compactMap { document.index[$0] })
        let candidates = document.edges[s].filter { !navigated.contains($0) }
        let pointer = document.screens[s].footerPointer ?? document.screens[s].pointer
        switch candidates.count {
        case 1: screens[s].next = .single(candidates[0])
        case 0:
            problem(pointer, "\(screens[s].id) submits data_exchange but is not terminal and has no forward edge to "
                + "answer with")
        default:
            problem(pointer, "\(screens[s].id) has \(candidates.count) forward edges ("
                + candidates.map { screens[$0].id }.joined(separator: ", ") + "): add routes.\(screens[s].id) to "
                + "the sidecar to pick one")
        }
    }

    private func engineTargets(_ s: Int) -> [Int] {
        guard case .dataExchange = screens[s].submit else { return [] }
        switch screens[s].next {
        case .complete: return []
        case .single(let t): return [t]
        case .routes(let list): return Array(Set(list.map(\.next))).sorted()
        }
    }

    private func topologicalOrder() -> [Int] {
        var order: [Int] = []
        var done = Set<Int>()
        func visit(_ s: Int) {
            guard done.insert(s).inserted else { return }
            for t in document.edges[s] { visit(t) }
            order.append(s)
        }
        for s in screens.indices { visit(s) }
        return order.reversed()
    }

    /// Where a navigate payload value on screen `p` comes from; nil when the engine cannot know.
    private func origin(of value: JSONValue, on p: Int) -> FormOrigin? {
        if let name = FlowDocument.formReference(value) {
            return document.screens[p].component(named: name).map { .component(screen: p, component: $0) }
        }
        if let field = FlowDocument.dataReference(value) {
            return screens[p].enteredByEngine ? .filled(screen: p, field: field) : screens[p].origins[field]
        }
        if value.stringValue?.containsBytes("${") == true { return nil }
        return .literal(value)
    }

    private mutating func checkScreen(_ s: Int) {
        let screen = screens[s]
        let source = document.screens[s]
        let footer = source.footerPointer ?? source.pointer
        switch screen.submit {
        case .none:
            if !screen.components.isEmpty {
                problem(source.pointer, "\(screen.id) has input components but no Footer: their values never reach "
                    + "the endpoint")
            } else if screen.enteredByEngine {
                problem(source.pointer, "the endpoint shows \(screen.id), which has no Footer to go on with")
            }
        case .complete:
            if !screen.components.isEmpty {
                problem(footer, "\(screen.id) ends with complete, which sends its values to the webhook only: it "
                    + "cannot have input components (submit with data_exchange instead)")
            }
            if !screen.enteredByEngine {
                problem(footer, "\(screen.id) ends with complete but is reached by navigate: the endpoint would "
                    + "never learn that the flow is complete (reach it from a data_exchange)")
            }
        case .navigate:
            break
        case .dataExchange(let entries):
            guard !screen.enteredByEngine else { break }
            let payload = source.actions.first(where: \.inFooter)?.pointer ?? footer
            for entry in entries {
                guard case .data(let field) = entry.source, screen.origins[field] == nil else { continue }
                problem(jsonPointer(jsonPointer(payload, "payload"), entry.key), "${data.\(field)} arrives by "
                    + "navigate as an expression the engine cannot check")
            }
        }
        guard !screen.enteredByEngine else { return }
        for use in source.dataAttributes {
            switch screen.origins[use.field] {
            case .filled?, .literal?: continue
            default:
                problem(use.pointer, "reads ${data.\(use.field)}, which comes from the user's input on an earlier "
                    + "screen: the engine needs a value it knows (its own answer's, or a literal)")
            }
        }
    }

    /// Every answer the endpoint sends can fill its screen's declared data, on every path.
    private mutating func checkFilling() {
        let entry = document.entry
        checkFill(entry, kinds: [:], path: [])
        visit(entry, kinds: [:], path: [screens[entry].id])
    }

    private mutating func visit(_ s: Int, kinds: [String: FormValueKind], path: [String]) {
        var kinds = kinds
        if case .dataExchange(let entries) = screens[s].submit {
            for entry in entries {
                switch entry.source {
                case .form(let c): kinds[entry.key] = screens[s].components[c].kind.valueKind
                case .data(let field): kinds[entry.key] = screens[s].declared.first { $0.name == field }?.kind
                case .literal(let value): kinds[entry.key] = FormValueKind(of: value) ?? .string
                }
            }
            available[s].formUnion(kinds.keys)
            for t in engineTargets(s) {
                checkFill(t, kinds: kinds, path: path)
                visit(t, kinds: kinds, path: path + [screens[t].id])
            }
        }
        for action in document.screens[s].actions where action.name == "navigate" {
            if let t = action.next.flatMap({ document.index[$0] }) {
                visit(t, kinds: kinds, path: path + [screens[t].id])
            }
        }
    }

    private mutating func checkFill(_ t: Int, kinds: [String: FormValueKind], path: [String]) {
        let way = path.isEmpty ? "answering INIT" : "after " + path.joined(separator: " -> ")
        for (i, field) in screens[t].declared.enumerated() where field.name != "error_message" {
            let pointer = document.screens[t].declared[i].pointer
            if let kind = kinds[field.name] {
                if !kind.fits(field.kind) {
                    problem(pointer, "is declared \(field.kind.rawValue) but the value collected as \(field.name) "
                        + "is \(kind.rawValue) (\(way))")
                }
            } else if screens[t].values[field.name] == nil {
                problem(pointer, "nothing fills \(field.name) when the endpoint shows \(screens[t].id) \(way): no "
                    + "earlier screen sends it and the sidecar has no values.\(screens[t].id).\(field.name)")
            }
        }
    }

    func definition() -> FormDefinition {
        let entry = document.entry
        let dependsOnDay = screens[entry].values.values.contains { value in
            if case .literal = value { return false }
            return true
        }
        var definition = FormDefinition(file: document.file, version: document.version,
                                        entryScreen: screens[entry].id, screens: screens,
                                        index: document.index, entry: entry, preparedEntry: nil)
        if !dependsOnDay, case .screen(let id, let data) = definition.initial(today: CalendarDay(daysSinceEpoch: 0)) {
            definition = FormDefinition(file: document.file, version: document.version, entryScreen: id,
                                        screens: screens, index: document.index, entry: entry,
                                        preparedEntry: PreparedScreen(id, data: data))
        }
        return definition
    }
}
