/// What can be booked: departments, locations (and which departments each offers), opening hours, slot length,
/// capacity, time zone and how far ahead. Operator-edited JSON, validated at startup.
///
/// The file named by `APPOINTMENT_CATALOG` (the built-in default, identical to the shipped
/// `flows/appointment.catalog.json`, when unset):
///
///     {
///         "time_zone": "Europe/London",         IANA name; the process's TZ is set to it (one business per process)
///         "days_ahead": 14,                     dates offered: today and the next 13 days (1 to 90)
///         "slot_minutes": 30,                   slot length (5 to 480); slots start at each opening time
///         "capacity": 1,                        bookings per slot, optional (default 1, at most 1000)
///         "min_notice_minutes": 0,              slots starting sooner than this are disabled, optional (default 0)
///         "departments": [{"id": "beauty", "title": "Beauty & Personal Care"}, ...],
///         "locations": [
///             {"id": "1", "title": "King’s Cross, London", "departments": ["beauty", ...],
///              "hours": {...}, "capacity": 2, "closed_dates": [...]}     the last three optional, per location
///         ],
///         "hours": {"monday": ["09:00-12:30", "13:30-17:00"], ..., "sunday": []},
///         "closed_dates": ["2026-12-25"]        optional: days every location is closed
///     }
///
/// Ids are 1 to 64 letters, digits, `_` or `-`; titles 1 to 30 characters (WhatsApp's Dropdown limit). Hours map
/// `monday` ... `sunday` to `HH:MM-HH:MM` ranges (end may be `24:00`), in order and not overlapping; a day left out
/// or `[]` is closed. A location's `hours` replaces the catalog's for that location. A slot is one department at one
/// location at one date and time; `capacity` bookings fit in it. Keys starting with `_` are comments and ignored;
/// any other unknown key is an error, so a typo never silently closes a day.
public struct AppointmentCatalog: Sendable, Equatable {
    /// A department or location as the user sees it.
    public struct Item: Sendable, Equatable {
        /// Stored and sent back to the business, e.g. `beauty`.
        public let id: String
        /// Shown in the dropdown, e.g. `Beauty & Personal Care`.
        public let title: String
    }

    /// Opening hours for each weekday, as minute ranges (start inclusive, end exclusive) since midnight.
    public struct WeeklyHours: Sendable, Equatable {
        /// Seven entries, Monday first; an empty entry is a closed day.
        public let days: [[Range<Int>]]

        /// Slot start times (minutes since midnight) on `weekday` (0 = Monday) for slots of `slotMinutes`.
        public func slotStarts(weekday: Int, slotMinutes: Int) -> [Int] {
            var starts: [Int] = []
            for range in days[weekday] {
                var start = range.lowerBound
                while start + slotMinutes <= range.upperBound {
                    starts.append(start)
                    start += slotMinutes
                }
            }
            return starts
        }
    }

    /// A place where appointments happen.
    public struct Location: Sendable, Equatable {
        /// Stored and sent back to the business, e.g. `1`.
        public let id: String
        /// Shown in the dropdown, e.g. `King’s Cross, London`.
        public let title: String
        /// The department ids offered here, in catalog order.
        public let departments: [String]
        /// Its opening hours (its own, or the catalog's).
        public let hours: WeeklyHours
        /// Bookings per slot here.
        public let capacity: Int
        /// Days this location is closed (its own and the catalog's).
        public let closedDates: Set<AppointmentDate>
    }

    /// The IANA time zone of the business, e.g. `Europe/London`.
    public let timeZone: String
    /// How many days are offered, today included.
    public let daysAhead: Int
    /// The length of a slot in minutes.
    public let slotMinutes: Int
    /// Slots starting sooner than this many minutes from now are disabled.
    public let minNoticeMinutes: Int
    /// Every department, in catalog order.
    public let departments: [Item]
    /// Every location, in catalog order.
    public let locations: [Location]

    /// The department `id`, if the catalog has it.
    public func department(_ id: String) -> Item? { departments.first { $0.id == id } }

    /// The location `id`, if the catalog has it.
    public func location(_ id: String) -> Location? { locations.first { $0.id == id } }

    /// Slot start times (minutes since midnight) at `location` on `date`; empty when closed.
    public func slotStarts(at location: Location, on date: AppointmentDate) -> [Int] {
        if location.closedDates.contains(date) { return [] }
        return location.hours.slotStarts(weekday: date.weekday, slotMinutes: slotMinutes)
    }

