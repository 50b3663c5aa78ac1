#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Testing
import FlowCore

/// Bugs the fuzz targets (`Fuzz/`, `scripts/fuzz`) found, each reproduced through the public API. The inputs that
/// found them are kept in `Fuzz/regressions/<target>/` and replayed by `scripts/fuzz --short`.
@Suite("Fuzz findings")
struct FuzzFindingsTests {
    /// FuzzAppointment: the "appointment booked" line carries the slot's `time`, which in JSON format gave the line
    /// two `time` members (the timestamp and the slot), so a reader keeping the last one lost the timestamp.
    @Test func jsonLogFieldsNamedLikeTheLineMembersKeepTheLineAJSONObject() throws {
        let directory = temporaryDirectory()
        let path = directory + "/flows.log"
        defer {
            unlink(path)
            rmdir(directory)
        }
        let log = Logger(level: .debug, sink: try LogSink.file(path), format: .json)
        log.info("appointment booked", ["booking": "1", "time": "11:30", "level": "x", "msg": "y"])
        let line = try readTextFile(path, what: "log")
        let value = try JSONParser.parse(line.hasSuffix("\n") ? String(line.dropLast()) : line)
        #expect(value["msg"] == "appointment booked")
        #expect(value["level"] == "info")
        let time = try #require(value["time"]?.stringValue)
        #expect(time.utf8.count == 20 && time.hasSuffix("Z"))
        #expect(value["field_time"] == "11:30")
        #expect(value["field_level"] == "x")
        #expect(value["field_msg"] == "y")
        #expect(value["booking"] == "1")
    }
}
