/// The expense entry flow, served at `.../flows/expense` (Flow JSON: `flows/expense.json`).
///
/// One screen, `EXPENSE_FORM`; a valid submit stores the expense and completes the flow (`SUCCESS`). The flow token
/// is the session: once it completed, every request for it gets 427, except an identical retry of the completing
/// submit, which gets the same `SUCCESS` again. Either way one expense is stored per token.
///
/// `EXPENSE_FORM` data (all of them in every answer, as the Flow JSON declares them): `categories` (array of
/// `{id, title}`), `currency`, `amount_label`, `amount`, `category`, `description`, `date` (`YYYY-MM-DD`), `max_date`
/// (today); plus the client's own `error_message` (undeclared) when there is something to say.
///
/// Settings:
/// - `EXPENSE_CATEGORIES`: `id:Title,id:Title,...` (default `food:Food,transport:Transport,lodging:Lodging,
///   entertainment:Entertainment,other:Other`); ids are letters, digits, `_` and `-`, titles at most 30 characters.
/// - `EXPENSE_CURRENCY`: an ISO 4217 code, three capital letters (default `EUR`); amounts have two decimals.
/// - `EXPENSE_MAX_AMOUNT`: the largest amount accepted, in whole currency units (default 1000000).
/// - `EXPENSE_UTC_OFFSET`: `+HH:MM` or `-HH:MM`, the fixed offset from UTC that decides which day is today, so
///   which dates are in the future (default `+00:00`, UTC).
public struct ExpenseFlow: Flow {
    /// A category the user can choose.
    public struct Category: Sendable, Equatable {
        /// What is stored and sent to the business, e.g. `food`.
        public let id: String
        /// What the user sees, e.g. `Food`.
        public let title: String

        /// A category `id` shown as `title`.
        public init(id: String, title: String) {
            self.id = id
            self.title = title
        }
    }

    /// The settings this flow reads.
    public static let settingNames = [
        "EXPENSE_CATEGORIES", "EXPENSE_CURRENCY", "EXPENSE_MAX_AMOUNT", "EXPENSE_UTC_OFFSET",
    ]

    /// How the endpoint builds the flow (registered in `FlowRegistry.all`).
    public static let factory = FlowFactory(name: "expense", settingNames: settingNames, commands: commands) {
        settings throws(ConfigError) in try ExpenseFlow(settings: settings)
    }

    /// Categories when `EXPENSE_CATEGORIES` is not set.
    public static let defaultCategories: [Category] = [
        Category(id: "food", title: "Food"), Category(id: "transport", title: "Transport"),
        Category(id: "lodging", title: "Lodging"), Category(id: "entertainment", title: "Entertainment"),
        Category(id: "other", title: "Other"),
    ]

    /// The one screen of the Flow JSON.
    public static let formScreen = "EXPENSE_FORM"
    /// The longest description accepted, in characters.
    public static let maxDescriptionCharacters = 3000
    /// Shown by WhatsApp when the flow token was already used.
    public static let completedMessage = "This expense was already submitted. Start a new one from the chat."

    /// `expense`.
    public let name = "expense"
    /// The categories offered, in order.
    public let categories: [Category]
    /// The currency of every amount, e.g. `EUR`.
    public let currency: String
    /// The largest amount accepted, in hundredths.
    public let maxAmountMinor: Int64
    /// The offset from UTC, in seconds, that decides which day is today.
    public let utcOffsetSeconds: Int

    /// The flow configured by the `EXPENSE_*` settings.
    /// - Throws: `ConfigError` naming the setting when a value is invalid.
    public init(settings: Settings) throws(ConfigError) {
        categories = try ExpenseFlow.parseCategories(settings["EXPENSE_CATEGORIES"])
        let currency = settings["EXPENSE_CURRENCY"] ?? "EUR"
        guard currency.utf8.count == 3, currency.utf8.allSatisfy({ $0 >= 0x41 && $0 <= 0x5A }) else {
            throw ConfigError(setting: "EXPENSE_CURRENCY", value: currency,
                              "expected an ISO 4217 code of three capital letters, e.g. EUR")
        }
        self.currency = currency
        maxAmountMinor = Int64(try settings.integer("EXPENSE_MAX_AMOUNT", default: 1_000_000, range: 1...1_000_000_000))
            * 100
        if let offset = settings["EXPENSE_UTC_OFFSET"] {
            guard let seconds = ExpenseDate.parseOffset(offset) else {
                throw ConfigError(setting: "EXPENSE_UTC_OFFSET", value: offset,
                                  "expected +HH:MM or -HH:MM from -12:00 to +14:00, e.g. +01:00")
            }
            utcOffsetSeconds = seconds
        } else {
            utcOffsetSeconds = 0
        }
    }

