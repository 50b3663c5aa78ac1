/// A value given in the Flow JSON either as a literal or as `${data.x}`, read from the screen's data when a request
/// is checked.
enum FormAttribute<Value: Sendable>: Sendable {
    /// A literal, checked when the definition is compiled.
    case fixed(Value)
    /// `${data.x}`: the screen's data field `x`.
    case data(String)

    /// The value, reading `${data.x}` from `data` with `convert`; nil when the field is absent or of the wrong type.
    func resolve(_ data: [String: JSONValue], _ convert: (JSONValue) -> Value?) -> Value? {
        switch self {
        case .fixed(let value): return value
        case .data(let name): return data[name].flatMap(convert)
        }
    }
}

/// One option of a Dropdown, RadioButtonsGroup or CheckboxGroup `data-source`.
struct FormOption: Sendable, Equatable {
    /// What the client sends.
    let id: String
    /// False when the option is shown but cannot be picked (`"enabled": false`).
    let enabled: Bool

    /// The options of a `data-source` array (items without a string `id` are left out).
    static func list(_ value: JSONValue) -> [FormOption]? {
        guard let items = value.arrayValue else { return nil }
        return items.compactMap { item in
            guard let id = item["id"]?.stringValue else { return nil }
            return FormOption(id: id, enabled: item["enabled"]?.boolValue ?? true)
        }
    }
}

/// An input component of a screen, with the validation attributes its Flow JSON declares.
struct FormComponent: Sendable {
    /// The input types of a TextInput.
    enum InputType: String, Sendable {
        case text, number, email, password, passcode, phone
    }

    /// What kind of input it is.
    enum Kind: Sendable, Equatable {
        case textInput(InputType)
        case textArea
        case datePicker
        case checkboxGroup
        case dropdown
        case radioButtons
        case optIn

        /// The Flow JSON `type`.
        var typeName: String {
            switch self {
            case .textInput: return "TextInput"
            case .textArea: return "TextArea"
            case .datePicker: return "DatePicker"
            case .checkboxGroup: return "CheckboxGroup"
            case .dropdown: return "Dropdown"
            case .radioButtons: return "RadioButtonsGroup"
            case .optIn: return "OptIn"
            }
        }

        /// The JSON kind of the value the client sends.
        var valueKind: FormValueKind {
            switch self {
            case .textInput(.number): return .number
            case .checkboxGroup: return .array
            case .optIn: return .boolean
            default: return .string
            }
        }
    }

    /// `name`: the key `${form.name}` reads.
    let name: String
    /// How the field is named to the user: the literal `label`, else `name`.
    let label: String
    /// The kind.
    let kind: Kind
    /// The JSON pointer of the component in its file.
    let pointer: String
    /// `required` (absent: false).
    var required: FormAttribute<Bool>?
    /// False when the component may be hidden or disabled in a way the engine cannot evaluate (inside `If` or
    /// `Switch`, or `visible`/`enabled` given by an expression): it is then never required.
    var alwaysShown = true
    /// `visible` and `enabled` given as literals or `${data.x}`: false hides the component (never required).
    var visible: FormAttribute<Bool>?
    var enabled: FormAttribute<Bool>?
    /// TextInput `min-chars`, `max-chars`; TextArea `max-length` (as `maxChars`).
    var minChars: FormAttribute<Int>?
    var maxChars: FormAttribute<Int>?
    /// TextInput `pattern` (Flow JSON 6.2 and later).
    var pattern: FormPattern?
    /// Literal `helper-text`, added to a pattern's message.
    var helperText: String?
    /// DatePicker `min-date`, `max-date`, `unavailable-dates`.
    var minDate: FormAttribute<CalendarDay>?
    var maxDate: FormAttribute<CalendarDay>?
    var unavailableDates: FormAttribute<[CalendarDay]>?
    /// CheckboxGroup `min-selected-items`, `max-selected-items`.
    var minItems: FormAttribute<Int>?
    var maxItems: FormAttribute<Int>?
    /// `data-source`.
    var options: FormAttribute<[FormOption]>?
    /// The data field given as `init-value` (`${data.x}`), which an invalid answer fills with what was typed.
    var initField: String?

