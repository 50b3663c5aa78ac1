/// A submitted field the expense form cannot accept, with the sentence shown to the user in the snackbar.
struct ExpenseInputError: Error, Sendable, Equatable {
    /// The fields of `EXPENSE_FORM`.
    enum Field: String, Sendable {
        case amount, category, description, date, currency
    }

    /// The field at fault (logged; the value never is).
    let field: Field
    /// What the user reads.
    let message: String
}

/// Exact amounts: typed text to integer minor units (hundredths) and back, never through binary floating point.
///
/// Accepted: ASCII digits, optionally followed by one decimal separator (`.` or `,`) and one or two digits, with
/// spaces around; e.g. `12`, `12.5`, `12.50`, `12,50`, `0.01`. Every currency is taken to have two decimals.
enum ExpenseAmount {
    /// Parses `typed` into minor units, at least 1 and at most `maxMinor`.
    static func parse(_ typed: String, maxMinor: Int64) -> Result<Int64, ExpenseInputError> {
        let text = typed.trimmingWhitespace()
        if text.isEmpty {
            return .failure(.init(field: .amount, message: "Enter the amount, for example 12.50."))
        }
        if text.hasPrefix("-") {
            return .failure(.init(field: .amount, message: "The amount must be more than zero."))
        }
        var whole: [UInt8] = []
        var fraction: [UInt8] = []
        var separatorSeen = false
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                let digit = byte - UInt8(ascii: "0")
                if separatorSeen { fraction.append(digit) } else { whole.append(digit) }
            case UInt8(ascii: "."), UInt8(ascii: ","):
                if separatorSeen { return .failure(notANumber) }
                separatorSeen = true
            default:
                return .failure(notANumber)
            }
        }
        guard !whole.isEmpty, !separatorSeen || !fraction.isEmpty else { return .failure(notANumber) }
        guard fraction.count <= 2 else {
            return .failure(.init(field: .amount, message: "Use at most two decimals and no thousands separators, "
                + "for example 1234.50."))
        }
        while whole.count > 1, whole.first == 0 { whole.removeFirst() }
        let tooLarge = ExpenseInputError(field: .amount,
                                         message: "The amount can be at most \(format(minor: maxMinor)).")
        // 15 digits cannot overflow Int64 once multiplied by 100; any bound a setting allows is far below.
        guard whole.count <= 15 else { return .failure(tooLarge) }
        var minor: Int64 = 0
        for digit in whole { minor = minor * 10 + Int64(digit) }
        minor *= 100
        if fraction.count >= 1 { minor += Int64(fraction[0]) * 10 }
        if fraction.count == 2 { minor += Int64(fraction[1]) }
        guard minor > 0 else {
            return .failure(.init(field: .amount, message: "The amount must be more than zero."))
        }
        guard minor <= maxMinor else { return .failure(tooLarge) }
        return .success(minor)
    }

    private static let notANumber = ExpenseInputError(
        field: .amount, message: "Enter the amount in digits with up to two decimals, for example 12.50.")

    /// `1250` → `"12.50"`.
    static func format(minor: Int64) -> String {
        let cents = minor % 100
        return "\(minor / 100).\(cents < 10 ? "0" : "")\(cents)"
    }
}

/// Calendar dates as `YYYY-MM-DD` text, the format the Flow `DatePicker` sends (Flow JSON 5.0 and later).
///
/// "Today" is the date at a fixed offset from UTC (the `EXPENSE_UTC_OFFSET` setting, default UTC). A fixed offset
/// keeps the rule simple and thread-safe; daylight saving time is not followed.
enum ExpenseDate {
    /// True for a real calendar date from 1970-01-01 to 9999-12-31 written `YYYY-MM-DD`.
    static func isValid(_ text: String) -> Bool {
        guard let day = CalendarDay(text) else { return false }
        return day.daysSinceEpoch >= 0
    }

    /// The date at `now` (seconds since the epoch) shifted by `offsetSeconds`, as `YYYY-MM-DD`.
    static func today(now: Int64, offsetSeconds: Int) -> String {
        CalendarDay.today(now: now, offsetSeconds: offsetSeconds).description
    }

    /// Parses an offset from UTC written `+HH:MM` or `-HH:MM` (from -12:00 to +14:00) into seconds.
    static func parseOffset(_ text: String) -> Int? {
        let bytes = Array(text.utf8)
        guard bytes.count == 6, bytes[0] == UInt8(ascii: "+") || bytes[0] == UInt8(ascii: "-"),
            bytes[3] == UInt8(ascii: ":")
        else { return nil }
        let digits = [bytes[1], bytes[2], bytes[4], bytes[5]]
        guard digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return nil }
        let values = digits.map { Int($0 - UInt8(ascii: "0")) }
        let hours = values[0] * 10 + values[1]
        let minutes = values[2] * 10 + values[3]
        guard minutes < 60 else { return nil }
        let seconds = (hours * 60 + minutes) * 60 * (bytes[0] == UInt8(ascii: "-") ? -1 : 1)
        guard (-12 * 3600)...(14 * 3600) ~= seconds else { return nil }
        return seconds
    }
}

extension String {
    /// The text without leading and trailing white space (Unicode's notion, so no-break spaces go too).
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let first = s.first, first.isWhitespace { s.removeFirst() }
        while let last = s.last, last.isWhitespace { s.removeLast() }
        return String(s)
    }
}
