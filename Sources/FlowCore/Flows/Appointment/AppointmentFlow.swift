/// The appointment booking flow, served at `.../flows/appointment` (Flow JSON: `flows/appointment.json`), compatible
/// with Meta's "Book an Appointment" template, with real availability and real bookings.
///
/// Screens: APPOINTMENT (department, location, date and time dropdowns; `refresh_on_back`) → DETAILS (name, email,
/// phone, further details) → SUMMARY (confirm; TERMS opens from its opt-in) → SUCCESS.
/// - INIT: APPOINTMENT with every list and the three `is_*_enabled` flags false. INIT only reads (is the token
///   completed or expired?); the token's session is created by its first data_exchange or BACK.
/// - data_exchange on APPOINTMENT (`trigger` department_selected / location_selected / date_selected): APPOINTMENT
///   with the lists narrowed to the choices (locations offering the department, open dates at the location, the
///   times of the date) and the flags recomputed. Past times and full slots come with `enabled: false`, as do dates
///   without a free slot.
/// - data_exchange on DETAILS: SUMMARY, or DETAILS with the same data and an `error_message`.
/// - data_exchange on SUMMARY: the booking is written (check and insert in one `BEGIN IMMEDIATE` transaction), then
///   SUCCESS with `params` `flow_token`, `booking_id`, `department`, `location`, `date`, `time`, `starts_at` and
///   `appointment`; SUMMARY with an `error_message` when the slot filled up meanwhile.
/// - BACK: APPOINTMENT with fresh availability and the earlier choices kept where still valid.
/// - A token whose booking is made, or older than the session lifetime, gets 427 on any action, except an identical
///   retried confirm, which gets the same SUCCESS (same booking) again.
///
/// Settings: `APPOINTMENT_CATALOG` (a catalog JSON file, see `AppointmentCatalog`; default: the built-in catalog) and
/// `APPOINTMENT_SESSION_HOURS` (how long a flow token may be used after its first saved step, 1 to 720, default 24).
/// The catalog's time zone becomes the process's `TZ` (see `BusinessTimeZone`).
public struct AppointmentFlow: Flow {
    /// The settings this flow reads.
    public static let settingNames = ["APPOINTMENT_CATALOG", "APPOINTMENT_SESSION_HOURS"]

    /// How the endpoint builds the flow (registered in `FlowRegistry.all`).
    public static let factory = FlowFactory(name: "appointment", settingNames: settingNames, commands: commands) {
        settings throws(ConfigError) in try AppointmentFlow(settings: settings)
    }

    /// The screen ids of `flows/appointment.json`.
    public enum Screen {
        /// The first screen: department, location, date, time.
        public static let appointment = "APPOINTMENT"
        /// Name, email, phone, further details.
        public static let details = "DETAILS"
        /// The summary with the confirm button.
        public static let summary = "SUMMARY"
        /// The static terms.
        public static let terms = "TERMS"
    }

    /// Shown by WhatsApp (427) when the token already booked its appointment.
    public static let completedMessage = "This appointment is already booked. To book another one, ask us for a new "
        + "link in the chat."
    /// Shown by WhatsApp (427) when the token is older than the session lifetime.
    public static let expiredMessage = "This booking link has expired. Ask us for a new one in the chat."

    /// `appointment`.
    public let name = "appointment"
    /// What can be booked.
    public let catalog: AppointmentCatalog
    /// How long a flow token may be used after its session was created (its first saved step), in seconds.
    public let sessionLifetimeSeconds: Int64
    /// APPOINTMENT with nothing chosen (INIT's answer): it depends on the catalog alone, so it is built and
    /// serialized once.
    let firstScreen: PreparedScreen

    /// The flow configured by `APPOINTMENT_CATALOG` and `APPOINTMENT_SESSION_HOURS`.
    /// - Throws: `ConfigError` naming the setting, the file and the field.
    public init(settings: Settings) throws(ConfigError) {
        let catalog: AppointmentCatalog
        if let path = settings["APPOINTMENT_CATALOG"] {
            catalog = try AppointmentCatalog.load(path: path)
        } else {
            catalog = try AppointmentCatalog.builtIn()
        }
        let hours = try settings.integer("APPOINTMENT_SESSION_HOURS", default: 24, range: 1...720)
        self.init(catalog: catalog, sessionHours: hours)
    }

