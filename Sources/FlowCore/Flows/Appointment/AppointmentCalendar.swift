#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

import Synchronization

/// A calendar day (Gregorian), written `YYYY-MM-DD` in ids and storage.
public struct AppointmentDate: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Days since 1970-01-01.
    public let dayNumber: Int

    /// The day `dayNumber` days after 1970-01-01.
    public init(dayNumber: Int) {
        self.dayNumber = dayNumber
    }

    /// The day `year-month-day`, or `nil` when there is no such day (2026-02-30).
    public init?(year: Int, month: Int, day: Int) {
        guard (1970...9999).contains(year), (1...12).contains(month), (1...31).contains(day) else { return nil }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = 12
        let seconds = timegm(&parts)
        let candidate = AppointmentDate(dayNumber: Int(seconds) / 86_400)
        guard candidate.year == year, candidate.month == month, candidate.day == day else { return nil }
        self = candidate
    }

    /// Parses `YYYY-MM-DD` (exactly that shape).
    public init?(_ text: String) {
        let bytes = Array(text.utf8)
        guard bytes.count == 10, bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-") else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for byte in bytes[range] {
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10) else { return nil }
        self.init(year: year, month: month, day: day)
    }

    private var broken: tm {
        var seconds = time_t(dayNumber * 86_400 + 43_200)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return parts
    }

    /// The year, e.g. 2026.
    public var year: Int { Int(broken.tm_year) + 1900 }
    /// The month, 1 to 12.
    public var month: Int { Int(broken.tm_mon) + 1 }
    /// The day of the month, 1 to 31.
    public var day: Int { Int(broken.tm_mday) }

    /// The weekday, 0 for Monday through 6 for Sunday.
    public var weekday: Int {
        // 1970-01-01 was a Thursday (3 when Monday is 0).
        ((dayNumber % 7) + 7 + 3) % 7
    }

    /// The day `count` days later (earlier when negative).
    public func adding(days count: Int) -> AppointmentDate {
        AppointmentDate(dayNumber: dayNumber + count)
    }

    /// `YYYY-MM-DD`.
    public var description: String {
        let parts = broken
        return "\(parts.tm_year + 1900)-\(twoDigits(Int(parts.tm_mon) + 1))-\(twoDigits(Int(parts.tm_mday)))"
    }

    /// What the user sees, in the style of Meta's template: `Mon Mar 02 2026`.
    public var title: String {
        let parts = broken
        let weekdays = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        return "\(weekdays[weekday]) \(months[Int(parts.tm_mon)]) \(twoDigits(Int(parts.tm_mday))) "
            + "\(parts.tm_year + 1900)"
    }

    /// Orders by day.
    public static func < (a: AppointmentDate, b: AppointmentDate) -> Bool { a.dayNumber < b.dayNumber }
}

/// `7` → `07`.
func twoDigits(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }

/// Minutes since midnight ↔ `HH:MM`.
enum ClockTime {
    /// `HH:MM` (00:00 to 23:59, or 24:00 when `allowMidnightEnd`), as minutes since midnight.
    static func parse(_ text: some StringProtocol, allowMidnightEnd: Bool = false) -> Int? {
        let bytes = Array(text.utf8)
        guard bytes.count == 5, bytes[2] == UInt8(ascii: ":") else { return nil }
        let digits = [bytes[0], bytes[1], bytes[3], bytes[4]]
        guard digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return nil }
        let values = digits.map { Int($0 - UInt8(ascii: "0")) }
        let hours = values[0] * 10 + values[1]
        let minutes = values[2] * 10 + values[3]
        guard minutes < 60 else { return nil }
        if hours == 24, minutes == 0, allowMidnightEnd { return 24 * 60 }
        guard hours < 24 else { return nil }
        return hours * 60 + minutes
    }

    /// `HH:MM` for minutes since midnight.
    static func format(_ minutes: Int) -> String {
        "\(twoDigits(minutes / 60)):\(twoDigits(minutes % 60))"
    }
}

/// A moment as the business's wall clock shows it.
struct LocalTime: Sendable, Equatable {
    /// The day.
    let date: AppointmentDate
    /// Minutes since local midnight.
    let minutes: Int
    /// Seconds east of UTC at that moment (3600 for BST).
    let utcOffsetSeconds: Int
}

/// The business time zone, applied process-wide.
///
/// One process serves one business, so the catalog's `time_zone` is set as the process's `TZ` (`setenv` + `tzset`)
/// when the flow is configured, and local times come from `localtime_r` / `mktime`. Every conversion goes through
/// one lock, so a later change of zone (tests, a second configuration) never races a conversion.
enum BusinessTimeZone {
    private static let state = Mutex<String?>(nil)

    /// Makes `name` (an IANA name such as `Europe/London`) the process's time zone.
    static func use(_ name: String) {
        state.withLock { current in
            guard current != name else { return }
            setenv("TZ", name, 1)
            tzset()
            current = name
        }
    }

    /// The zone in use (`nil` before `use`).
    static var current: String? { state.withLock { $0 } }

    /// The wall-clock reading at `epoch` seconds.
    static func local(_ epoch: Int64) -> LocalTime {
        state.withLock { _ in
            var seconds = time_t(epoch)
            var parts = tm()
            localtime_r(&seconds, &parts)
            let date = AppointmentDate(year: Int(parts.tm_year) + 1900, month: Int(parts.tm_mon) + 1,
                                       day: Int(parts.tm_mday)) ?? AppointmentDate(dayNumber: Int(epoch / 86_400))
            return LocalTime(date: date, minutes: Int(parts.tm_hour) * 60 + Int(parts.tm_min),
                             utcOffsetSeconds: Int(parts.tm_gmtoff))
        }
    }

    /// The moment the wall clock shows `minutes` past midnight on `date`, or `nil` when that reading does not exist
    /// (skipped by a daylight-saving change).
    static func epoch(of date: AppointmentDate, minutes: Int) -> Int64? {
        state.withLock { _ -> Int64? in
            var parts = tm()
            parts.tm_year = Int32(date.year - 1900)
            parts.tm_mon = Int32(date.month - 1)
            parts.tm_mday = Int32(date.day)
            parts.tm_hour = Int32(minutes / 60)
            parts.tm_min = Int32(minutes % 60)
            parts.tm_isdst = -1
            let seconds = mktime(&parts)
            guard seconds != -1, Int(parts.tm_hour) * 60 + Int(parts.tm_min) == minutes,
                Int(parts.tm_mday) == date.day
            else { return nil }
            return Int64(seconds)
        }
    }

    /// True when `name` is a zone this machine knows: `UTC`, or a TZif file under `TZDIR` or /usr/share/zoneinfo.
    static func isKnown(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 64, !name.hasPrefix("/"), !name.containsBytes(".."),
            name.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0)
                || "/_-+".unicodeScalars.contains($0)) })
        else { return false }
        let directory = getenv("TZDIR").map { String(cString: $0) } ?? "/usr/share/zoneinfo"
        let fd = open(directory + "/" + name, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var magic = [UInt8](repeating: 0, count: 4)
        let count = read(fd, &magic, 4)
        return count == 4 && magic == Array("TZif".utf8)
    }
}