    /// What the component accepts as `value`, given the screen's data: the value to keep (text trimmed), or the
    /// sentence shown to the user.
    func check(_ value: JSONValue?, data: [String: JSONValue]) -> Result<JSONValue, FormProblem> {
        let shown = alwaysShown && visible?.resolve(data, \.boolValue) != false
            && enabled?.resolve(data, \.boolValue) != false
        let required = shown && self.required?.resolve(data, \.boolValue) == true
        switch kind {
        case .textInput(let type): return checkText(value, required: required, data: data, type: type)
        case .textArea: return checkText(value, required: required, data: data, type: nil)
        case .datePicker: return checkDate(value, required: required, data: data)
        case .dropdown, .radioButtons: return checkChoice(value, required: required, data: data)
        case .checkboxGroup: return checkChoices(value, required: required, data: data)
        case .optIn:
            switch value {
            case nil, .null?: return required ? fail("\(label): this must be ticked to continue.") : .success(false)
            case .bool(let ticked)?:
                if required && !ticked { return fail("\(label): this must be ticked to continue.") }
                return .success(.bool(ticked))
            default: return fail(notValid)
            }
        }
    }

    private var notValid: String { "\(label): the value sent is not valid. Please try again." }

    private func fail(_ message: String) -> Result<JSONValue, FormProblem> {
        .failure(FormProblem(field: name, message: message))
    }

    private static func integer(_ value: JSONValue) -> Int? {
        if case .number(let text) = value { return Int(text) }
        return nil
    }

    private func checkText(_ value: JSONValue?, required: Bool, data: [String: JSONValue],
                           type: InputType?) -> Result<JSONValue, FormProblem> {
        let raw: String
        switch value {
        case nil, .null?: raw = ""
        case .string(let text)?: raw = text
        case .number(let text)? where type == .number: raw = text
        default: return fail(notValid)
        }
        let text = raw.trimmingWhitespace()
        if text.isEmpty {
            return required ? fail("\(label) is required.") : .success(.string(""))
        }
        guard text.unicodeScalars.allSatisfy({ FormComponent.isAllowed($0, multiline: type == nil) }) else {
            return fail("\(label) contains characters that cannot be saved.")
        }
        let count = text.count
        if let min = minChars?.resolve(data, Self.integer), count < min {
            return fail("\(label) needs at least \(min) characters.")
        }
        if let max = maxChars?.resolve(data, Self.integer), count > max {
            return fail("\(label) can have at most \(max) characters.")
        }
        switch type {
        case .email?:
            if AppointmentInput.emailProblem(text) != nil {
                return fail("\(label) must be an email address, like name@example.com.")
            }
        case .phone?:
            if AppointmentInput.phoneProblem(text) != nil {
                return fail("\(label) must be a phone number: 7 to 15 digits, optionally starting with +.")
            }
        case .number?:
            if !FormComponent.isNumber(text) { return fail("\(label) must be a number, like 12 or 12.5.") }
        case .passcode?:
            if !text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) {
                return fail("\(label) must contain digits only.")
            }
        default:
            break
        }
        if let pattern, !pattern.matches(text) {
            return fail("\(label) is not in the expected format" + (helperText.map { " (\($0))." } ?? "."))
        }
        return .success(.string(text))
    }

    /// Text may hold no control character but tab and line breaks in a TextArea.
    static func isAllowed(_ scalar: Unicode.Scalar, multiline: Bool) -> Bool {
        if scalar.value >= 0x20 && scalar.value != 0x7F { return true }
        return multiline && (scalar == "\n" || scalar == "\t" || scalar == "\r")
    }

    /// An optional `-`, digits, and optionally `.` or `,` followed by digits.
    static func isNumber(_ text: String) -> Bool {
        let isDigit = { (b: UInt8) in b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") }
        var bytes = Array(text.utf8)[...]
        if bytes.first == UInt8(ascii: "-") { bytes = bytes.dropFirst() }
        let whole = bytes.prefix(while: isDigit)
        guard !whole.isEmpty else { return false }
        let rest = bytes.dropFirst(whole.count)
        if rest.isEmpty { return true }
        guard rest.first == UInt8(ascii: ".") || rest.first == UInt8(ascii: ",") else { return false }
        let fraction = rest.dropFirst()
        return !fraction.isEmpty && fraction.allSatisfy(isDigit)
    }

    private func checkDate(_ value: JSONValue?, required: Bool,
                           data: [String: JSONValue]) -> Result<JSONValue, FormProblem> {
        guard let text = FormComponent.text(value) else { return fail(notValid) }
        if text.isEmpty { return required ? fail("\(label) is required.") : .success(.string("")) }
        guard let day = CalendarDay(text) else { return fail("\(label) must be a date picked from the calendar.") }
        if let min = minDate?.resolve(data, FormComponent.day), day < min {
            return fail("\(label) cannot be before \(min).")
        }
        if let max = maxDate?.resolve(data, FormComponent.day), day > max {
            return fail("\(label) cannot be after \(max).")
        }
        if let unavailable = unavailableDates?.resolve(data, FormComponent.days), unavailable.contains(day) {
            return fail("\(label): that date is not available. Please pick another one.")
        }
        return .success(.string(text))
    }

    /// The text of a string value; empty for none or null; nil for any other JSON.
    private static func text(_ value: JSONValue?) -> String? {
        switch value {
        case nil, .null?: return ""
        case .string(let given)?: return given
        default: return nil
        }
    }

    static func day(_ value: JSONValue) -> CalendarDay? { value.stringValue.flatMap(CalendarDay.init) }

    static func days(_ value: JSONValue) -> [CalendarDay]? {
        guard let items = value.arrayValue else { return nil }
        var days: [CalendarDay] = []
        for item in items {
            guard let day = day(item) else { return nil }
            days.append(day)
        }
        return days
    }

    private func isOption(_ id: String, data: [String: JSONValue]) -> Bool {
        guard let options = options?.resolve(data, FormOption.list) else { return false }
        return options.contains { $0.id == id && $0.enabled }
    }

    private func checkChoice(_ value: JSONValue?, required: Bool,
                             data: [String: JSONValue]) -> Result<JSONValue, FormProblem> {
        guard let id = FormComponent.text(value) else { return fail(notValid) }
        if id.isEmpty { return required ? fail("\(label) is required: choose an option.") : .success(.string("")) }
        guard isOption(id, data: data) else { return fail("\(label): choose one of the listed options.") }
        return .success(.string(id))
    }

    private func checkChoices(_ value: JSONValue?, required: Bool,
                              data: [String: JSONValue]) -> Result<JSONValue, FormProblem> {
        var ids: [String] = []
        switch value {
        case nil, .null?: break
        case .array(let items)?:
            for item in items {
                guard let id = item.stringValue else { return fail(notValid) }
                guard isOption(id, data: data) else { return fail("\(label): choose among the listed options.") }
                guard !ids.contains(id) else { return fail(notValid) }
                ids.append(id)
            }
        default: return fail(notValid)
        }
        if ids.isEmpty && !required { return .success(.array([])) }
        let min = max(minItems?.resolve(data, Self.integer) ?? 0, required ? 1 : 0)
        if ids.count < min {
            return fail("\(label): choose at least \(min) option\(min == 1 ? "" : "s").")
        }
        if let max = maxItems?.resolve(data, Self.integer), ids.count > max {
            return fail("\(label): choose at most \(max) option\(max == 1 ? "" : "s").")
        }
        return .success(.array(ids.map(JSONValue.string)))
    }
}

