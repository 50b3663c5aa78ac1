#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization
import Testing
@testable import FlowCore

/// The names in `folder`, sorted.
func folderNames(_ folder: String) throws -> [String] {
    guard let dir = opendir(folder) else { throw MetricsError.system("list", folder) }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != ".", name != ".." { names.append(name) }
    }
    return names.sorted()
}

/// A file's bytes.
func fileBytes(_ path: String) throws -> [UInt8] { try readFile(path, what: "test file") }

/// Writes `bytes` to `path` (replacing it).
func writeBytes(_ path: String, _ bytes: [UInt8]) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    precondition(fd >= 0, "cannot write \(path)")
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
}

@Suite struct MetricsFilesTests {
    let folder = temporaryDirectory() + "/metrics"

    private func series(_ flow: String, _ status: Int = 200) -> RequestSeries {
        RequestSeries(flow: flow, action: "-", status: status)
    }

    /// A process that counted `count` requests of `flow` and exited (its lock released, its file left behind).
    private func exitedProcess(_ instance: String, flow: String, count: Int) throws {
        let metrics = try Metrics(directory: folder, instance: instance)
        let slot = metrics.makeSlot()
        for _ in 0..<count { slot.record(flow: flow, action: "-", status: 200, micros: 7_000) }
        metrics.retire()
    }

    private func names() throws -> [String] {
        try folderNames(folder)
    }

    private func hostCount(_ flow: String) throws -> Int {
        let totals = try MetricsFolder.collect(folder, read: true)!
        return totals.series[series(flow)]?.count ?? 0
    }

    @Test func theFileLayoutIsTheDocumentedOne() throws {
        let metrics = try Metrics(directory: folder, instance: "layout")
        let slot = metrics.makeSlot()
        slot.record(flow: "health", action: "-", status: 200, micros: 7_000)
        slot.record(flow: "health", action: "-", status: 200, micros: 20_000_000)
        slot.record(flow: "expense", action: "INIT", status: 421, micros: 1)
        let bytes = try fileBytes(folder + "/p-layout")
        #expect(bytes.count == 64 * 1024 && MetricsTable.slotCount == 372)
        #expect(Array(bytes[0..<8]) == Array("FLOWSMT1".utf8))
        func int(_ offset: Int, _ size: Int) -> Int {
            (0..<size).reduce(0) { $0 | Int(bytes[offset + $1]) << (8 * $1) }
        }
        #expect(int(8, 4) == MetricsTable.slotCount && int(12, 4) == 176)
        let key = Array("health\0-\0200".utf8)
        #expect(int(64, 4) == key.count)
        #expect(Array(bytes[68..<(68 + key.count)]) == key)
        // Buckets at 64 + 64: 7 ms in the second (<= 10 ms), 20 s in the last (+Inf); then the sum.
        #expect(int(128 + 8, 8) == 1 && int(128 + 8 * 11, 8) == 1 && int(128 + 8 * 12, 8) == 20_007_000)
        let second = 64 + 176
        #expect(Array(bytes[(second + 4)..<(second + 4 + 16)]) == Array("expense\0INIT\0421".utf8))
        #expect(int(second + 176, 4) == 0)
        #expect(metrics.snapshot()["flows_decryption_failures_total{flow=\"expense\"}"] == 1)
    }

    @Test func exitedFilesAreFoldedAndLiveOnesRead() throws {
        try exitedProcess("dead1", flow: "health", count: 3)
        try exitedProcess("dead2", flow: "health", count: 4)
        let live = try Metrics(directory: folder, instance: "live")
        live.makeSlot().record(flow: "health", action: "-", status: 200, micros: 1)
        #expect(try hostCount("health") == 8)
        #expect(try names() == ["accumulated", "lock", "p-live"] as [String])
        #expect(try hostCount("health") == 8)
        live.retire()
        #expect(try hostCount("health") == 8)
        #expect(try names() == ["accumulated", "lock"] as [String])
    }

    @Test func aCompactionStoppedAfterTheRenameCountsOnce() throws {
        try exitedProcess("x", flow: "health", count: 5)
        try exitedProcess("y", flow: "webhook", count: 2)
        let x = try fileBytes(folder + "/p-x"), y = try fileBytes(folder + "/p-y")
        #expect(try hostCount("health") == 5)
        // The state a crash between renaming the accumulated file and removing the folded ones leaves.
        writeBytes(folder + "/p-x", x)
        writeBytes(folder + "/p-y", y)
        try exitedProcess("z", flow: "health", count: 1)
        let totals = try MetricsFolder.collect(folder, read: true)!
        #expect(totals.series[series("health")]?.count == 6)
        #expect(totals.series[series("webhook")]?.count == 2)
        #expect(try names() == ["accumulated", "lock"] as [String])
        // The accumulated file lists what it folded last (z), not the files removed as leftovers.
        let listing = try fileBytes(folder + "/accumulated").dropFirst(MetricsTable.size)
        #expect(String(decoding: listing, as: UTF8.self) == "p-z")
    }