    /// A flow over `catalog` whose sessions last `sessionHours`; makes the catalog's time zone the process's.
    public init(catalog: AppointmentCatalog, sessionHours: Int = 24) {
        BusinessTimeZone.use(catalog.timeZone)
        self.catalog = catalog
        sessionLifetimeSeconds = Int64(sessionHours) * 3600
        firstScreen = PreparedScreen(Screen.appointment,
                                     data: AppointmentExchange.catalogLists(catalog, AppointmentChoices()))
    }

    /// The flow's tables.
    public var migrations: [Migration] { AppointmentStore.migrations }

    /// Answers one request (see the type's documentation).
    public func handle(_ request: FlowRequest, context: FlowContext) throws -> FlowAnswer {
        let exchange = AppointmentExchange(flow: self, request: request,
                                           database: try context.requireDatabase(for: name), now: context.now,
                                           log: context.log)
        return try exchange.answer()
    }
}

/// One request of the appointment flow being answered.
private struct AppointmentExchange {
    let flow: AppointmentFlow
    let request: FlowRequest
    let database: Database
    let now: Int64
    let log: Logger

    var catalog: AppointmentCatalog { flow.catalog }
    var token: String { request.flowToken }
    typealias Screen = AppointmentFlow.Screen

    func answer() throws(DatabaseError) -> FlowAnswer {
        switch request.action {
        case .initial:
            return try start()
        case .back:
            return try back()
        case .dataExchange:
            switch request.screen {
            case Screen.appointment: return try appointmentSelection()
            case Screen.details: return try details()
            case Screen.summary: return try confirm()
            case Screen.terms:
                return try gate(saving: nil) { _ throws(DatabaseError) in .screen(Screen.terms, data: [:]) }
            default:
                return try gate(saving: nil) { session throws(DatabaseError) in
                    let (choices, _) = narrow(session.choices)
                    return try appointmentScreen(choices, error: "Something went wrong on the last screen. "
                        + "Please check your choices here and continue.")
                }
            }
        }
    }

    // MARK: - Session

    /// INIT: the first screen, with nothing chosen. It only reads: a token seen before gets 427 when completed or
    /// expired, and a new token's session is created by its first saved step (so its lifetime counts from there).
    /// Choices left from an earlier visit are cleared, as before.
    func start() throws(DatabaseError) -> FlowAnswer {
        if let session = try AppointmentStore.session(database, token: token) {
            if let closed = closedAnswer(session) { return closed }
            if session.choices != AppointmentChoices() {
                return try gate(saving: AppointmentChoices()) { _ throws(DatabaseError) in
                    try appointmentScreen(AppointmentChoices(), error: nil)
                }
            }
        }
        return try appointmentScreen(AppointmentChoices(), error: nil)
    }

    /// Opens (creating if needed) the token's session in one write transaction, saving `choices` when given; a
    /// completed or expired session answers 427, otherwise `body` answers with the session (its choices updated).
    func gate(saving choices: AppointmentChoices?, _ body: (AppointmentSession) throws(DatabaseError) -> FlowAnswer)
        throws(DatabaseError) -> FlowAnswer
    {
        let session = try database.writeTransaction { () throws(DatabaseError) -> AppointmentSession in
            let session = try openSession()
            if let choices, !session.completed, !isExpired(session) {
                try AppointmentStore.saveChoices(database, token: token, choices: choices, now: now)
                return AppointmentSession(createdAt: session.createdAt, choices: choices, completed: false,
                                          bookingID: nil, submission: nil)
            }
            return session
        }
        if let closed = closedAnswer(session) { return closed }
        return try body(session)
    }

    /// The token's session, created when this is its first request (call inside a write transaction).
    func openSession() throws(DatabaseError) -> AppointmentSession {
        if let session = try AppointmentStore.session(database, token: token) { return session }
        return try AppointmentStore.createSession(database, token: token, now: now)
    }

    func isExpired(_ session: AppointmentSession) -> Bool {
        now - session.createdAt >= flow.sessionLifetimeSeconds
    }

    func closedAnswer(_ session: AppointmentSession) -> FlowAnswer? {
        if session.completed { return .tokenNoLongerValid(message: AppointmentFlow.completedMessage) }
        if isExpired(session) { return .tokenNoLongerValid(message: AppointmentFlow.expiredMessage) }
        return nil
    }

    // MARK: - Choices and availability