/// A submitted value the form does not accept: the payload key at fault (logged) and the sentence for the user.
public struct FormProblem: Error, Sendable, Equatable {
    /// The payload key or component name at fault.
    public let field: String
    /// What the user reads (the screen's `error_message`); never quotes what was typed.
    public let message: String
}

/// The JSON kinds of form values, and of declared data types.
enum FormValueKind: String, Sendable {
    case string, number, boolean, array, object

    /// The kind a declared `type` holds (`integer` is a number).
    init?(declared type: String) {
        if type == "integer" { self = .number } else { self.init(rawValue: type) }
    }

    /// The kind of a JSON value (nil for null).
    init?(of value: JSONValue) {
        switch value {
        case .string: self = .string
        case .number: self = .number
        case .bool: self = .boolean
        case .array: self = .array
        case .object: self = .object
        case .null: return nil
        }
    }

    /// True when a value of this kind can fill a field declared as `declared` (numbers become text for a string).
    func fits(_ declared: FormValueKind) -> Bool { self == declared || self == .number && declared == .string }

    /// The value made to fit `declared`: a number for a string field becomes its text, the text of a number for a
    /// number field becomes a number.
    static func coerce(_ value: JSONValue, to declared: FormValueKind) -> JSONValue {
        switch (value, declared) {
        case (.number(let text), .string): return .string(text)
        case (.string(let text), .number) where FormComponent.isNumber(text):
            return .number(text.replacingComma())
        default: return value
        }
    }

    /// The empty value of a declared kind (what an unanswered optional field holds).
    var empty: JSONValue {
        switch self {
        case .string: return .string("")
        case .number: return .number("0")
        case .boolean: return .bool(false)
        case .array: return .array([])
        case .object: return .object([:])
        }
    }
}

extension String {
    /// The text with a decimal comma written as a point (`12,5` → `12.5`).
    func replacingComma() -> String { String(map { $0 == "," ? "." : $0 }) }
}
