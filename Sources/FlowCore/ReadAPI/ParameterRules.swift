/// The values the read API and the operator commands accept for the same things (a page of a listing, a date),
/// checked by the same code, so `GET .../expenses?limit=abc` and `flows-fcgi expenses --limit abc` are refused alike.
public enum ParameterRules {
    /// `limit` of a listing page.
    public static let limit = 1...100
    /// `offset` of a listing page.
    public static let offset = 0...1_000_000_000

    /// `text` as a whole number within `range` (decimal digits, an optional sign, at most 10 characters), else `nil`.
    public static func integer(_ text: String, in range: ClosedRange<Int>) -> Int? {
        guard text.utf8.count <= 10, let number = Int(text), range.contains(number) else { return nil }
        return number
    }

    /// Why `name` was refused by `integer(_:in:)`.
    public static func integerProblem(_ name: String, _ range: ClosedRange<Int>) -> String {
        "\(name) must be a whole number from \(range.lowerBound) to \(range.upperBound)"
    }

    /// True for a real calendar date written `YYYY-MM-DD` (`2026-02-30` is not one).
    public static func isDate(_ text: String) -> Bool { ISOTime.isDate(text) }

    /// Why `name` was refused by `isDate(_:)`.
    public static func dateProblem(_ name: String) -> String { "\(name) must be a date written YYYY-MM-DD" }
}
