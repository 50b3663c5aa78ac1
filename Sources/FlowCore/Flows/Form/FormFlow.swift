/// A form flow: `<name>.json` in `FLOWS_DIR` (and its optional sidecar `<name>.rules.json`), compiled once per
/// process into a `FormDefinition` and served at `.../flows/<name>`.
///
/// - INIT and BACK answer the entry screen; INIT only reads (is the token completed or expired?) and stores nothing.
/// - A `data_exchange` reads the token's session, steps the definition and saves the outcome in one `BEGIN
///   IMMEDIATE` transaction, so any process may answer any step: an invalid step gets the screen again with an
///   `error_message`; a valid one the next screen (its values kept in `form_sessions`); the terminal screen's
///   submit stores the submission once (`form_submissions`, `UNIQUE (flow, flow_token)`) and answers `SUCCESS`
///   with `params` `flow_token`, `flow` and `submission_id`.
/// - A completed token gets 427, except an identical retried completing submit, which gets the same answer again;
///   so does a token whose session is older than `FORM_SESSION_HOURS`, or one whose data was purged (tombstone).
public struct FormFlow: Flow {
    /// The setting read here.
    public static let settingNames = ["FORM_SESSION_HOURS"]
    /// Shown by WhatsApp (427) when the token already submitted.
    public static let completedMessage = "This form was already submitted. Ask us for a new link in the chat."
    /// Shown by WhatsApp (427) when the token is older than the session lifetime.
    public static let expiredMessage = "This form link has expired. Ask us for a new one in the chat."

    /// The path name, `<name>` of `<name>.json`.
    public let name: String
    /// The compiled Flow JSON.
    public let definition: FormDefinition
    /// How long a flow token may be used after its first saved step, in seconds.
    public let sessionLifetimeSeconds: Int64
    /// For each screen index: the screens a request may come from once the session's last answer showed it (the
    /// screens on a route to it, and those the phone opens from them by `navigate`).
    let reachable: [Set<Int>]

    /// A form flow `name` serving `definition`, its tokens valid `sessionHours` after their first saved step.
    public init(name: String, definition: FormDefinition, sessionHours: Int = 24) {
        self.name = name
        self.definition = definition
        sessionLifetimeSeconds = Int64(sessionHours) * 3600
        reachable = FormFlow.reachableScreens(definition)
    }

    /// `FORM_SESSION_HOURS` (1 to 720, default 24).
    public static func sessionHours(_ settings: Settings) throws(ConfigError) -> Int {
        try settings.integer("FORM_SESSION_HOURS", default: 24, range: 1...720)
    }

    /// The tables shared by every form flow.
    public var migrations: [Migration] { FormStore.migrations }

    /// Answers one request (see the type's documentation).
    /// - Throws: `StorageNotConfigured` without a database, `DatabaseError` when storage fails.
    public func handle(_ request: FlowRequest, context: FlowContext) throws -> FlowAnswer {
        let database = try context.requireDatabase(for: name)
        let today = CalendarDay.today(now: context.now)
        let token = request.flowToken
        switch request.action {
        case .initial, .back:
            let session = try FormStore.session(database: database, flow: name, token: token)
            if let closed = closed(session, now: context.now) { return closed }
            return definition.initial(today: today)
        case .dataExchange:
            return try database.writeTransaction { () throws(DatabaseError) -> FlowAnswer in
                try step(request, database: database, now: context.now, today: today)
            }
        }
    }

    /// 427 for a completed, purged or expired session; `nil` when the token may go on.
    private func closed(_ session: FormSession?, now: Int64) -> FlowAnswer? {
        guard let session else { return nil }
        if session.completed { return .tokenNoLongerValid(message: FormFlow.completedMessage) }
        if now - session.createdAt >= sessionLifetimeSeconds {
            return .tokenNoLongerValid(message: FormFlow.expiredMessage)
        }
        return nil
    }

