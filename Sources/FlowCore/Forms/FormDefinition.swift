/// A form flow compiled from its Flow JSON (and optional sidecar `<name>.rules.json`) once per process: its screens,
/// their input components with Meta's validation attributes, each screen's submit action and payload, the routing,
/// and how each answer's data is filled. Stepping is a pure function of the definition, the request and the values
/// collected so far; storage belongs to the caller.
///
/// Build one with `FormDefinition.compile(flowJSON:sidecar:file:sidecarFile:)`.
public struct FormDefinition: Sendable {
    /// The Flow JSON file name (for messages).
    public let file: String
    /// The Flow JSON `version`.
    public let version: String
    /// The entry screen: the one no routing edge points to, answered to INIT and BACK.
    public let entryScreen: String
    /// Every screen id, in file order.
    public var screenIDs: [String] { screens.map(\.id) }

    let screens: [FormScreen]
    let index: [String: Int]
    let entry: Int
    /// The entry answer serialized once, when its data does not depend on the day.
    let preparedEntry: PreparedScreen?

    /// The answer to INIT (and BACK): the entry screen with every declared field.
    public func initial(today: CalendarDay) -> FlowAnswer {
        if let preparedEntry { return .prepared(preparedEntry) }
        return answer(entry, data: fill(entry, collected: [:], today: today, errorMessage: nil), errorMessage: nil)
    }

    /// What a `data_exchange` from `screen` with `payload` leads to, given the values `collected` from earlier
    /// screens of this flow token and the calendar day `today`.
    ///
    /// The payload must hold exactly the keys the screen's Footer sends (a key whose value is an optional
    /// component's `${form.x}` may be left out); each `${form.x}` value is checked against its component, each
    /// `${data.x}` the endpoint filled is taken from the endpoint's own values, and each `${data.x}` carried by
    /// `navigate` from a component of an earlier screen is checked against that component; then the sidecar's
    /// checks. Valid: the next screen (or completion); invalid: the same screen again with every declared field and
    /// an `error_message` naming the field.
    public func step(screen: String, payload: [String: JSONValue], collected: [String: JSONValue],
                     today: CalendarDay) -> FormStep {
        guard let s = index[screen] else {
            var answer = initial(today: today).unprepared
            if case .screen(let id, let data) = answer {
                answer = .screen(id, data: data, errorMessage: FormDefinition.unknownScreenMessage)
            }
            return .invalid(answer)
        }
        let current = screens[s]
        guard case .dataExchange(let entries) = current.submit else {
            return .invalid(invalidAnswer(s, entries: [], payload: payload, collected: collected, today: today,
                                          message: FormDefinition.unknownScreenMessage))
        }
        let data = knownData(s, collected: collected, today: today)
        var values: [String: JSONValue] = [:]
        var problem: FormProblem?
        if let stray = payload.keys.filter({ key in !entries.contains { $0.key == key } }).min() {
            problem = FormProblem(field: stray, message: "Something went wrong: this screen sent a field it does "
                + "not have (\(stray.prefix(64))). Please try again.")
        }
        for entry in entries where problem == nil {
            let sent = payload[entry.key]
            switch entry.source {
            case .form(let c):
                switch current.components[c].check(sent, data: data) {
                case .success(let value): values[entry.key] = value
                case .failure(let failure): problem = failure
                }
            case .data(let field):
                guard sent != nil else {
                    problem = missing(entry.key)
                    continue
                }
                switch origin(s, field) {
                case .filled(let p, let f): values[entry.key] = fillValue(p, f, collected: collected, today: today)
                case .literal(let value): values[entry.key] = value
                case .component(let p, let c):
                    let pData = knownData(p, collected: collected, today: today)
                    switch screens[p].components[c].check(sent, data: pData) {
                    case .success(let value): values[entry.key] = value
                    case .failure(let failure):
                        problem = FormProblem(field: entry.key, message: failure.message
                            + " Go back to \(screens[p].id) to correct it.")
                    }
                }
            case .literal(let value):
                if sent == nil { problem = missing(entry.key) } else { values[entry.key] = value }
            }
        }
        var merged = collected
        for (key, value) in values { merged[key] = value }
        if problem == nil {
            problem = current.checks.lazy.compactMap { $0.problem(merged) }.first
        }
        if let problem {
            return .invalid(invalidAnswer(s, entries: entries, payload: payload, collected: collected, today: today,
                                          message: problem.message))
        }
        let next: Int
        switch current.next {
        case .complete: return .complete(values: merged)
        case .single(let t): next = t
        case .routes(let routes): next = routes.first { $0.condition?.holds(merged) ?? true }?.next ?? s
        }
        let shown = answer(next, data: fill(next, collected: merged, today: today, errorMessage: nil),
                           errorMessage: nil)
        if case .complete = screens[next].submit { return .completeShowing(shown, values: merged) }
        return .next(shown, collected: merged)
    }