    private static func parseCategories(_ text: String?) throws(ConfigError) -> [Category] {
        guard let text else { return defaultCategories }
        func invalid(_ reason: String) -> ConfigError {
            ConfigError("EXPENSE_CATEGORIES: \(reason); expected id:Title,id:Title,... e.g. food:Food,other:Other")
        }
        var result: [Category] = []
        for entry in text.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = entry.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            let id = String(parts[0]).trimmingWhitespace()
            let title = parts.count > 1 ? String(parts[1]).trimmingWhitespace() : id
            let idIsValid = id.utf8.allSatisfy { byte in
                (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
                    || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
            }
            guard !id.isEmpty, id.utf8.count <= 64, idIsValid else {
                throw invalid("'\(id)' is not a valid id (letters, digits, _ and -, at most 64)")
            }
            guard !title.isEmpty, title.count <= 30 else {
                throw invalid("the title of '\(id)' must have 1 to 30 characters")
            }
            guard !result.contains(where: { $0.id == id }) else { throw invalid("'\(id)' appears twice") }
            result.append(Category(id: id, title: title))
        }
        guard result.count <= 200 else { throw invalid("at most 200 categories (the Dropdown limit)") }
        return result
    }

    /// The flow's tables.
    public var migrations: [Migration] { ExpenseStore.migrations }

    /// Answers INIT and BACK with the empty form, a valid submit with `SUCCESS`, an invalid one with the form again.
    /// - Throws: `StorageNotConfigured` without a database, `DatabaseError` when storage fails.
    public func handle(_ request: FlowRequest, context: FlowContext) throws -> FlowAnswer {
        let database = try context.requireDatabase(for: name)
        let token = request.flowToken
        guard !token.isEmpty else {
            context.log.warning("expense: request without a flow token")
            return .tokenNoLongerValid(message: ExpenseFlow.completedMessage)
        }
        let today = ExpenseDate.today(now: context.now, offsetSeconds: utcOffsetSeconds)
        switch request.action {
        case .initial, .back:
            return try openForm(database: database, token: token, now: context.now, today: today, error: nil)
        case .dataExchange:
            guard request.screen == ExpenseFlow.formScreen else {
                context.log.warning("expense: data_exchange from an unknown screen",
                                    ["screen": String(request.screen.prefix(64))])
                return try openForm(database: database, token: token, now: context.now, today: today,
                                    error: "Something went wrong. Please fill in the form again.")
            }
            return try submit(request, database: database, context: context, today: today)
        }
    }

    private func openForm(database: Database, token: String, now: Int64, today: String,
                          error: String?) throws -> FlowAnswer {
        let session = try ExpenseStore.openSession(database: database, token: token, now: now)
        if session.completed { return .tokenNoLongerValid(message: ExpenseFlow.completedMessage) }
        return formAnswer(amount: "", category: "", description: "", date: today, today: today, error: error)
    }

    /// The answer showing `EXPENSE_FORM` with these values.
    func formAnswer(amount: String, category: String, description: String, date: String, today: String,
                    error: String?) -> FlowAnswer {
        let data: [String: JSONValue] = [
            "categories": .array(categories.map { .object(["id": .string($0.id), "title": .string($0.title)]) }),
            "currency": .string(currency),
            "amount_label": .string("Amount (\(currency))"),
            "amount": .string(amount),
            "category": .string(category),
            "description": .string(description),
            "date": .string(date),
            "max_date": .string(today),
        ]
        return .screen(ExpenseFlow.formScreen, data: data, errorMessage: error)
    }

    /// The fields of a submit that make it "the same submit" for an idempotent retry.
    private static let submittedFields = ["amount", "category", "description", "date", "currency"]

    private func submit(_ request: FlowRequest, database: Database, context: FlowContext,
                        today: String) throws -> FlowAnswer {
        let token = request.flowToken
        var submitted: [String: JSONValue] = [:]
        for field in ExpenseFlow.submittedFields { submitted[field] = request.data[field] }
        let fingerprint = JSONValue.object(submitted).text

        switch validate(request.data, today: today) {
        case .failure(let problem):
            if let session = try ExpenseStore.session(database: database, token: token), session.completed {
                return try replay(session, fingerprint: fingerprint, database: database, token: token)
            }
            context.log.debug("expense: invalid submit", ["field": problem.field.rawValue])
            return rejected(request.data, today: today, message: problem.message)
        case .success(let valid):
            return try database.writeTransaction { () throws(DatabaseError) -> FlowAnswer in
                if let session = try ExpenseStore.session(database: database, token: token), session.completed {
                    return try replay(session, fingerprint: fingerprint, database: database, token: token)
                }
                let id = try ExpenseStore.complete(
                    database: database, token: token, submission: fingerprint, now: context.now,
                    amountMinor: valid.amountMinor, currency: currency, category: valid.category,
                    description: valid.description, expenseDate: valid.date)
                context.log.info("expense stored", ["expense_id": String(id)])
                return ExpenseFlow.success(token: token, id: id, amountMinor: valid.amountMinor, currency: currency,
                                           category: valid.category)
            }
        }
    }