    /// The choices that are valid in the catalog today, in order (a later one only when the earlier are valid),
    /// and a message about the first one given but not valid.
    func narrow(_ raw: AppointmentChoices) -> (AppointmentChoices, String?) {
        var valid = AppointmentChoices()
        guard let departmentID = raw.department else { return (valid, nil) }
        guard let department = catalog.department(departmentID) else {
            return (valid, "That department is not available. Please choose another one.")
        }
        valid.department = department.id
        guard let locationID = raw.location else { return (valid, nil) }
        guard let location = catalog.location(locationID) else {
            return (valid, "That location is not available. Please choose another one.")
        }
        guard location.departments.contains(department.id) else {
            return (valid, "\(location.title) has no \(department.title) department. Please choose another location.")
        }
        valid.location = location.id
        guard let dateText = raw.date else { return (valid, nil) }
        guard let date = AppointmentDate(dateText), catalog.openDates(at: location, from: today).contains(date) else {
            return (valid, "That date is not available at \(location.title). Please choose another date.")
        }
        valid.date = date.description
        guard let timeText = raw.time else { return (valid, nil) }
        guard let minutes = ClockTime.parse(timeText), catalog.slotStarts(at: location, on: date).contains(minutes)
        else {
            return (valid, "That time is not available on \(date.title). Please choose another time.")
        }
        valid.time = ClockTime.format(minutes)
        return (valid, nil)
    }

    /// Today in the business time zone.
    var today: AppointmentDate { BusinessTimeZone.local(now).date }

    /// True when a slot starting at `minutes` on `date` starts too soon (or in the past) to be booked.
    func isTooSoon(_ date: AppointmentDate, _ minutes: Int, cutoff: LocalTime) -> Bool {
        date < cutoff.date || (date == cutoff.date && minutes <= cutoff.minutes)
    }

    /// The wall-clock time before which (inclusive) slots cannot be booked any more.
    var cutoff: LocalTime { BusinessTimeZone.local(now + Int64(catalog.minNoticeMinutes) * 60) }

    /// The slots of `dates` for one department at one location, each with whether a seat is free.
    func availability(department: String, location: AppointmentCatalog.Location, dates: [AppointmentDate])
        throws(DatabaseError) -> [(date: AppointmentDate, slots: [(minutes: Int, free: Bool)])]
    {
        guard let first = dates.first, let last = dates.last else { return [] }
        let counts = try AppointmentStore.bookedCounts(database, department: department, location: location.id,
                                                       from: first.description, through: last.description)
        let cutoff = self.cutoff
        return dates.map { date in
            let slots = catalog.slotStarts(at: location, on: date).map { minutes in
                let taken = counts["\(date.description) \(ClockTime.format(minutes))"] ?? 0
                return (minutes: minutes, free: taken < location.capacity && !isTooSoon(date, minutes, cutoff: cutoff))
            }
            return (date: date, slots: slots)
        }
    }

    /// Why the slot of `choices` (complete and valid) cannot be booked now, or `nil` when a seat is free.
    func slotProblem(_ choices: AppointmentChoices) throws(DatabaseError) -> String? {
        guard let department = choices.department, let locationID = choices.location,
            let location = catalog.location(locationID), let dateText = choices.date,
            let date = AppointmentDate(dateText), let time = choices.time, let minutes = ClockTime.parse(time)
        else { return AppointmentExchange.incompleteMessage }
        if isTooSoon(date, minutes, cutoff: cutoff) {
            return "\(time) on \(date.title) can no longer be booked. Please go back and pick another time."
        }
        let taken = try AppointmentStore.bookedCount(database, department: department, location: location.id,
                                                     date: date.description, time: time)
        if taken >= location.capacity {
            return "Sorry, \(time) on \(date.title) was just booked by someone else. Please go back and pick "
                + "another time."
        }
        return nil
    }

    static let incompleteMessage = "The appointment details are not valid any more. Please go back and choose the "
        + "department, location, date and time again."

    /// APPOINTMENT's data as far as the catalog alone decides it: the lists narrowed to `choices` and the flags,
    /// dates and times not yet listed.
    static func catalogLists(_ catalog: AppointmentCatalog, _ choices: AppointmentChoices) -> [String: JSONValue] {
        var data: [String: JSONValue] = [
            "department": .array(catalog.departments.map { item($0.id, $0.title) }),
            "is_location_enabled": .bool(choices.department != nil),
            "is_date_enabled": .bool(choices.location != nil),
            "is_time_enabled": .bool(choices.date != nil),
        ]
        let locations = catalog.locations.filter { location in
            choices.department.map { location.departments.contains($0) } ?? true
        }
        data["location"] = .array(locations.map { item($0.id, $0.title) })
        data["date"] = .array([item("none", "Choose a location first", enabled: false)])
        data["time"] = .array([item("none", "Choose a date first", enabled: false)])
        return data
    }

    static func item(_ id: String, _ title: String, enabled: Bool = true) -> JSONValue {
        enabled ? ["id": .string(id), "title": .string(title)]
            : ["id": .string(id), "title": .string(title), "enabled": false]
    }