    static let unknownScreenMessage = "Something went wrong. Please fill in the form again."

    private func missing(_ key: String) -> FormProblem {
        FormProblem(field: key, message: "Something went wrong: the field \(key.prefix(64)) was not sent. "
            + "Please try again.")
    }

    // MARK: - Data

    /// Where the value of data field `field` of screen `s` comes from.
    func origin(_ s: Int, _ field: String) -> FormOrigin {
        let screen = screens[s]
        if screen.enteredByEngine { return .filled(screen: s, field: field) }
        return screen.origins[field] ?? .literal(.null)
    }

    /// The value the endpoint gives data field `field` of screen `s`: collected under the same name, else the
    /// sidecar's value, else the empty value of its type.
    func fillValue(_ s: Int, _ field: String, collected: [String: JSONValue], today: CalendarDay) -> JSONValue {
        let screen = screens[s]
        let kind = screen.declared.first { $0.name == field }?.kind ?? .string
        if let value = collected[field] { return FormValueKind.coerce(value, to: kind) }
        if let value = screen.values[field] { return value.value(today: today) }
        return kind.empty
    }

    /// Every declared field of screen `s` as the endpoint fills it (`error_message` is `errorMessage` or empty).
    func fill(_ s: Int, collected: [String: JSONValue], today: CalendarDay,
              errorMessage: String?) -> [String: JSONValue] {
        var data: [String: JSONValue] = [:]
        data.reserveCapacity(screens[s].declared.count)
        for field in screens[s].declared {
            data[field.name] = field.name == "error_message"
                ? .string(errorMessage ?? "") : fillValue(s, field.name, collected: collected, today: today)
        }
        return data
    }

    /// The data of screen `s` the endpoint knows when the screen submits (what validation attributes read).
    func knownData(_ s: Int, collected: [String: JSONValue], today: CalendarDay) -> [String: JSONValue] {
        let screen = screens[s]
        if screen.enteredByEngine { return fill(s, collected: collected, today: today, errorMessage: nil) }
        var data: [String: JSONValue] = [:]
        for (field, origin) in screen.origins {
            switch origin {
            case .filled(let p, let f): data[field] = fillValue(p, f, collected: collected, today: today)
            case .literal(let value): data[field] = value
            case .component: break
            }
        }
        return data
    }

    private func answer(_ s: Int, data: [String: JSONValue], errorMessage: String?) -> FlowAnswer {
        let screen = screens[s]
        return .screen(screen.id, data: data, errorMessage: screen.declaresErrorMessage ? nil : errorMessage)
    }

