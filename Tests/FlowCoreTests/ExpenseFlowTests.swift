#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Testing
@testable import FlowCore

// MARK: - Harness

/// A store with the expense schema (by default a SQLite file in a fresh `mkdtemp` directory, removed when
/// released).
final class ExpenseTestDatabase {
    let directory: String
    let path: String
    let engineStore: TestStore
    let database: Database

    struct SetupError: Error {}

    init(engine: Engine = .sqlite) throws {
        var template = Array("/tmp/flowcore-expense-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer -> String? in
            guard mkdtemp(buffer.baseAddress!) != nil else { return nil }
            return String(cString: buffer.baseAddress!)
        }
        guard let made else { throw SetupError() }
        directory = made
        path = made + "/flows.db"
        engineStore = try TestStore(engine, directory: made)
        database = try engineStore.open(migrations: ExpenseStore.migrations)
    }

    /// Another connection to the same file, as another worker or process would have.
    func connect(busyTimeoutMilliseconds: Int32 = 5000) throws -> Database {
        try Database(path: path, busyTimeoutMilliseconds: busyTimeoutMilliseconds, migrations: ExpenseStore.migrations)
    }

    func count(_ sql: String = "SELECT count(*) FROM expenses") throws -> Int64 {
        try database.query(sql).first?.first?.int ?? -1
    }

    deinit {
        database.close()
        for suffix in ["", "-wal", "-shm", ".log"] { unlink(path + suffix) }
        rmdir(directory)
    }
}

/// 2026-01-01T12:00:00Z.
let expenseNoon: Int64 = 1_767_268_800

/// An expense flow on a temporary database whose every answer is checked against flows/expense.json.
struct ExpenseHarness {
    let store: ExpenseTestDatabase
    let flow: ExpenseFlow
    var now = expenseNoon
    var log = Logger.discard

    init(_ settings: [String: String] = [:], engine: Engine = .sqlite) throws {
        store = try ExpenseTestDatabase(engine: engine)
        flow = try ExpenseFlow(settings: Settings(settings))
    }

    var database: Database { store.database }

    /// Sends one request; `checkedHandle` checks the answer against the Flow JSON.
    @discardableResult
    func send(_ action: FlowAction, screen: String = ExpenseFlow.formScreen, data: [String: JSONValue] = [:],
              token: String = "token-1", database: Database? = nil,
              sourceLocation: SourceLocation = #_sourceLocation) throws -> FlowAnswer {
        let request = FlowRequest(version: "3.0", action: action, screen: action == .initial ? "" : screen,
                                  data: data, flowToken: token)
        let context = FlowContext(database: database ?? store.database, now: now, log: log)
        return try flow.checkedHandle(request, context: context, sourceLocation: sourceLocation)
    }

    /// A submit of `data`.
    @discardableResult
    func submit(_ data: [String: JSONValue], token: String = "token-1",
                sourceLocation: SourceLocation = #_sourceLocation) throws -> FlowAnswer {
        try send(.dataExchange, data: data, token: token, sourceLocation: sourceLocation)
    }
}

/// A valid submit, as the Footer of flows/expense.json sends it.
let validSubmit: [String: JSONValue] = [
    "amount": "12.50", "category": "food", "description": "Team lunch", "date": "2025-12-31", "currency": "EUR",
]

func submit(_ changes: [String: JSONValue?]) -> [String: JSONValue] {
    var data = validSubmit
    for (key, value) in changes { data[key] = value }
    return data
}

extension FlowAnswer {
    /// The shown screen's data (empty for a 427).
    var shown: [String: JSONValue] {
        screenData ?? [:]
    }

    var successParams: [String: JSONValue]? {
        guard screenID == "SUCCESS" else { return nil }
        return shown["extension_message_response"]?["params"]?.objectValue
    }

    var isTokenNoLongerValid: Bool {
        if case .tokenNoLongerValid(let message) = self { return !message.isEmpty }
        return false
    }
}

// MARK: - The screen flow

@Suite("Expense flow")
struct ExpenseFlowTests {
    static let defaultCategories: JSONValue = [
        ["id": "food", "title": "Food"], ["id": "transport", "title": "Transport"],
        ["id": "lodging", "title": "Lodging"], ["id": "entertainment", "title": "Entertainment"],
        ["id": "other", "title": "Other"],
    ]

    static let freshForm = FlowAnswer.screen("EXPENSE_FORM", data: [
        "categories": defaultCategories, "currency": "EUR", "amount_label": "Amount (EUR)", "amount": "",
        "category": "", "description": "", "date": "2026-01-01", "max_date": "2026-01-01",
    ])

    @Test(arguments: Engine.all) func initShowsTheFormAndOpensASession(engine: Engine) throws {
        let harness = try ExpenseHarness(engine: engine)
        #expect(try harness.send(.initial) == Self.freshForm)
        #expect(try harness.store.count("SELECT count(*) FROM expense_sessions WHERE completed = 0") == 1)
        // A second INIT (the user reopened the Flow) shows the form again and keeps one session.
        #expect(try harness.send(.initial) == Self.freshForm)
        #expect(try harness.store.count("SELECT count(*) FROM expense_sessions") == 1)
    }

    @Test(arguments: Engine.all) func backShowsTheFormFresh(engine: Engine) throws {
        let harness = try ExpenseHarness(engine: engine)
        try harness.send(.initial)
        #expect(try harness.send(.back) == Self.freshForm)
    }

