/// The eight fields DETAILS and SUMMARY send, as text (missing or non-text values become empty).
struct AppointmentFields: Sendable, Equatable {
    var department = ""
    var location = ""
    var date = ""
    var time = ""
    var name = ""
    var email = ""
    var phone = ""
    var moreDetails = ""

    /// The field names, as the Flow JSON spells them.
    static let names = ["department", "location", "date", "time", "name", "email", "phone", "more_details"]

    init() {}

    init(_ data: [String: JSONValue]) {
        func text(_ key: String) -> String {
            switch data[key] {
            case .string(let value): return value
            case .number(let value): return value
            default: return ""
            }
        }
        department = text("department")
        location = text("location")
        date = text("date")
        time = text("time")
        name = text("name")
        email = text("email")
        phone = text("phone")
        moreDetails = text("more_details")
    }

    /// The slot choices (empty values left out).
    var choices: AppointmentChoices {
        func nonEmpty(_ value: String) -> String? { value.isEmpty ? nil : value }
        return AppointmentChoices(department: nonEmpty(department), location: nonEmpty(location),
                                  date: nonEmpty(date), time: nonEmpty(time))
    }

    /// The fields as screen data.
    var json: [String: JSONValue] {
        ["department": .string(department), "location": .string(location), "date": .string(date),
         "time": .string(time), "name": .string(name), "email": .string(email), "phone": .string(phone),
         "more_details": .string(moreDetails)]
    }

    /// SHA-256 (hex) of the canonical JSON of the fields: recognises a retried confirm without storing the
    /// personal data a second time.
    var fingerprint: String {
        Hex.encode(Digest.sha256(JSONValue.object(json).serialized))
    }

    /// The same fields with the person's entries trimmed of surrounding white space.
    var trimmed: AppointmentFields {
        var fields = self
        fields.name = AppointmentInput.trimmed(name)
        fields.email = AppointmentInput.trimmed(email)
        fields.phone = AppointmentInput.trimmed(phone)
        fields.moreDetails = AppointmentInput.trimmed(moreDetails)
        return fields
    }
}

/// Checks and tidies what the user typed on DETAILS.
enum AppointmentInput {
    /// The longest name accepted, in characters.
    static let maxNameCharacters = 80
    /// The longest further details accepted, in characters (the TextArea's `max-length`).
    static let maxDetailsCharacters = 600

    /// `text` without leading and trailing spaces, tabs and line breaks.
    static func trimmed(_ text: String) -> String {
        var view = Substring(text)
        while let first = view.first, first.isWhitespace { view.removeFirst() }
        while let last = view.last, last.isWhitespace { view.removeLast() }
        return String(view)
    }

    /// Why `name` (trimmed) cannot be used, or `nil`.
    static func nameProblem(_ name: String) -> String? {
        if name.isEmpty { return "Please enter your name." }
        if name.count > maxNameCharacters { return "Your name can have at most \(maxNameCharacters) characters." }
        if name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            return "Your name can only be one line of text."
        }
        if !name.unicodeScalars.contains(where: { $0.properties.isAlphabetic }) {
            return "Please enter your name with letters."
        }
        return nil
    }

    /// Why `email` (trimmed) cannot be used, or `nil`.
    static func emailProblem(_ email: String) -> String? {
        let invalid = "Please enter a valid email address, like name@example.com."
        if email.isEmpty { return "Please enter your email address." }
        guard email.utf8.count <= 254 else { return invalid }
        let parts = email.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return invalid }
        let local = parts[0]
        let domain = parts[1]
        let localSpecials = Set("!#$%&'*+/=?^_`{|}~.-".unicodeScalars)
        guard !local.isEmpty, local.utf8.count <= 64, !local.hasPrefix("."), !local.hasSuffix("."),
            !local.containsBytes(".."),
            local.unicodeScalars.allSatisfy({
                $0.properties.isAlphabetic || $0.properties.numericType != nil || localSpecials.contains($0)
                    || $0.value > 0x7F && !$0.properties.isWhitespace && $0.properties.generalCategory != .control
            })
        else { return invalid }
        let labels = domain.split(separator: ".", omittingEmptySubsequences: false)
        guard labels.count >= 2 else { return invalid }
        for label in labels {
            guard !label.isEmpty, label.utf8.count <= 63, !label.hasPrefix("-"), !label.hasSuffix("-"),
                label.unicodeScalars.allSatisfy({
                    $0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-"
                })
            else { return invalid }
        }
        guard let top = labels.last, top.count >= 2, top.unicodeScalars.allSatisfy({ $0.properties.isAlphabetic })
        else { return invalid }
        return nil
    }

    /// Why `phone` (trimmed) cannot be used, or `nil`: 7 to 15 digits, optionally a leading `+`, with spaces,
    /// dashes, dots and parentheses allowed between them.
    static func phoneProblem(_ phone: String) -> String? {
        if phone.isEmpty { return "Please enter your phone number." }
        let invalid = "Please enter a valid phone number: 7 to 15 digits, optionally starting with +."
        var digits = 0
        for (index, scalar) in phone.unicodeScalars.enumerated() {
            switch scalar {
            case "0"..."9": digits += 1
            case "+": if index != 0 { return invalid }
            case " ", "-", ".", "(", ")": break
            default: return invalid
            }
        }
        return (7...15).contains(digits) ? nil : invalid
    }

    /// Why `details` (trimmed) cannot be used, or `nil`.
    static func detailsProblem(_ details: String) -> String? {
        details.count > maxDetailsCharacters
            ? "Further details can have at most \(maxDetailsCharacters) characters." : nil
    }

    /// The first problem with the personal fields of `fields` (already trimmed), or `nil`.
    static func problem(_ fields: AppointmentFields) -> String? {
        nameProblem(fields.name) ?? emailProblem(fields.email) ?? phoneProblem(fields.phone)
            ?? detailsProblem(fields.moreDetails)
    }
}