    /// The same `SUCCESS` again for an identical retry of the completing submit, 427 for anything else.
    private func replay(_ session: ExpenseSession, fingerprint: String, database: Database,
                        token: String) throws(DatabaseError) -> FlowAnswer {
        guard session.submission == fingerprint, let id = session.expenseID,
            let expense = try ExpenseStore.expense(database: database, id: id)
        else { return .tokenNoLongerValid(message: ExpenseFlow.completedMessage) }
        return ExpenseFlow.success(token: token, id: expense.id, amountMinor: expense.amountMinor,
                                   currency: expense.currency, category: expense.category)
    }

    private static func success(token: String, id: Int64, amountMinor: Int64, currency: String,
                                category: String) -> FlowAnswer {
        .success(params: [
            "flow_token": .string(token),
            "expense_id": .number(String(id)),
            "amount": .string(ExpenseAmount.format(minor: amountMinor)),
            "currency": .string(currency),
            "category": .string(category),
        ])
    }

    /// The form again, keeping what the user typed where it can be shown back.
    private func rejected(_ data: [String: JSONValue], today: String, message: String) -> FlowAnswer {
        let amount = data["amount"]?.stringValue.map { String($0.prefix(20)) } ?? ""  // the input's max-chars
        let category = data["category"]?.stringValue.flatMap { id in categories.contains { $0.id == id } ? id : nil }
        let description = data["description"]?.stringValue
            .map { String($0.prefix(ExpenseFlow.maxDescriptionCharacters)) }
        let date = data["date"]?.stringValue.flatMap { ExpenseDate.isValid($0) ? $0 : nil } ?? today
        return formAnswer(amount: amount, category: category ?? "", description: description ?? "", date: date,
                          today: today, error: message)
    }

    /// A submit that passed every check.
    struct ValidExpense: Equatable {
        let amountMinor: Int64
        let category: String
        let description: String?
        let date: String
    }

    /// Checks the submitted fields, the first problem winning (currency, amount, category, description, date).
    func validate(_ data: [String: JSONValue], today: String) -> Result<ValidExpense, ExpenseInputError> {
        if let shown = data["currency"], shown != .null, shown.stringValue != currency {
            return .failure(.init(field: .currency, message: "Amounts are now in \(currency). Please check the "
                + "amount and submit again."))
        }

        guard let typed = data["amount"]?.stringValue else {
            return .failure(.init(field: .amount, message: "Enter the amount, for example 12.50."))
        }
        let amountMinor: Int64
        switch ExpenseAmount.parse(typed, maxMinor: maxAmountMinor) {
        case .success(let minor): amountMinor = minor
        case .failure(let problem): return .failure(problem)
        }

        guard let category = data["category"]?.stringValue, !category.isEmpty else {
            return .failure(.init(field: .category, message: "Choose a category."))
        }
        guard categories.contains(where: { $0.id == category }) else {
            return .failure(.init(field: .category, message: "Choose one of the listed categories."))
        }

        var description: String?
        switch data["description"] {
        case nil, .null?: description = nil
        case .string(let text)?:
            let trimmed = text.trimmingWhitespace()
            guard trimmed.count <= ExpenseFlow.maxDescriptionCharacters,
                trimmed.utf8.count <= 4 * ExpenseFlow.maxDescriptionCharacters
            else {
                return .failure(.init(field: .description, message: "The description can have at most "
                    + "\(ExpenseFlow.maxDescriptionCharacters) characters."))
            }
            guard !trimmed.unicodeScalars.contains(where: { $0.value < 0x20 && $0 != "\n" && $0 != "\t" && $0 != "\r"
                || $0.value == 0x7F })
            else {
                return .failure(.init(field: .description, message: "The description contains characters that "
                    + "cannot be saved."))
            }
            description = trimmed.isEmpty ? nil : trimmed
        default:
            return .failure(.init(field: .description, message: "Enter the description as text."))
        }

        var date = today
        switch data["date"] {
        case nil, .null?: break
        case .string(let text)?:
            let trimmed = text.trimmingWhitespace()
            if trimmed.isEmpty { break }
            guard ExpenseDate.isValid(trimmed) else {
                return .failure(.init(field: .date, message: "Pick the date from the calendar."))
            }
            // YYYY-MM-DD compares like the dates it names.
            guard trimmed <= today else {
                return .failure(.init(field: .date, message: "The date cannot be in the future."))
            }
            date = trimmed
        default:
            return .failure(.init(field: .date, message: "Pick the date from the calendar."))
        }

        return .success(ValidExpense(amountMinor: amountMinor, category: category, description: description,
                                     date: date))
    }
}
