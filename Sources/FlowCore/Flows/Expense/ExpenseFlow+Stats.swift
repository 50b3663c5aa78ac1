extension ExpenseFlow {
    /// Sessions live in `expense_sessions` (for the read API's statistics).
    public var sessionTable: String? { "expense_sessions" }
}