    /// The days offered at `location` from `today`: the next `daysAhead` days on which it opens.
    public func openDates(at location: Location, from today: AppointmentDate) -> [AppointmentDate] {
        (0..<daysAhead).map { today.adding(days: $0) }.filter { !slotStarts(at: location, on: $0).isEmpty }
    }

    // MARK: - Loading

    /// Reads and validates the catalog file at `path`.
    /// - Throws: `ConfigError` naming `APPOINTMENT_CATALOG`, the file and the field.
    public static func load(path: String) throws(ConfigError) -> AppointmentCatalog {
        let text = try readTextFile(path, what: "APPOINTMENT_CATALOG")
        return try parse(text, source: "APPOINTMENT_CATALOG \(path)")
    }

    /// Validates catalog JSON `text`; errors start with `source` (e.g. the setting and file name).
    public static func parse(_ text: String, source: String) throws(ConfigError) -> AppointmentCatalog {
        let root: JSONValue
        do {
            root = try JSONParser.parse(text)
        } catch {
            throw ConfigError("\(source): not valid JSON: \(error)")
        }
        return try CatalogReader(source: source).catalog(root)
    }

    /// The catalog used when `APPOINTMENT_CATALOG` is not set: Meta's demo departments and London locations.
    /// - Throws: `ConfigError` only when this machine lacks the Europe/London zone (tzdata not installed).
    public static func builtIn() throws(ConfigError) -> AppointmentCatalog {
        try parse(builtInJSON, source: "built-in appointment catalog (APPOINTMENT_CATALOG is not set)")
    }

    /// The text of the built-in catalog (the same as the shipped `flows/appointment.catalog.json`).
    public static let builtInJSON = """
        {
            "_comment": [
                "flows-fcgi appointment catalog: set APPOINTMENT_CATALOG to the path of this file.",
                "Keys starting with _ are comments. capacity: bookings per slot, a slot being one department",
                "at one location at one start time; a location may set its own capacity, hours, closed_dates."
            ],
            "time_zone": "Europe/London",
            "days_ahead": 14,
            "slot_minutes": 30,
            "capacity": 1,
            "min_notice_minutes": 0,
            "departments": [
                {"id": "shopping", "title": "Shopping & Groceries"},
                {"id": "clothing", "title": "Clothing & Apparel"},
                {"id": "home", "title": "Home Goods & Decor"},
                {"id": "electronics", "title": "Electronics & Appliances"},
                {"id": "beauty", "title": "Beauty & Personal Care"}
            ],
            "locations": [
                {
                    "id": "1",
                    "title": "King’s Cross, London",
                    "departments": ["shopping", "clothing", "home", "electronics", "beauty"]
                },
                {
                    "id": "2",
                    "title": "Oxford Street, London",
                    "departments": ["shopping", "clothing", "beauty"]
                },
                {
                    "id": "3",
                    "title": "Covent Garden, London",
                    "departments": ["clothing", "home", "beauty"],
                    "hours": {
                        "monday": ["10:00-18:00"],
                        "tuesday": ["10:00-18:00"],
                        "wednesday": ["10:00-18:00"],
                        "thursday": ["10:00-20:00"],
                        "friday": ["10:00-20:00"],
                        "saturday": ["10:00-18:00"],
                        "sunday": ["12:00-17:00"]
                    }
                },
                {
                    "id": "4",
                    "title": "Piccadilly Circus, London",
                    "departments": ["shopping", "home", "electronics"]
                }
            ],
            "_hours": [
                "HH:MM-HH:MM ranges per weekday (an end may be 24:00); a day left out or [] is closed;",
                "a location's own hours replace these for that location"
            ],
            "hours": {
                "monday": ["09:00-12:30", "13:30-17:00"],
                "tuesday": ["09:00-12:30", "13:30-17:00"],
                "wednesday": ["09:00-12:30", "13:30-17:00"],
                "thursday": ["09:00-12:30", "13:30-17:00"],
                "friday": ["09:00-12:30", "13:30-17:00"],
                "saturday": ["10:00-16:00"],
                "sunday": []
            },
            "closed_dates": ["2026-12-25", "2026-12-26", "2027-01-01"]
        }
        """
}

/// Walks the catalog JSON, turning every problem into a `ConfigError` that names the source and the field.
private struct CatalogReader {
    let source: String