    @Test func aCompactionStoppedBeforeTheRenameCountsOnce() throws {
        try exitedProcess("x", flow: "health", count: 5)
        #expect(try hostCount("health") == 5)
        try exitedProcess("y", flow: "health", count: 2)
        // A crash while writing the temporary file: a partial one is left, the old accumulated and p-y stand.
        writeBytes(folder + "/accumulated.tmp", Array(repeating: 0x41, count: 1000))
        #expect(try hostCount("health") == 7)
        #expect(try names() == ["accumulated", "lock"] as [String])
        // A process that died while setting up its file left an empty `new-` file: removed, nothing counted.
        writeBytes(folder + "/new-dead-0", [])
        #expect(try hostCount("health") == 7)
        #expect(try names() == ["accumulated", "lock"] as [String])
    }

    @Test func aDamagedFileIsReportedNotFolded() throws {
        try exitedProcess("x", flow: "health", count: 1)
        writeBytes(folder + "/p-odd", Array(repeating: 0, count: 4096))
        #expect(throws: MetricsError.self) { try MetricsFolder.collect(folder, read: true) }
        #expect(try folderNames(folder).contains("p-x"))
        unlink(folder + "/p-odd")
        #expect(try hostCount("health") == 1)
    }

    @Test func recycledProcessesLeaveABoundedFolder() throws {
        for round in 0..<40 {
            try exitedProcess("r\(round)", flow: "health", count: 3)
            // What a process that stops cleanly does on its way out.
            let metrics = try Metrics(directory: folder, instance: "s\(round)")
            metrics.makeSlot().record(flow: "health", action: "-", status: 200, micros: 1)
            metrics.retire()
            try metrics.compact()
            #expect(try names() == ["accumulated", "lock"] as [String])
        }
        #expect(try hostCount("health") == 160)
    }

    @Test func manyExitedFilesAreFoldedOverSeveralPasses() throws {
        let files = MetricsFolder.foldLimit + 20
        for i in 0..<files { try exitedProcess("m\(i)", flow: "health", count: 1) }
        #expect(try hostCount("health") == files)
        #expect(try names().count == 2 + 20)
        #expect(try hostCount("health") == files)
        #expect(try names() == ["accumulated", "lock"] as [String])
    }

    @Test func aFullTableCountsTheRestAsOverflow() {
        let metrics = Metrics(instance: "full")
        let slot = metrics.makeSlot()
        let extra = 10
        for i in 0..<(MetricsTable.slotCount + extra) {
            slot.record(flow: "f\(i)", action: "-", status: 200, micros: 1)
        }
        let totals = metrics.table.totals()
        #expect(totals.series.count == MetricsTable.slotCount)
        #expect(totals.series[MetricsTable.overflow]?.count == extra + 1)
        #expect(totals.series.values.reduce(0) { $0 + $1.count } == MetricsTable.slotCount + extra)
    }

    @Test func concurrentReadersSeeWholeKeysAndGrowingCounts() throws {
        let writers = 4, perWriter = 20_000, flows = 40
        let process = try Metrics(directory: folder, instance: "busy")
        let done = Atomic<Int>(0)
        var threads: [Thread] = []
        for w in 0..<writers {
            let slot = process.makeSlot()
            threads.append(Thread {
                for i in 0..<perWriter {
                    // New series keep appearing while readers read.
                    slot.record(flow: "flow\((i * 7 + w) % flows)", action: "-", status: 200, micros: i % 3_000_000)
                }
                done.add(1, ordering: .relaxed)
            })
        }
        // Exited processes folded while the writers write, by two readers at once.
        for e in 0..<4 { try exitedProcess("gone\(e)", flow: "flow0", count: 10) }
        let problems = Mutex<[String]>([])
        var readers: [Thread] = []
        for _ in 0..<2 {
            readers.append(Thread { [folder] in
                var last: [RequestSeries: Int] = [:]
                var finalPass = false
                while true {
                    finalPass = done.load(ordering: .relaxed) == writers
                    guard let totals = try? MetricsFolder.collect(folder, read: true) else {
                        problems.withLock { $0.append("scrape failed") }
                        return
                    }
                    for (key, counts) in totals.series {
                        if !key.flow.hasPrefix("flow") || Int(key.flow.dropFirst(4)).map({ $0 >= flows }) ?? true
                            || key.action != "-" || key.status != 200
                        {
                            problems.withLock { $0.append("torn key \(key)") }
                        }
                        if counts.count < last[key] ?? 0 { problems.withLock { $0.append("count went down") } }
                        last[key] = counts.count
                    }
                    if finalPass { break }
                }
                let total = last.values.reduce(0, +)
                if total != writers * perWriter + 40 { problems.withLock { $0.append("final total \(total)") } }
            })
        }
        for thread in threads + readers { thread.join() }
        #expect(problems.withLock { $0 }.isEmpty, "\(problems.withLock { $0 }.prefix(5))")
        let totals = try MetricsFolder.collect(folder, read: true)!
        #expect(totals.series.count == flows)
        #expect(totals.series.values.reduce(0) { $0 + $1.count } == writers * perWriter + 40)
        #expect(try names() == ["accumulated", "lock", "p-busy"] as [String])
    }
}
