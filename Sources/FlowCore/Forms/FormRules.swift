/// A sidecar `values` entry: data computed when an answer is built.
enum FormSidecarValue: Sendable, Equatable {
    /// `{"today": N}`: today + N days as `YYYY-MM-DD`.
    case today(Int)
    /// `{"today_millis": N}`: midnight UTC of today + N days in epoch milliseconds, as a string.
    case todayMillis(Int)
    /// Any other JSON value, sent as it is.
    case literal(JSONValue)

    /// The value on `today`.
    func value(today: CalendarDay) -> JSONValue {
        switch self {
        case .today(let days): return .string(today.adding(days: days).description)
        case .todayMillis(let days): return .string(String(today.adding(days: days).epochMillis))
        case .literal(let value): return value
        }
    }

    /// The kind of value it gives.
    var kind: FormValueKind? {
        if case .literal(let value) = self { return FormValueKind(of: value) }
        return .string
    }
}

/// A sidecar route's `when`.
enum FormCondition: Sendable {
    case equals(String, JSONValue)
    case oneOf(String, [JSONValue])
    case present(String, Bool)

    /// The collected value the condition reads.
    var field: String {
        switch self {
        case .equals(let field, _), .oneOf(let field, _), .present(let field, _): return field
        }
    }

    /// True when the condition holds for the collected `values`. A value is present when it is not null, not an
    /// empty string, not an empty array and not `false`.
    func holds(_ values: [String: JSONValue]) -> Bool {
        switch self {
        case .equals(let field, let expected): return values[field] == expected
        case .oneOf(let field, let expected): return values[field].map(expected.contains) ?? false
        case .present(let field, let wanted):
            let present: Bool
            switch values[field] {
            case nil, .null?, .string("")?, .array([])?, .bool(false)?: present = false
            default: present = true
            }
            return present == wanted
        }
    }
}

/// A sidecar route: the first whose condition holds (or that has none) picks the next screen.
struct FormRoute: Sendable {
    let condition: FormCondition?
    let next: Int
}

/// A sidecar `checks` entry, applied when its screen submits.
struct FormCheck: Sendable {
    enum Rule: Sendable {
        case notBefore(String)
        case notAfter(String)
        case range(min: Double?, max: Double?)
    }

    let field: String
    let rule: Rule
    let message: String

    /// The problem with the collected `values` (this screen's included), or nil. An empty or absent value passes:
    /// `required` decides whether it may be empty.
    func problem(_ values: [String: JSONValue]) -> FormProblem? {
        let text: String
        switch values[field] {
        case .string(let given)?: text = given
        case .number(let given)?: text = given
        default: return nil
        }
        if text.isEmpty { return nil }
        let holds: Bool
        switch rule {
        case .notBefore(let other), .notAfter(let other):
            guard let day = CalendarDay(text), let bound = values[other].flatMap(FormComponent.day) else {
                return nil
            }
            if case .notBefore = rule { holds = day >= bound } else { holds = day <= bound }
        case .range(let min, let max):
            guard FormComponent.isNumber(text), let number = Double(text.replacingComma()) else {
                holds = false
                break
            }
            holds = (min.map { number >= $0 } ?? true) && (max.map { number <= $0 } ?? true)
        }
        return holds ? nil : FormProblem(field: field, message: message)
    }
}