    /// APPOINTMENT's data for valid `choices`: every list narrowed to them, the flags, and `error`.
    func appointmentScreen(_ choices: AppointmentChoices, error: String?) throws(DatabaseError) -> FlowAnswer {
        if choices == AppointmentChoices(), error == nil { return .prepared(flow.firstScreen) }
        var data = AppointmentExchange.catalogLists(catalog, choices)
        if let department = choices.department, let locationID = choices.location,
            let location = catalog.location(locationID)
        {
            let days = try availability(department: department, location: location,
                                        dates: catalog.openDates(at: location, from: today))
            let dates = days.map { day in
                AppointmentExchange.item(day.date.description, day.date.title,
                                         enabled: day.slots.contains(where: \.free))
            }
            data["date"] = .array(dates.isEmpty
                ? [AppointmentExchange.item("none", "No dates available", enabled: false)] : dates)
            if let chosen = choices.date, let day = days.first(where: { $0.date.description == chosen }) {
                data["time"] = .array(day.slots.map { slot in
                    let text = ClockTime.format(slot.minutes)
                    return AppointmentExchange.item(text, text, enabled: slot.free)
                })
            }
        }
        return .screen(Screen.appointment, data: data, errorMessage: error)
    }

    // MARK: - Screens

    /// data_exchange on APPOINTMENT: a dropdown changed.
    func appointmentSelection() throws(DatabaseError) -> FlowAnswer {
        let raw = AppointmentFields(request.data).choices
        let (choices, problem) = narrow(raw)
        return try gate(saving: choices) { _ throws(DatabaseError) in
            try appointmentScreen(choices, error: problem)
        }
    }

    /// BACK to APPOINTMENT: fresh availability, earlier choices kept where still valid.
    func back() throws(DatabaseError) -> FlowAnswer {
        try gate(saving: nil) { session throws(DatabaseError) in
            var raw = session.choices
            let sent = AppointmentFields(request.data).choices
            if sent.department != nil { raw = sent }
            let (choices, problem) = narrow(raw)
            var error = problem
            if error == nil, choices.time != nil, try slotProblem(choices) != nil {
                error = "The time you chose is no longer available. Please pick another one."
            }
            return try appointmentScreen(choices, error: error)
        }
    }

    /// data_exchange on DETAILS: validate, then SUMMARY.
    func details() throws(DatabaseError) -> FlowAnswer {
        let sent = AppointmentFields(request.data)
        var fields = sent.trimmed
        let (choices, problem) = narrow(sent.choices)
        return try gate(saving: choices) { _ throws(DatabaseError) in
            func again(_ message: String) -> FlowAnswer { detailsScreen(sent, error: message) }
            if choices.time == nil || problem != nil {
                return again(AppointmentExchange.incompleteMessage)
            }
            if let slot = try slotProblem(choices) { return again(slot) }
            if let input = AppointmentInput.problem(fields) { return again(input) }
            fields.department = choices.department ?? fields.department
            fields.location = choices.location ?? fields.location
            fields.date = choices.date ?? fields.date
            fields.time = choices.time ?? fields.time
            return summaryScreen(fields, error: nil)
        }
    }

    /// DETAILS's data: the slot chosen on APPOINTMENT (the `navigate` payload of `flows/appointment.json`), as sent.
    func detailsScreen(_ fields: AppointmentFields, error: String?) -> FlowAnswer {
        .screen(Screen.details, data: ["department": .string(fields.department), "location": .string(fields.location),
                                       "date": .string(fields.date), "time": .string(fields.time)],
                errorMessage: error)
    }

    /// The display line of a slot: `Beauty & Personal Care at King’s Cross, London` / `Mon Mar 02 2026 at 11:30`.
    func describe(department: String, location: String, date: String, time: String, separator: String) -> String {
        let departmentTitle = catalog.department(department)?.title ?? department
        let locationTitle = catalog.location(location)?.title ?? location
        let dateTitle = AppointmentDate(date)?.title ?? date
        return "\(departmentTitle) at \(locationTitle)\(separator)\(dateTitle) at \(time)"
    }

    func summaryScreen(_ fields: AppointmentFields, error: String?) -> FlowAnswer {
        var data = fields.json
        data["appointment"] = .string(describe(department: fields.department, location: fields.location,
                                               date: fields.date, time: fields.time, separator: "\n"))
        var details = "Name: \(fields.name)\nEmail: \(fields.email)\nPhone: \(fields.phone)"
        if !fields.moreDetails.isEmpty { details += "\n\n\(fields.moreDetails)" }
        data["details"] = .string(details)
        return .screen(Screen.summary, data: data, errorMessage: error)
    }