    @Test(arguments: [
        ("12", "12.00", 1200), ("12.5", "12.50", 1250), ("12.50", "12.50", 1250), ("12,50", "12.50", 1250),
        (" 7.1 ", "7.10", 710), ("0.01", "0.01", 1), ("007.10", "7.10", 710), ("1000000", "1000000.00", 100_000_000),
        ("999999.99", "999999.99", 99_999_999),
    ] as [(String, String, Int64)])
    func validSubmitIsStoredAndCompletes(typed: String, normalised: String, minor: Int64) throws {
        let harness = try ExpenseHarness()
        try harness.send(.initial)
        let answer = try harness.submit(submit(["amount": .string(typed)]))
        #expect(answer == .success(params: [
            "flow_token": "token-1", "expense_id": 1, "amount": .string(normalised), "currency": "EUR",
            "category": "food",
        ]))
        let stored = try ExpenseStore.list(database: harness.database)
        #expect(stored == [Expense(id: 1, createdAt: expenseNoon, flowToken: "token-1", amountMinor: minor,
                                   currency: "EUR", category: "food", description: "Team lunch",
                                   expenseDate: "2025-12-31")])
        let session = try harness.database.query(
            "SELECT completed, expense_id, completed_at FROM expense_sessions WHERE flow_token = 'token-1'")
        #expect(session == [[.integer(1), .integer(1), .integer(expenseNoon)]])
    }

    @Test(arguments: Engine.all) func optionalFieldsMayBeEmptyOrAbsent(engine: Engine) throws {
        let harness = try ExpenseHarness(engine: engine)
        // No INIT first: a Flow sent with flow_action navigate opens without one.
        try harness.submit(["amount": "3", "category": "other", "description": "  ", "date": ""], token: "a")
        try harness.submit(["amount": "4", "category": "other"], token: "b")
        try harness.submit(["amount": "5", "category": "other", "description": .null, "date": .null], token: "c")
        let stored = try ExpenseStore.list(database: harness.database)
        #expect(stored.map(\.description) == [nil, nil, nil])
        #expect(stored.map(\.expenseDate) == ["2026-01-01", "2026-01-01", "2026-01-01"])
    }

    @Test(arguments: Engine.all) func descriptionOfExactlyTheLimitIsKept(engine: Engine) throws {
        let harness = try ExpenseHarness(engine: engine)
        let text = String(repeating: "é", count: 2999) + "🧾"
        let answer = try harness.submit(submit(["description": .string(text), "date": "2026-01-01"]))
        #expect(answer.successParams != nil)
        let stored = try ExpenseStore.list(database: harness.database)
        #expect(stored.first?.description == text)
        #expect(stored.first?.expenseDate == "2026-01-01")
    }

    /// One invalid submit: what is sent, what the snackbar must say, and what the form shows back.
    struct InvalidCase: Sendable, CustomTestStringConvertible {
        let label: String
        let changes: [String: JSONValue?]
        let message: String
        var echoedAmount: String = "12.50"
        var echoedCategory: String = "food"
        var echoedDate: String = "2025-12-31"
        var testDescription: String { label }
    }

    static let invalidCases: [InvalidCase] = [
        InvalidCase(label: "negative", changes: ["amount": "-5"], message: "more than zero", echoedAmount: "-5"),
        InvalidCase(label: "letters", changes: ["amount": "abc"], message: "in digits", echoedAmount: "abc"),
        InvalidCase(label: "empty amount", changes: ["amount": ""], message: "Enter the amount", echoedAmount: ""),
        InvalidCase(label: "blank amount", changes: ["amount": "  "], message: "Enter the amount", echoedAmount: "  "),
        InvalidCase(label: "three decimals", changes: ["amount": "12.345"], message: "at most two decimals",
                    echoedAmount: "12.345"),
        InvalidCase(label: "thousands separator", changes: ["amount": "1,000"], message: "at most two decimals",
                    echoedAmount: "1,000"),
        InvalidCase(label: "exponent", changes: ["amount": "1e9999"], message: "in digits", echoedAmount: "1e9999"),
        InvalidCase(label: "zero", changes: ["amount": "0"], message: "more than zero", echoedAmount: "0"),
        InvalidCase(label: "zero with decimals", changes: ["amount": "0.00"], message: "more than zero",
                    echoedAmount: "0.00"),
        InvalidCase(label: "above the bound", changes: ["amount": "1000000.01"], message: "at most 1000000.00",
                    echoedAmount: "1000000.01"),
        InvalidCase(label: "huge", changes: ["amount": "999999999999999999"], message: "at most",
                    echoedAmount: "999999999999999999"),
        InvalidCase(label: "trailing separator", changes: ["amount": "12."], message: "in digits", echoedAmount: "12."),
        InvalidCase(label: "no whole part", changes: ["amount": ".5"], message: "in digits", echoedAmount: ".5"),
        InvalidCase(label: "two separators", changes: ["amount": "1.2.3"], message: "in digits",
                    echoedAmount: "1.2.3"),
        InvalidCase(label: "inner space", changes: ["amount": "12 50"], message: "in digits", echoedAmount: "12 50"),
        InvalidCase(label: "plus sign", changes: ["amount": "+5"], message: "in digits", echoedAmount: "+5"),
        InvalidCase(label: "non-ASCII digits", changes: ["amount": "١٢"], message: "in digits", echoedAmount: "١٢"),
        InvalidCase(label: "currency sign", changes: ["amount": "€12"], message: "in digits", echoedAmount: "€12"),
        InvalidCase(label: "missing amount", changes: ["amount": nil], message: "Enter the amount", echoedAmount: ""),
        InvalidCase(label: "amount as a number", changes: ["amount": .number("12.5")], message: "Enter the amount",
                    echoedAmount: ""),
        InvalidCase(label: "amount as a boolean", changes: ["amount": true], message: "Enter the amount",
                    echoedAmount: ""),
        InvalidCase(label: "amount null", changes: ["amount": .null], message: "Enter the amount", echoedAmount: ""),
        InvalidCase(label: "missing category", changes: ["category": nil], message: "Choose a category",
                    echoedCategory: ""),
        InvalidCase(label: "empty category", changes: ["category": ""], message: "Choose a category",
                    echoedCategory: ""),
        InvalidCase(label: "unknown category", changes: ["category": "fuel"], message: "listed categories",
                    echoedCategory: ""),
        InvalidCase(label: "category as a number", changes: ["category": 1], message: "Choose a category",
                    echoedCategory: ""),
        InvalidCase(label: "description too long",
                    changes: ["description": .string(String(repeating: "x", count: 3001))],
                    message: "at most 3000 characters"),
        InvalidCase(label: "description as a number", changes: ["description": 5], message: "as text"),
        InvalidCase(label: "description with NUL", changes: ["description": "a\u{0}b"], message: "cannot be saved"),
        InvalidCase(label: "future date", changes: ["date": "2026-01-02"], message: "future", echoedDate: "2026-01-02"),
        InvalidCase(label: "far future date", changes: ["date": "2999-01-01"], message: "future",
                    echoedDate: "2999-01-01"),
        InvalidCase(label: "no such day", changes: ["date": "2025-02-29"], message: "calendar",
                    echoedDate: "2026-01-01"),
        InvalidCase(label: "other date format", changes: ["date": "31/12/2025"], message: "calendar",
                    echoedDate: "2026-01-01"),
        InvalidCase(label: "date before 1970", changes: ["date": "1969-12-31"], message: "calendar",
                    echoedDate: "2026-01-01"),
        InvalidCase(label: "date as a number", changes: ["date": 1_767_225_600_000], message: "calendar",
                    echoedDate: "2026-01-01"),
        InvalidCase(label: "another currency shown", changes: ["currency": "USD"], message: "now in EUR"),
    ]

    @Test(arguments: invalidCases)
    func invalidSubmitShowsTheFormAgain(_ invalid: InvalidCase) throws {
        let harness = try ExpenseHarness()
        try harness.send(.initial)
        let data = submit(invalid.changes)
        let answer = try harness.submit(data)
        #expect(answer.screenID == "EXPENSE_FORM")
        let shown = answer.shown
        let message = shown["error_message"]?.stringValue ?? ""
        #expect(message.contains(invalid.message), "snackbar: \(message)")
        #expect(shown["amount"] == .string(invalid.echoedAmount))
        #expect(shown["category"] == .string(invalid.echoedCategory))
        #expect(shown["date"] == .string(invalid.echoedDate))
        #expect(shown["max_date"] == "2026-01-01")
        #expect(try harness.store.count() == 0)
        // The session stays open: the corrected form goes through.
        #expect(try harness.submit(validSubmit).successParams?["expense_id"] == 1)
        #expect(try harness.store.count() == 1)
    }

    @Test(arguments: Engine.all) func rejectedLongValuesAreShownBackCutToTheInputLimits(engine: Engine) throws {
        let harness = try ExpenseHarness(engine: engine)
        let answer = try harness.submit(submit(["description": .string(String(repeating: "y", count: 5000))]))
        #expect(answer.shown["description"] == .string(String(repeating: "y", count: 3000)))
        let long = try harness.submit(submit(["amount": .string(String(repeating: "9", count: 25))]))
        #expect(long.shown["amount"] == .string(String(repeating: "9", count: 20)))
    }

    @Test(arguments: Engine.all) func completedTokenGets427OnAnyOtherRequest(engine: Engine) throws {
        let harness = try ExpenseHarness(engine: engine)
        try harness.send(.initial)
        #expect(try harness.submit(validSubmit).successParams != nil)
        #expect(try harness.send(.initial).isTokenNoLongerValid)
        #expect(try harness.send(.back).isTokenNoLongerValid)
        #expect(try harness.submit(submit(["amount": "13"])).isTokenNoLongerValid)
        #expect(try harness.submit(submit(["description": "Team lunch!"])).isTokenNoLongerValid)
        #expect(try harness.submit(submit(["amount": "abc"])).isTokenNoLongerValid)
        #expect(try harness.submit(submit(["date": nil])).isTokenNoLongerValid)
        #expect(try harness.send(.dataExchange, screen: "ELSEWHERE", data: validSubmit).isTokenNoLongerValid)
        #expect(try harness.store.count() == 1)
        // Another token is another session.
        #expect(try harness.submit(validSubmit, token: "token-2").successParams?["expense_id"] == 2)
    }

    @Test(arguments: Engine.all) func identicalRetryGetsTheSameSuccessAndStoresOnce(engine: Engine) throws {
        var harness = try ExpenseHarness(engine: engine)
        try harness.send(.initial)
        let first = try harness.submit(validSubmit)
        #expect(first.successParams?["expense_id"] == 1)
        #expect(try harness.submit(validSubmit) == first)
        harness.now += 3 * 86400  // even days later, and after the date stopped being "yesterday"
        #expect(try harness.submit(validSubmit) == first)
        #expect(try harness.store.count() == 1)
    }

    @Test(arguments: Engine.all) func retryIsRecognisedWhenTheDateWasLeftEmpty(engine: Engine) throws {
        var harness = try ExpenseHarness(engine: engine)
        let data = submit(["date": ""])
        let first = try harness.submit(data)
        harness.now += 86400
        #expect(try harness.submit(data) == first)
        #expect(try ExpenseStore.list(database: harness.database).map(\.expenseDate) == ["2026-01-01"])
    }

    @Test(arguments: Engine.all) func unknownScreenShowsTheFormWithAMessage(engine: Engine) throws {
        let harness = try ExpenseHarness(engine: engine)
        try harness.send(.initial)
        let answer = try harness.send(.dataExchange, screen: "SUMMARY", data: validSubmit)
        #expect(answer.screenID == "EXPENSE_FORM")
        #expect(answer.shown["error_message"]?.stringValue?.isEmpty == false)
        #expect(answer.shown["amount"] == "")
        #expect(try harness.store.count() == 0)
        #expect(try harness.send(.dataExchange, screen: "", data: [:]).screenID == "EXPENSE_FORM")
    }

    @Test(arguments: Engine.all) func emptyFlowTokenIsRefused(engine: Engine) throws {
        let harness = try ExpenseHarness(engine: engine)
        #expect(try harness.send(.initial, token: "").isTokenNoLongerValid)
        #expect(try harness.submit(validSubmit, token: "").isTokenNoLongerValid)
        #expect(try harness.store.count("SELECT count(*) FROM expense_sessions") == 0)
    }

    @Test func todayFollowsTheConfiguredOffset() throws {
        let east = try ExpenseHarness(["EXPENSE_UTC_OFFSET": "+14:00"])
        #expect(try east.send(.initial).shown["max_date"] == "2026-01-02")
        #expect(try east.submit(submit(["date": "2026-01-02"])).successParams != nil)

        var west = try ExpenseHarness(["EXPENSE_UTC_OFFSET": "-12:00"])
        west.now = expenseNoon - 60  // 23:59 on 31 December at UTC-12
        #expect(try west.send(.initial).shown["date"] == "2025-12-31")
        let answer = try west.submit(submit(["date": "2026-01-01"]))
        #expect(answer.shown["error_message"]?.stringValue?.contains("future") == true)
        try west.submit(submit(["date": nil]), token: "t2")
        #expect(try ExpenseStore.list(database: west.database).map(\.expenseDate) == ["2025-12-31"])
    }

    @Test func configuredCategoriesCurrencyAndBound() throws {
        let harness = try ExpenseHarness([
            "EXPENSE_CATEGORIES": "fuel:Fuel, parking : Parking,tolls", "EXPENSE_CURRENCY": "CHF",
            "EXPENSE_MAX_AMOUNT": "500",
        ])
        let form = try harness.send(.initial)
        #expect(form.shown["categories"] == [
            ["id": "fuel", "title": "Fuel"], ["id": "parking", "title": "Parking"], ["id": "tolls", "title": "tolls"],
        ])
        #expect(form.shown["currency"] == "CHF")
        #expect(form.shown["amount_label"] == "Amount (CHF)")
        let food = try harness.submit(["amount": "5", "category": "food", "currency": "CHF"])
        #expect(food.shown["error_message"]?.stringValue?.contains("listed categories") == true)
        let big = try harness.submit(["amount": "500.01", "category": "fuel", "currency": "CHF"])
        #expect(big.shown["error_message"]?.stringValue?.contains("at most 500.00") == true)
        let done = try harness.submit(["amount": "500", "category": "parking", "currency": "CHF"])
        #expect(done.successParams?["currency"] == "CHF")
        #expect(done.successParams?["amount"] == "500.00")
        #expect(done.successParams?["category"] == "parking")
    }

    @Test(arguments: [
        ("EXPENSE_CURRENCY", "eur"), ("EXPENSE_CURRENCY", "EURO"), ("EXPENSE_CURRENCY", "E1R"),
        ("EXPENSE_CATEGORIES", "food:"), ("EXPENSE_CATEGORIES", ":Food"), ("EXPENSE_CATEGORIES", "food:Food,,x:X"),
        ("EXPENSE_CATEGORIES", "food:Food,food:Again"), ("EXPENSE_CATEGORIES", "fo od:Food"),
        ("EXPENSE_CATEGORIES", "food:" + String(repeating: "F", count: 31)), ("EXPENSE_MAX_AMOUNT", "0"),
        ("EXPENSE_MAX_AMOUNT", "12.5"), ("EXPENSE_UTC_OFFSET", "+15:00"), ("EXPENSE_UTC_OFFSET", "2"),
        ("EXPENSE_UTC_OFFSET", "+01:60"), ("EXPENSE_UTC_OFFSET", "Europe/Paris"),
    ])
    func invalidSettingIsRefusedByName(setting: String, value: String) {
        let error = #expect(throws: ConfigError.self) {
            _ = try ExpenseFlow(settings: Settings([setting: value]))
        }
        #expect(error?.description.hasPrefix(setting) == true, "\(String(describing: error))")
    }

    @Test func registeredWithItsSettings() throws {
        let factory = try #require(FlowRegistry.all.first { $0.name == "expense" })
        #expect(Set(factory.settingNames) == Set(ExpenseFlow.settingNames))
        #expect(Configuration.allSettingNames.isSuperset(of: ExpenseFlow.settingNames))
        let flow = try factory.make(Settings([:]))
        #expect(flow.name == "expense")
        #expect(flow.migrations.map(\.id) == ["expense-1", "expense-2"])
    }

    // MARK: Storage

    @Test func withoutADatabaseTheFlowSaysSo() throws {
        let flow = try ExpenseFlow(settings: Settings([:]))
        let request = FlowRequest(version: "3.0", action: .initial, screen: "", data: [:], flowToken: "t")
        #expect(throws: StorageNotConfigured.self) {
            _ = try flow.checkedHandle(request, context: FlowContext(database: nil, now: expenseNoon, log: .discard))
        }
    }

    @Test func lockedStorageFailsAsUnavailable() throws {
        let harness = try ExpenseHarness()
        let impatient = try harness.store.connect(busyTimeoutMilliseconds: 20)
        try harness.database.execute("BEGIN IMMEDIATE")
        defer { try? harness.database.execute("ROLLBACK") }
        let error = #expect(throws: DatabaseError.self) {
            try harness.send(.dataExchange, data: validSubmit, database: impatient)
        }
        #expect(error?.isUnavailable == true)
        impatient.close()
    }

    @Test(arguments: Engine.all) func racingIdenticalSubmitsStoreOneExpense(engine: Engine) async throws {
        let harness = try ExpenseHarness(engine: engine)
        let engineStore = harness.store.engineStore
        let flow = harness.flow
        let answers = try await withThrowingTaskGroup(of: FlowAnswer.self) { group in
            for _ in 0..<6 {
                group.addTask {
                    let database = try engineStore.open(migrations: ExpenseStore.migrations)
                    defer { database.close() }
                    let request = FlowRequest(version: "3.0", action: .dataExchange, screen: "EXPENSE_FORM",
                                              data: validSubmit, flowToken: "race")
                    let context = FlowContext(database: database, now: expenseNoon, log: .discard)
                    return try flow.checkedHandle(request, context: context)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(answers.count == 6)
        #expect(answers.allSatisfy { $0 == answers[0] })
        // (PostgreSQL may skip ids: an insert that lost the race used one.)
        let stored = try ExpenseStore.list(database: harness.database)
        #expect(stored.count == 1)
        #expect(answers.allSatisfy { $0.successParams?["expense_id"] == .number(String(stored.first?.id ?? 0)) })
    }

    @Test(arguments: Engine.all) func racingDifferentSubmitsStoreOneExpense(engine: Engine) async throws {
        let harness = try ExpenseHarness(engine: engine)
        let engineStore = harness.store.engineStore
        let flow = harness.flow
        let answers = try await withThrowingTaskGroup(of: FlowAnswer.self) { group in
            for amount in 1...6 {
                group.addTask {
                    let database = try engineStore.open(migrations: ExpenseStore.migrations)
                    defer { database.close() }
                    let request = FlowRequest(version: "3.0", action: .dataExchange, screen: "EXPENSE_FORM",
                                              data: submit(["amount": .string(String(amount))]), flowToken: "race")
                    let context = FlowContext(database: database, now: expenseNoon, log: .discard)
                    return try flow.checkedHandle(request, context: context)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(answers.filter { $0.successParams != nil }.count == 1)
        #expect(answers.filter(\.isTokenNoLongerValid).count == 5)
        let stored = try ExpenseStore.list(database: harness.database)
        #expect(stored.count == 1)
        #expect(answers.first { $0.successParams != nil }?.successParams?["amount"] == .string(stored[0].amount))
    }

    @Test func logsCarryNoPersonalData() throws {
        var harness = try ExpenseHarness()
        let logPath = harness.store.path + ".log"
        harness.log = Logger(level: .debug, sink: try LogSink.file(logPath))
        let token = "tok-4915112345678"
        try harness.send(.initial, token: token)
        try harness.submit(submit(["amount": "98.76", "description": "Dinner with Erika Mustermann"]), token: token)
        try harness.submit(submit(["amount": "abc", "description": "Taxi for Erika"]), token: token + "x")
        try harness.send(.dataExchange, screen: "NOWHERE", token: token + "y")
        let text = try readTextFile(logPath, what: "log")
        #expect(text.contains("expense stored"))
        expectNoPersonalData(inLog: logPath, ["4915112345678", "98.76", "Erika", "Mustermann", "Taxi", "abc", "food"])
    }

    // MARK: Operator listing and export

    @Test(arguments: Engine.all) func listIsNewestFirstWithLimitAndOffset(engine: Engine) throws {
        var harness = try ExpenseHarness(engine: engine)
        for i in 1...5 {
            harness.now = expenseNoon + Int64(i)
            try harness.submit(submit(["amount": .string("\(i)")]), token: "t\(i)")
        }
        #expect(try ExpenseStore.list(database: harness.database).map(\.id) == [5, 4, 3, 2, 1])
        #expect(try ExpenseStore.list(database: harness.database, limit: 2).map(\.amount) == ["5.00", "4.00"])
        #expect(try ExpenseStore.list(database: harness.database, limit: 2, offset: 3).map(\.id) == [2, 1])
        #expect(try ExpenseStore.list(database: harness.database, limit: 0) == [])
        #expect(try ExpenseStore.list(database: harness.database, limit: 10, offset: 9) == [])
    }

    @Test(arguments: Engine.all) func csvQuotesAndNeutralisesFormulas(engine: Engine) throws {
        let harness = try ExpenseHarness(engine: engine)
        let rows: [(String, JSONValue)] = [
            ("plain", "Team lunch"),
            ("=cmd", "Dinner, with \"friends\""),
            ("t3", "line one\nline two"),
            ("t4", "=HYPERLINK(\"http://x\",\"y\")"),
            ("t5", "+1 taxi"),
            ("t6", "-2 refund"),
            ("t7", "@SUM(A1)"),
            ("t8", .null),
        ]
        for (token, description) in rows {
            try harness.submit(submit(["description": description, "amount": "1234.5"]), token: token)
        }
        let expected = [
            "id,created_at,expense_date,amount,currency,category,description,flow_token",
            "1,2026-01-01T12:00:00Z,2025-12-31,1234.50,EUR,food,Team lunch,plain",
            "2,2026-01-01T12:00:00Z,2025-12-31,1234.50,EUR,food,\"Dinner, with \"\"friends\"\"\",'=cmd",
            "3,2026-01-01T12:00:00Z,2025-12-31,1234.50,EUR,food,\"line one\nline two\",t3",
            "4,2026-01-01T12:00:00Z,2025-12-31,1234.50,EUR,food,\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",t4",
            "5,2026-01-01T12:00:00Z,2025-12-31,1234.50,EUR,food,'+1 taxi,t5",
            "6,2026-01-01T12:00:00Z,2025-12-31,1234.50,EUR,food,'-2 refund,t6",
            "7,2026-01-01T12:00:00Z,2025-12-31,1234.50,EUR,food,'@SUM(A1),t7",
            "8,2026-01-01T12:00:00Z,2025-12-31,1234.50,EUR,food,,t8",
        ].map { $0 + "\r\n" }.joined()
        #expect(try ExpenseStore.csv(database: harness.database) == expected)
    }

    @Test func csvOfNoExpensesIsTheHeader() throws {
        let store = try ExpenseTestDatabase()
        #expect(try ExpenseStore.csv(database: store.database)
            == "id,created_at,expense_date,amount,currency,category,description,flow_token\r\n")
    }

    @Test(arguments: [
        ("abc", "abc"), ("", ""), ("a,b", "\"a,b\""), ("say \"hi\"", "\"say \"\"hi\"\"\""), ("a\r\nb", "\"a\r\nb\""),
        ("=1+1", "'=1+1"), ("+x", "'+x"), ("-x", "'-x"), ("@x", "'@x"), ("\tx", "'\tx"), ("\rx", "\"'\rx\""),
        ("=a,b", "\"'=a,b\""), ("a=b", "a=b"), ("12.50", "12.50"),
    ])
    func csvCell(value: String, cell: String) {
        #expect(CSV.cell(value) == cell)
    }
}

// MARK: - Parsing details

@Suite("Expense amounts and dates")
struct ExpenseParsingTests {
    @Test(arguments: [
        ("1", 100), ("1.5", 150), ("1,05", 105), ("0.10", 10), ("000000000000000000001", 100), ("\u{A0}2\u{A0}", 200),
    ] as [(String, Int64)])
    func amountsParseExactly(typed: String, minor: Int64) throws {
        #expect(try ExpenseAmount.parse(typed, maxMinor: 100_000_000).get() == minor)
    }

    @Test(arguments: [0, 1, 9, 10, 99, 100, 101, 1250, 100_000_000] as [Int64])
    func amountsFormatWithTwoDecimals(minor: Int64) throws {
        let text = ExpenseAmount.format(minor: minor)
        #expect(text.split(separator: ".").last?.count == 2)
        if minor > 0 { #expect(try ExpenseAmount.parse(text, maxMinor: .max).get() == minor) }
    }

    @Test func amountAtTheBound() throws {
        #expect(try ExpenseAmount.parse("10.00", maxMinor: 1000).get() == 1000)
        #expect(throws: ExpenseInputError.self) { try ExpenseAmount.parse("10.01", maxMinor: 1000).get() }
    }

    @Test(arguments: ["2024-02-29", "2000-02-29", "1970-01-01", "2025-12-31", "9999-12-31"])
    func validDates(_ text: String) {
        #expect(ExpenseDate.isValid(text))
    }

    @Test(arguments: ["2023-02-29", "1900-02-29", "2025-13-01", "2025-00-10", "2025-04-31", "2025-1-01", "25-01-01",
                      "2025-01-01T00:00", "2025/01/01", "", "1969-12-31", "２０２５-01-01"])
    func invalidDates(_ text: String) {
        #expect(!ExpenseDate.isValid(text))
    }

    @Test func todayAndTimestamps() {
        #expect(ExpenseDate.today(now: expenseNoon, offsetSeconds: 0) == "2026-01-01")
        #expect(ExpenseDate.today(now: expenseNoon, offsetSeconds: 12 * 3600) == "2026-01-02")
        #expect(ExpenseDate.today(now: expenseNoon, offsetSeconds: -12 * 3600 - 1) == "2025-12-31")
        #expect(ISOTime.format(expenseNoon + 3723) == "2026-01-01T13:02:03Z")
    }

    @Test(arguments: [("+00:00", 0), ("-00:00", 0), ("+05:30", 19800), ("-12:00", -43200), ("+14:00", 50400)])
    func offsets(text: String, seconds: Int) {
        #expect(ExpenseDate.parseOffset(text) == seconds)
    }
}

// MARK: - The Flow JSON

@Suite("flows/expense.json")
struct ExpenseFlowJSONTests {
    @Test func fileIsAValidFlowJSON() throws {
        let checker = try FlowJSONChecker(flowFile: "expense.json")
        #expect(checker.fileProblems() == [])
        #expect(checker.entryScreens == ["EXPENSE_FORM"])
        #expect(checker.routes == ["EXPENSE_FORM": []])
    }

    @Test func footerSendsTheFieldsTheFlowReads() throws {
        let checker = try FlowJSONChecker(flowFile: "expense.json")
        let screen = try #require(checker.screens["EXPENSE_FORM"])
        let actions = FlowJSONChecker.actions(in: screen.layout)
        #expect(actions.count == 1)
        #expect(actions.first?["name"] == "data_exchange")
        let payload = try #require(actions.first?["payload"]?.objectValue)
        #expect(Set(payload.keys) == ["amount", "category", "description", "date", "currency"])
        #expect(payload["currency"] == "${data.currency}")
    }

    @Test func exampleDataMatchesWhatTheFlowSends() throws {
        // The declared examples are themselves a valid answer, so the Builder preview shows a realistic form.
        let checker = try FlowJSONChecker(flowFile: "expense.json")
        let screen = try #require(checker.screens["EXPENSE_FORM"])
        var example: [String: JSONValue] = [:]
        for (name, schema) in screen.data { example[name] = schema["__example__"] }
        let request = FlowRequest(version: "3.0", action: .initial, screen: "", data: [:], flowToken: "t")
        #expect(checker.problems(request: request, answer: .screen("EXPENSE_FORM", data: example)) == [])
        #expect(example["categories"] == ExpenseFlowTests.defaultCategories)
    }
}

// MARK: - The checker itself

@Suite("FlowJSONChecker")
struct FlowJSONCheckerTests {
    /// A valid two-screen Flow; the cases below break it in one place each.
    static let valid = """
        {"version": "6.0", "data_api_version": "3.0",
         "routing_model": {"FIRST": ["SECOND"], "SECOND": []},
         "screens": [
          {"id": "FIRST", "data": {"items": {"type": "array", "items": {"type": "object",
              "properties": {"id": {"type": "string"}, "title": {"type": "string"}}},
              "__example__": [{"id": "a", "title": "A"}]}},
           "layout": {"type": "SingleColumnLayout", "children": [
             {"type": "Dropdown", "name": "pick", "label": "Pick", "data-source": "${data.items}"},
             {"type": "Footer", "label": "Next", "on-click-action": {"name": "navigate",
               "next": {"type": "screen", "name": "SECOND"}, "payload": {"choice": "${form.pick}", "count": 2}}}]}},
          {"id": "SECOND", "terminal": true, "data": {"choice": {"type": "string", "__example__": "a"},
            "count": {"type": "integer", "__example__": 2}},
           "layout": {"type": "SingleColumnLayout", "children": [
             {"type": "TextBody", "text": "${data.choice}"},
             {"type": "TextBody", "text": "${screen.FIRST.form.pick}"},
             {"type": "Footer", "label": "Done", "on-click-action": {"name": "data_exchange",
               "payload": {"choice": "${data.choice}"}}}]}}]}
        """

    @Test func validFileHasNoProblems() throws {
        #expect(try FlowJSONChecker(text: Self.valid).fileProblems() == [])
    }

    @Test(arguments: [
        ("\"FIRST\": [\"SECOND\"], \"SECOND\": []", "\"FIRST\": [\"SECOND\"], \"SECOND\": [\"FIRST\"]", "cycle"),
        ("\"FIRST\": [\"SECOND\"], \"SECOND\": []", "\"FIRST\": [\"SECOND\", \"THIRD\"], \"SECOND\": []",
         "unknown screen THIRD"),
        ("\"FIRST\": [\"SECOND\"], \"SECOND\": []", "\"FIRST\": [], \"SECOND\": []", "exactly one entry screen"),
        ("\"FIRST\": [\"SECOND\"], \"SECOND\": []", "\"FIRST\": [\"SECOND\"]", "SECOND is missing from routing_model"),
        ("\"FIRST\": [\"SECOND\"], \"SECOND\": []", "\"FIRST\": [\"SECOND\", \"SUCCESS\"], \"SECOND\": []",
         "completion is implicit"),
        ("\"data-source\": \"${data.items}\"", "\"data-source\": \"${data.things}\"", "${data.things} is not declared"),
        ("\"choice\": \"${form.pick}\"", "\"choice\": \"${form.pik}\"", "${form.pik} names no component"),
        ("\"text\": \"${screen.FIRST.form.pick}\"", "\"text\": \"${screen.ZERO.form.pick}\"", "names no known screen"),
        ("\"name\": \"SECOND\"}", "\"name\": \"FIRST\"}", "navigate to FIRST is not an edge"),
        ("\"choice\": \"${form.pick}\", \"count\": 2}", "\"chosen\": \"${form.pick}\", \"count\": 2}",
         "navigate payload chosen is not declared in SECOND"),
        ("\"choice\": \"${form.pick}\", \"count\": 2}", "\"choice\": \"${form.pick}\"}",
         "navigate payload to SECOND leaves out data.count, which SECOND declares"),
        (#""__example__": [{"id": "a", "title": "A"}]}"#,
         #""__example__": [{"id": "a", "title": "A"}]}, "error_message": {"type": "string", "__example__": ""}"#,
         "FIRST: declares data.error_message, which the layout does not show"),
        ("{\"id\": \"SECOND\", \"terminal\": true,", "{\"id\": \"SECOND\",", "must be `terminal: true`"),
        ("\"__example__\": 2", "\"__example__\": \"2\"", "expected integer"),
        ("\"count\": {\"type\": \"integer\", \"__example__\": 2}", "\"count\": {\"type\": \"integer\"}",
         "needs an `__example__`"),
        ("\"data_api_version\": \"3.0\"", "\"data_api_version\": \"2.0\"", "data_api_version"),
        ("{\"id\": \"SECOND\"", "{\"id\": \"SUCCESS\"", "reserved"),
        ("\"name\": \"data_exchange\"", "\"name\": \"teleport\"", "unknown action teleport"),
    ])
    func brokenFileIsReported(original: String, replacement: String, expected: String) throws {
        let text = Self.valid.replacing(original, with: replacement)
        #expect(text != Self.valid, "the case must change the document")
        let problems = try FlowJSONChecker(text: text).fileProblems()
        #expect(problems.contains { $0.contains(expected) }, "\(problems)")
    }

    @Test func everyFlowAnswerInTheTestsIsChecked() throws {
        // Tests call a flow through `checkedHandle` (Support.swift), which checks the answer against the Flow JSON;
        // calling the flow's own method (`handle` with a `context:` argument) would produce an unchecked answer.
        let call = "." + "handle(", argument = "context" + ":"  // split so that this file does not match itself
        let directory = FlowJSONChecker.repositoryRoot + "/Tests/FlowCoreTests"
        var direct: [String] = []
        for file in try listDirectory(directory) where file.hasSuffix(".swift") {
            let lines = try readTextFile(directory + "/" + file, what: "test source").split(separator: "\n")
            for (number, line) in lines.enumerated() where line.contains(call) && line.contains(argument) {
                direct.append("\(file):\(number + 1)")
            }
        }
        #expect(direct == [])
    }

    @Test func shippedFlowsHaveDistinctScreenIDs() {
        // `ClientCall.open` finds the Flow JSON of an answer from its screen ids.
        let ids = FlowJSONChecker.shipped.values.flatMap(\.screenOrder)
        #expect(FlowJSONChecker.shipped.count == FlowRegistry.all.count)
        #expect(!ids.isEmpty)
        #expect(Set(ids).count == ids.count, "\(ids)")
    }

    @Test func everyDeclaredFieldIsRequiredErrorMessageIncluded() throws {
        // A screen that shows `${data.error_message}` declares it, and then every answer must carry it.
        let declared = #""__example__": [{"id": "a", "title": "A"}]}, "error_message": {"type": "string", "#
            + #""__example__": ""}"#
        let shown = #"{"type": "TextBody", "text": "${data.error_message}"}, {"type": "Dropdown""#
        let text = Self.valid.replacing(#""__example__": [{"id": "a", "title": "A"}]}"#, with: declared)
            .replacing(#"{"type": "Dropdown""#, with: shown)
        let checker = try FlowJSONChecker(text: text)
        #expect(checker.fileProblems() == [])
        let request = FlowRequest(version: "3.0", action: .initial, screen: "", data: [:], flowToken: "tok")
        let items: [String: JSONValue] = ["items": [["id": "a", "title": "A"]]]
        #expect(checker.problems(request: request, answer: .screen("FIRST", data: items))
            == ["FIRST: declared data.error_message is missing"])
        #expect(checker.problems(request: request, answer: .prepared(PreparedScreen("FIRST", data: items)))
            == ["FIRST: declared data.error_message is missing"])
        #expect(checker.problems(request: request,
                                 answer: .screen("FIRST", data: items.merging(["error_message": ""]) { $1 })) == [])
    }

    @Test func answersAreCheckedAgainstDataAndRouting() throws {
        let checker = try FlowJSONChecker(text: Self.valid)
        func request(_ action: FlowAction, _ screen: String) -> FlowRequest {
            FlowRequest(version: "3.0", action: action, screen: screen, data: [:], flowToken: "tok")
        }
        let first: [String: JSONValue] = ["items": [["id": "a", "title": "A"]]]
        #expect(checker.problems(request: request(.initial, ""), answer: .screen("FIRST", data: first)) == [])
        #expect(checker.problems(request: request(.dataExchange, "FIRST"),
                                 answer: .screen("FIRST", data: first.merging(["error_message": "x"]) { $1 })) == [])
        #expect(checker.problems(request: request(.dataExchange, "FIRST"),
                                 answer: .screen("SECOND", data: ["choice": "a", "count": 1])) == [])
        #expect(checker.problems(request: request(.dataExchange, "SECOND"),
                                 answer: .success(params: ["flow_token": "tok"])) == [])
        #expect(checker.problems(request: request(.back, "SECOND"), answer: .screen("FIRST", data: first)) == [])
        #expect(checker.problems(request: request(.initial, ""), answer: .tokenNoLongerValid(message: "x")) == [])

        let wrong: [(FlowRequest, FlowAnswer, String)] = [
            (request(.initial, ""), .screen("SECOND", data: ["choice": "a", "count": 1]), "not the entry screen"),
            (request(.dataExchange, "SECOND"), .screen("FIRST", data: first), "neither a refresh nor an edge"),
            (request(.dataExchange, "FIRST"), .screen("THIRD", data: [:]), "unknown screen THIRD"),
            (request(.dataExchange, "FIRST"), .screen("FIRST", data: [:]), "data.items is missing"),
            (request(.dataExchange, "FIRST"), .screen("FIRST", data: first.merging(["extra": 1]) { $1 }),
             "data.extra is not declared"),
            (request(.dataExchange, "FIRST"), .screen("FIRST", data: ["items": [["id": 1, "title": "A"]]]),
             "data.items[0].id: expected string"),
            (request(.dataExchange, "FIRST"), .screen("FIRST", data: ["items": [["id": "a", "name": "A"]]]),
             "data.items[0].name is not declared"),
            (request(.dataExchange, "FIRST"), .screen("SECOND", data: ["choice": "a", "count": "1.5"]),
             "expected integer"),
            (request(.dataExchange, "SECOND"), .success(params: ["flow_token": "other"]), "flow_token"),
            (request(.initial, ""), .success(params: ["flow_token": "tok"]), "SUCCESS answered to INIT"),
            (request(.dataExchange, "ELSEWHERE"), .screen("SECOND", data: ["choice": "a", "count": 1]),
             "unknown screen ELSEWHERE"),
            (request(.dataExchange, "FIRST"), .screen("FIRST", data: first.merging(["error_message": 1]) { $1 }),
             "data.error_message is not a string"),
            // A prepared answer is checked on the bytes it sends, like any other.
            (request(.initial, ""), .prepared(PreparedScreen("FIRST", data: [:])), "data.items is missing"),
            (request(.initial, ""), .prepared(PreparedScreen("FIRST", data: first.merging(["extra": 1]) { $1 })),
             "data.extra is not declared"),
            (request(.initial, ""), .prepared(PreparedScreen("SECOND", data: ["choice": "a", "count": 1])),
             "not the entry screen"),
        ]
        for (request, answer, expected) in wrong {
            let problems = checker.problems(request: request, answer: answer)
            #expect(problems.contains { $0.contains(expected) }, "\(answer): \(problems)")
        }
    }
}