    static let weekdays = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]

    func fail(_ path: String, _ reason: String) -> ConfigError {
        ConfigError("\(source): \(path): \(reason)")
    }

    /// The members of an object, refusing unknown keys (keys starting with `_` are comments).
    func object(_ value: JSONValue?, _ path: String, keys: Set<String>) throws(ConfigError) -> [String: JSONValue] {
        guard let members = value?.objectValue else { throw fail(path, "expected an object") }
        for key in members.keys.sorted() where !keys.contains(key) && !key.hasPrefix("_") {
            throw fail(path, "unknown key \"\(key)\" (expected \(keys.sorted().joined(separator: ", ")))")
        }
        return members
    }

    func array(_ value: JSONValue?, _ path: String) throws(ConfigError) -> [JSONValue] {
        guard let value else { throw fail(path, "missing") }
        guard let elements = value.arrayValue else { throw fail(path, "expected an array") }
        return elements
    }

    func string(_ value: JSONValue?, _ path: String) throws(ConfigError) -> String {
        guard let value else { throw fail(path, "missing") }
        guard let text = value.stringValue else { throw fail(path, "expected a string") }
        return text
    }

    func integer(_ value: JSONValue?, _ path: String, default defaultValue: Int?, range: ClosedRange<Int>)
        throws(ConfigError) -> Int
    {
        guard let value else {
            guard let defaultValue else { throw fail(path, "missing") }
            return defaultValue
        }
        guard case .number(let text) = value, let number = Int(text), range.contains(number) else {
            throw fail(path, "expected a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return number
    }

    func identifier(_ value: JSONValue?, _ path: String) throws(ConfigError) -> String {
        let id = try string(value, path)
        let valid = id.utf8.allSatisfy { byte in
            (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
        }
        guard !id.isEmpty, id.utf8.count <= 64, valid else {
            throw fail(path, "\"\(id)\" is not a valid id (1 to 64 letters, digits, _ or -)")
        }
        return id
    }

    func title(_ value: JSONValue?, _ path: String) throws(ConfigError) -> String {
        let text = try string(value, path)
        guard !text.isEmpty, text.count <= 30, !text.unicodeScalars.contains(where: { $0.value < 0x20 }) else {
            throw fail(path, "a title needs 1 to 30 characters on one line (the WhatsApp Dropdown limit)")
        }
        return text
    }

    func item(_ value: JSONValue, _ path: String) throws(ConfigError) -> AppointmentCatalog.Item {
        let members = try object(value, path, keys: ["id", "title"])
        return AppointmentCatalog.Item(id: try identifier(members["id"], path + ".id"),
                                       title: try title(members["title"], path + ".title"))
    }

    func hours(_ value: JSONValue?, _ path: String, slotMinutes: Int)
        throws(ConfigError) -> AppointmentCatalog.WeeklyHours
    {
        let members = try object(value, path, keys: Set(CatalogReader.weekdays))
        var days: [[Range<Int>]] = []
        for name in CatalogReader.weekdays {
            let dayPath = "\(path).\(name)"
            var ranges: [Range<Int>] = []
            for (index, element) in try array(members[name] ?? .array([]), dayPath).enumerated() {
                let rangePath = "\(dayPath)[\(index)]"
                let text = try string(element, rangePath)
                let parts = text.split(separator: "-", omittingEmptySubsequences: false)
                guard parts.count == 2, let start = ClockTime.parse(parts[0]),
                    let end = ClockTime.parse(parts[1], allowMidnightEnd: true)
                else {
                    throw fail(rangePath, "\"\(text)\" is not a range like \"09:00-17:30\"")
                }
                guard start < end else { throw fail(rangePath, "\"\(text)\" ends before it starts") }
                guard end - start >= slotMinutes else {
                    throw fail(rangePath, "\"\(text)\" is shorter than one slot of \(slotMinutes) minutes")
                }
                if let previous = ranges.last, start < previous.upperBound {
                    throw fail(rangePath, "\"\(text)\" overlaps or comes before the range before it")
                }
                ranges.append(start..<end)
            }
            days.append(ranges)
        }
        let weekly = AppointmentCatalog.WeeklyHours(days: days)
        for (index, name) in CatalogReader.weekdays.enumerated()
        where weekly.slotStarts(weekday: index, slotMinutes: slotMinutes).count > 200 {
            throw fail("\(path).\(name)", "more than 200 slots in a day (the WhatsApp Dropdown limit): "
                + "use longer slots or shorter hours")
        }
        return weekly
    }

    func dates(_ value: JSONValue?, _ path: String) throws(ConfigError) -> Set<AppointmentDate> {
        guard let value else { return [] }
        var result: Set<AppointmentDate> = []
        for (index, element) in try array(value, path).enumerated() {
            let text = try string(element, "\(path)[\(index)]")
            guard let date = AppointmentDate(text) else {
                throw fail("\(path)[\(index)]", "\"\(text)\" is not a date like 2026-12-25")
            }
            result.insert(date)
        }
        return result
    }

    func catalog(_ root: JSONValue) throws(ConfigError) -> AppointmentCatalog {
        let members = try object(root, "the document", keys: [
            "time_zone", "days_ahead", "slot_minutes", "capacity", "min_notice_minutes", "departments", "locations",
            "hours", "closed_dates",
        ])
        let timeZone = try string(members["time_zone"], "time_zone")
        guard BusinessTimeZone.isKnown(timeZone) else {
            throw fail("time_zone", "\"\(timeZone)\" is not a time zone this machine knows (an IANA name such as "
                + "Europe/London, from /usr/share/zoneinfo: install tzdata)")
        }
        let daysAhead = try integer(members["days_ahead"], "days_ahead", default: nil, range: 1...90)
        let slotMinutes = try integer(members["slot_minutes"], "slot_minutes", default: nil, range: 5...480)
        let capacity = try integer(members["capacity"], "capacity", default: 1, range: 1...1000)
        let notice = try integer(members["min_notice_minutes"], "min_notice_minutes", default: 0, range: 0...10_080)

        var departments: [AppointmentCatalog.Item] = []
        let rawDepartments = try array(members["departments"], "departments")
        guard !rawDepartments.isEmpty, rawDepartments.count <= 200 else {
            throw fail("departments", "expected 1 to 200 departments")
        }
        for (index, value) in rawDepartments.enumerated() {
            let department = try item(value, "departments[\(index)]")
            guard !departments.contains(where: { $0.id == department.id }) else {
                throw fail("departments[\(index)].id", "\"\(department.id)\" appears twice")
            }
            departments.append(department)
        }

        let defaultHours = try hours(members["hours"], "hours", slotMinutes: slotMinutes)
        let closed = try dates(members["closed_dates"], "closed_dates")

        var locations: [AppointmentCatalog.Location] = []
        let rawLocations = try array(members["locations"], "locations")
        guard !rawLocations.isEmpty, rawLocations.count <= 200 else {
            throw fail("locations", "expected 1 to 200 locations")
        }
        for (index, value) in rawLocations.enumerated() {
            let path = "locations[\(index)]"
            let fields = try object(value, path, keys: ["id", "title", "departments", "hours", "capacity",
                                                        "closed_dates"])
            let id = try identifier(fields["id"], path + ".id")
            guard !locations.contains(where: { $0.id == id }) else {
                throw fail(path + ".id", "\"\(id)\" appears twice")
            }
            let title = try title(fields["title"], path + ".title")
            var offered: [String] = []
            let rawOffered = try array(fields["departments"], path + ".departments")
            guard !rawOffered.isEmpty else { throw fail(path + ".departments", "a location needs a department") }
            for (position, element) in rawOffered.enumerated() {
                let departmentPath = "\(path).departments[\(position)]"
                let department = try string(element, departmentPath)
                guard departments.contains(where: { $0.id == department }) else {
                    throw fail(departmentPath, "unknown department \"\(department)\" (not in departments)")
                }
                guard !offered.contains(department) else {
                    throw fail(departmentPath, "\"\(department)\" appears twice")
                }
                offered.append(department)
            }
            let ownHours = fields["hours"] == nil
                ? defaultHours : try hours(fields["hours"], path + ".hours", slotMinutes: slotMinutes)
            guard ownHours.days.contains(where: { !$0.isEmpty }) else {
                throw fail(fields["hours"] == nil ? "hours" : path + ".hours",
                           "location \"\(id)\" is never open (no hours on any weekday)")
            }
            locations.append(AppointmentCatalog.Location(
                id: id, title: title,
                departments: departments.map(\.id).filter { offered.contains($0) },
                hours: ownHours,
                capacity: try integer(fields["capacity"], path + ".capacity", default: capacity, range: 1...1000),
                closedDates: closed.union(try dates(fields["closed_dates"], path + ".closed_dates"))))
        }
        for department in departments where !locations.contains(where: { $0.departments.contains(department.id) }) {
            throw fail("departments", "\"\(department.id)\" is offered by no location (add it to a location's "
                + "departments or remove it)")
        }
        return AppointmentCatalog(timeZone: timeZone, daysAhead: daysAhead, slotMinutes: slotMinutes,
                                  minNoticeMinutes: notice, departments: departments, locations: locations)
    }
}