    /// One `data_exchange`, inside the write transaction.
    private func step(_ request: FlowRequest, database: Database, now: Int64,
                      today: CalendarDay) throws(DatabaseError) -> FlowAnswer {
        let token = request.flowToken
        // The completing request as stored with the submission, to recognise an identical retry.
        var submitted: String {
            JSONValue.object(["screen": .string(request.screen), "data": .object(request.data)]).text
        }
        let session = try FormStore.session(database: database, flow: name, token: token)
        if let session, session.completed {
            return try replay(database: database, token: token, submitted: submitted)
        }
        if let closed = closed(session, now: now) { return closed }
        let collected = session?.collected ?? [:]
        if let s = definition.index[request.screen] {
            let at = session.flatMap { definition.index[$0.screen] } ?? definition.entry
            guard reachable[at].contains(s) else {
                // A screen the token cannot be on (skipping ahead, which WhatsApp's client never does): nothing is
                // stored, and no screen is answered, since going back to the entry screen is a transition the
                // routing model forbids.
                return .tokenNoLongerValid(message: FormDefinition.unknownScreenMessage)
            }
        }
        switch definition.step(screen: request.screen, payload: request.data, collected: collected, today: today) {
        case .invalid(let answer):
            return answer
        case .next(let answer, let values):
            try FormStore.save(database: database, flow: name, token: token, screen: answer.screenID ?? "",
                               collected: values, completed: false, now: now)
            return answer
        case .complete(let values):
            let id = try FormStore.submit(database: database, flow: name, token: token, values: values,
                                          submitted: submitted, answer: nil, now: now)
            try FormStore.save(database: database, flow: name, token: token, screen: request.screen, collected: [:],
                               completed: true, now: now)
            return success(token: token, id: id)
        case .completeShowing(let answer, let values):
            _ = try FormStore.submit(database: database, flow: name, token: token, values: values,
                                     submitted: submitted, answer: String(decoding: answer.clearText, as: UTF8.self),
                                     now: now)
            try FormStore.save(database: database, flow: name, token: token, screen: answer.screenID ?? "",
                               collected: [:], completed: true, now: now)
            return answer
        }
    }

    /// The same answer again for an identical retry of the completing submit, 427 for anything else.
    private func replay(database: Database, token: String, submitted: String) throws(DatabaseError) -> FlowAnswer {
        guard let completion = try FormStore.completion(database: database, flow: name, token: token),
            completion.submitted == submitted
        else { return .tokenNoLongerValid(message: FormFlow.completedMessage) }
        if let text = completion.answer, let answer = try? JSONParser.parse(text),
            let screen = answer["screen"]?.stringValue, let data = answer["data"]?.objectValue
        {
            return .screen(screen, data: data)
        }
        return success(token: token, id: completion.id)
    }

    private func success(token: String, id: Int64) -> FlowAnswer {
        .success(params: ["flow_token": .string(token), "flow": .string(name), "submission_id": .number(String(id))])
    }

    /// For each screen `t`: the screens with a route to `t` (`t` included), and the screens the phone opens from
    /// those by `navigate` (which the endpoint never sees).
    private static func reachableScreens(_ definition: FormDefinition) -> [Set<Int>] {
        let screens = definition.screens
        var predecessors = [[Int]](repeating: [], count: screens.count)
        for (s, screen) in screens.enumerated() {
            var targets: [Int] = []
            switch screen.next {
            case .complete: break
            case .single(let t): targets = [t]
            case .routes(let routes): targets = routes.map(\.next)
            }
            if case .navigate(let t) = screen.submit { targets.append(t) }
            for t in targets { predecessors[t].append(s) }
        }
        return screens.indices.map { t in
            var found: Set<Int> = [t]
            var pending = [t]
            while let s = pending.popLast() {
                for p in predecessors[s] where found.insert(p).inserted { pending.append(p) }
            }
            // Screens opened by navigate from a reachable one (and on from there).
            var opened = Array(found)
            while let s = opened.popLast() {
                if case .navigate(let n) = screens[s].submit, found.insert(n).inserted { opened.append(n) }
            }
            return found
        }
    }
}