    /// Screen `s` again with `message`: every declared field, the endpoint's own values where it has them, what the
    /// user typed where an `init-value` shows it back.
    private func invalidAnswer(_ s: Int, entries: [FormPayloadEntry], payload: [String: JSONValue],
                               collected: [String: JSONValue], today: CalendarDay, message: String) -> FlowAnswer {
        let screen = screens[s]
        var data = screen.enteredByEngine
            ? fill(s, collected: collected, today: today, errorMessage: message)
            : knownData(s, collected: collected, today: today)
        func put(_ field: String, _ value: JSONValue?) {
            guard let value, let kind = screen.declared.first(where: { $0.name == field })?.kind,
                let given = FormValueKind(of: value), given.fits(kind)
            else { return }
            if case .string(let text) = value, text.utf8.count > 4096 { return }
            data[field] = FormValueKind.coerce(value, to: kind)
        }
        for entry in entries {
            switch entry.source {
            case .data(let field) where data[field] == nil: put(field, payload[entry.key])
            case .form(let c): screen.components[c].initField.map { put($0, payload[entry.key]) }
            default: break
            }
        }
        for field in screen.declared where data[field.name] == nil {
            data[field.name] = field.name == "error_message" ? .string(message) : field.kind.empty
        }
        return answer(s, data: data, errorMessage: message)
    }
}

/// What a `data_exchange` leads to.
public enum FormStep: Sendable, Equatable {
    /// The same screen again, every declared field filled and `error_message` naming the field at fault.
    case invalid(FlowAnswer)
    /// The next screen; `collected` are the values collected so far, this screen's included (to keep).
    case next(FlowAnswer, collected: [String: JSONValue])
    /// A terminal screen submitted: every value of the submission (store it, answer `SUCCESS`).
    case complete(values: [String: JSONValue])
    /// The next screen is terminal and ends the flow on the phone (`complete`, which never reaches the endpoint):
    /// store `values` now, then show the answer.
    case completeShowing(FlowAnswer, values: [String: JSONValue])
}

/// Where a screen's data field gets its value.
enum FormOrigin: Sendable, Equatable {
    /// The endpoint filled it: field `field` of screen `screen` as `FormDefinition.fillValue` gives it.
    case filled(screen: Int, field: String)
    /// A literal of a `navigate` payload.
    case literal(JSONValue)
    /// Typed on an earlier screen into this component and carried by `navigate`: checked against it.
    case component(screen: Int, component: Int)
}

/// What a payload value is in the Footer's `data_exchange`.
enum FormPayloadSource: Sendable, Equatable {
    /// `${form.x}`: the component at this index of the screen.
    case form(Int)
    /// `${data.x}`.
    case data(String)
    /// A literal.
    case literal(JSONValue)
}

/// One key of a Footer's `data_exchange` payload.
struct FormPayloadEntry: Sendable {
    let key: String
    let source: FormPayloadSource
}

/// How a screen leaves.
enum FormSubmit: Sendable {
    /// The Footer's `data_exchange` with its payload.
    case dataExchange([FormPayloadEntry])
    /// The Footer navigates to this screen (the phone does it; the endpoint never sees it).
    case navigate(Int)
    /// The Footer's `complete` (terminal screen; the endpoint never sees it).
    case complete
    /// No Footer: an information screen the user leaves with the back button.
    case none
}

/// Where a `data_exchange` goes next.
enum FormNext: Sendable {
    /// A terminal screen: the submission is complete.
    case complete
    /// The screen's only forward edge.
    case single(Int)
    /// The sidecar's routes, first match.
    case routes([FormRoute])
}

/// A declared data field.
struct FormDeclared: Sendable {
    let name: String
    let kind: FormValueKind
}

/// A screen as the engine serves it.
struct FormScreen: Sendable {
    let id: String
    let terminal: Bool
    let declared: [FormDeclared]
    let declaresErrorMessage: Bool
    let components: [FormComponent]
    var submit: FormSubmit = .none
    var next: FormNext = .complete
    /// True when the endpoint's answer shows this screen (INIT or a `data_exchange`); false when `navigate` does.
    var enteredByEngine = true
    /// For a screen shown by `navigate`: where each declared field comes from.
    var origins: [String: FormOrigin] = [:]
    /// The sidecar's `values` for this screen.
    var values: [String: FormSidecarValue] = [:]
    /// The sidecar's `checks` for this screen.
    var checks: [FormCheck] = []
}