    func success(_ booking: AppointmentBooking) -> FlowAnswer {
        .success(params: [
            "flow_token": .string(token),
            "booking_id": .number(String(booking.id)),
            "department": .string(booking.department),
            "location": .string(booking.location),
            "date": .string(booking.date),
            "time": .string(booking.time),
            "starts_at": .string(booking.startsAtText),
            "appointment": .string(describe(department: booking.department, location: booking.location,
                                            date: booking.date, time: booking.time, separator: ", ")),
        ])
    }

    private enum Outcome {
        case answer(FlowAnswer)
        case booked(AppointmentBooking)
        case repeated(AppointmentBooking)
        case taken(FlowAnswer)
    }

    /// data_exchange on SUMMARY: book the slot (or recognise a retry) in one write transaction.
    func confirm() throws(DatabaseError) -> FlowAnswer {
        let sent = AppointmentFields(request.data)
        let fingerprint = sent.fingerprint
        let fields = sent.trimmed
        let (choices, problem) = narrow(sent.choices)

        let outcome = try database.writeTransaction { () throws(DatabaseError) -> Outcome in
            // The token completed by an identical confirm (a retry): its SUCCESS again; completed otherwise or
            // expired: 427. Asked first, and again whenever the slot looks taken (see below).
            func settled() throws(DatabaseError) -> Outcome? {
                let session = try openSession()
                if session.completed, session.submission == fingerprint, let id = session.bookingID,
                    let booking = try AppointmentStore.booking(database: database, id: id)
                {
                    return .repeated(booking)
                }
                return closedAnswer(session).map(Outcome.answer)
            }
            if let done = try settled() { return done }
            if choices.time == nil || problem != nil {
                return .answer(summaryScreen(sent, error: AppointmentExchange.incompleteMessage))
            }
            if let input = AppointmentInput.problem(fields) {
                return .answer(summaryScreen(sent, error: input + " Please go back and correct it."))
            }
            guard let department = choices.department, let location = choices.location, let dateText = choices.date,
                let date = AppointmentDate(dateText), let time = choices.time, let minutes = ClockTime.parse(time),
                let capacity = catalog.location(location)?.capacity
            else {
                return .answer(summaryScreen(sent, error: AppointmentExchange.incompleteMessage))
            }
            let startsAt = BusinessTimeZone.epoch(of: date, minutes: minutes)
                ?? Int64(date.dayNumber) * 86_400 + Int64(minutes) * 60
            let booking = AppointmentStore.NewBooking(
                flowToken: token, department: department, location: location, date: dateText, time: time,
                startsAt: startsAt, utcOffsetSeconds: BusinessTimeZone.local(startsAt).utcOffsetSeconds,
                name: fields.name, email: fields.email, phone: fields.phone, moreDetails: fields.moreDetails)
            // On PostgreSQL another host may take the seat, or complete this very token, between the checks and
            // the insert: the insert then adds nothing, or the count finds the slot full. Either way the session is
            // read again first (an identical confirm that completed meanwhile gets its SUCCESS again), then the
            // count. Each lost round means one more seat taken, so capacity + 1 rounds settle it.
            for _ in 0...capacity {
                if let slot = try slotProblem(choices) {
                    return try settled() ?? .taken(summaryScreen(sent, error: slot))
                }
                if let booked = try AppointmentStore.insert(database, booking, capacity: capacity, now: now) {
                    try AppointmentStore.complete(database, token: token, bookingID: booked.id,
                                                  submission: fingerprint, now: now)
                    return .booked(booked)
                }
                if let done = try settled() { return done }
            }
            return .taken(summaryScreen(sent, error: "Sorry, \(time) on \(date.title) was just booked by someone "
                + "else. Please go back and pick another time."))
        }
        switch outcome {
        case .answer(let answer):
            return answer
        case .taken(let answer):
            log.info("appointment slot already full", ["department": choices.department ?? "-",
                                                       "location": choices.location ?? "-",
                                                       "date": choices.date ?? "-", "time": choices.time ?? "-"])
            return answer
        case .booked(let booking):
            log.info("appointment booked", ["booking": String(booking.id), "department": booking.department,
                                             "location": booking.location, "date": booking.date,
                                             "time": booking.time])
            return success(booking)
        case .repeated(let booking):
            log.info("appointment confirm repeated", ["booking": String(booking.id)])
            return success(booking)
        }
    }
}
