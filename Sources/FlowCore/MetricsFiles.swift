#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

import CFlowsAtomics
import Synchronization

/// A metrics folder or file problem, naming the file and the system's reason.
public struct MetricsError: Error, Sendable, CustomStringConvertible {
    /// The message.
    public let description: String

    init(_ message: String) { description = message }

    /// `what` failed on `path` with the current `errno`.
    static func system(_ what: String, _ path: String) -> MetricsError {
        MetricsError("metrics: cannot \(what) \(path): \(String(cString: strerror(errno)))")
    }
}

/// The counts of one request series: its latency histogram (non-cumulative buckets, whose sum is the request
/// count) and the summed latency.
struct SeriesCounts: Equatable {
    var buckets = [Int](repeating: 0, count: MetricsTable.bucketCount)
    var sumMicros = 0

    /// Requests counted.
    var count: Int { buckets.reduce(0, +) }

    static func += (total: inout SeriesCounts, more: SeriesCounts) {
        for i in total.buckets.indices { total.buckets[i] += more.buckets[i] }
        total.sumMicros += more.sumMicros
    }
}

/// What a scrape sums: every series' counts, the SQLite busy retries and the PostgreSQL counters.
struct MetricsTotals: Equatable {
    var series: [RequestSeries: SeriesCounts] = [:]
    var busyRetries = 0
    /// The `PostgresCounter` values, by raw value.
    var postgres = [Int](repeating: 0, count: PostgresCounter.allCases.count)

    static func += (total: inout MetricsTotals, more: MetricsTotals) {
        for (key, counts) in more.series { total.series[key, default: SeriesCounts()] += counts }
        total.busyRetries += more.busyRetries
        for i in total.postgres.indices { total.postgres[i] += more.postgres[i] }
    }
}

/// A fixed-size table of request series in one memory region: a serving process's mapped file, the accumulated
/// file, or anonymous memory (a process without a metrics folder).
///
///     header (64 bytes): magic "FLOWSMT1" (8), slot count (4), slot size (4), SQLite busy retries (8),
///         the PostgreSQL counters (5 x 8, `PostgresCounter` by raw value; zero in files of earlier versions)
///     slot (176 bytes) x slotCount: key length (4; 0 while free), key (60: flow NUL action NUL status, UTF-8),
///         12 latency buckets (8 each, non-cumulative), latency sum in microseconds (8), zero (8)
///
/// Native byte order: the files never leave the host. Counters change only through relaxed atomic adds (no lock,
/// no system call). Slots are taken in order under the owner's lock; a key is written before its length is stored
/// with release order, and a reader loads the length with acquire order and stops at the first free slot, so it
/// sees a whole key or none.
final class MetricsTable: @unchecked Sendable {
    /// Bytes of the region (pages are resident only once touched: a few series use two pages).
    static let size = 64 * 1024
    static let headerSize = 64
    static let slotSize = 176
    static let keyCapacity = 60
    static let bucketCount = DurationHistogram.boundLabels.count
    /// Slots in the table; the last one is kept for `overflow`.
    static let slotCount = (size - headerSize) / slotSize
    /// "FLOWSMT1" read as a little-endian integer (format version 1).
    static let magic: UInt64 = 0x3154_4D53_574F_4C46
    /// Where series go once the table is full (never reached with the bounded labels, but never a crash).
    static let overflow = RequestSeries(flow: "other", action: "other", status: 0)

    /// The region (writable).
    let base: UnsafeMutableRawPointer
    /// Slots taken so far; the lock serializes taking new ones.
    private let used = Mutex<Int>(0)

    /// A table in anonymous memory (zero pages until touched).
    convenience init() {
        let memory = mmap(nil, MetricsTable.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let memory, memory != MAP_FAILED else { fatalError("metrics: cannot map \(MetricsTable.size) bytes") }
        self.init(mapped: memory)
    }

    /// A table in `mapped` (MetricsTable.size bytes, zero-filled); writes its header and owns the mapping.
    init(mapped: UnsafeMutableRawPointer) {
        base = mapped
        base.storeBytes(of: MetricsTable.magic, as: UInt64.self)
        base.storeBytes(of: UInt32(MetricsTable.slotCount), toByteOffset: 8, as: UInt32.self)
        base.storeBytes(of: UInt32(MetricsTable.slotSize), toByteOffset: 12, as: UInt32.self)
    }

    deinit { munmap(base, MetricsTable.size) }

    private static func slot(_ base: UnsafeRawPointer, _ index: Int) -> UnsafeRawPointer {
        base + headerSize + index * slotSize
    }

    private func counter(_ index: Int, _ offset: Int) -> UnsafeMutablePointer<Int64> {
        (base + MetricsTable.headerSize + index * MetricsTable.slotSize + offset).assumingMemoryBound(to: Int64.self)
    }

    /// The slot of `series`, taking a free one the first time it is seen (the caller caches the answer).
    func index(for series: RequestSeries) -> Int {
        used.withLock { used in
            let key = MetricsTable.key(series)
            for index in 0..<used where MetricsTable.key(base, index) == key { return index }
            let last = MetricsTable.slotCount - 1
            if used == MetricsTable.slotCount { return last }
            let published = used < last ? key : MetricsTable.key(MetricsTable.overflow)
            let slot = base + MetricsTable.headerSize + used * MetricsTable.slotSize
            published.withUnsafeBytes { (slot + 4).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            cflows_store_release(slot.assumingMemoryBound(to: UInt32.self), UInt32(published.count))
            used += 1
            return used - 1
        }
    }

    /// Counts one request of the series in slot `index` that took `micros`.
    func record(_ index: Int, micros: Int) {
        var bucket = 0
        let bounds = DurationHistogram.boundsMicros
        while bucket < bounds.count, micros > bounds[bucket] { bucket += 1 }
        cflows_add_relaxed(counter(index, 64 + 8 * bucket), 1)
        cflows_add_relaxed(counter(index, 64 + 8 * MetricsTable.bucketCount), Int64(micros))
    }

    /// Raises the busy-retry count to `value` (the process's running total).
    func raiseBusyRetries(to value: Int) {
        cflows_raise_relaxed((base + 16).assumingMemoryBound(to: Int64.self), Int64(value))
    }

    /// Raises the PostgreSQL counters to the process's running totals.
    func raisePostgresCounters() {
        for counter in PostgresCounter.allCases {
            cflows_raise_relaxed((base + 24 + 8 * counter.rawValue).assumingMemoryBound(to: Int64.self),
                                 Int64(counter.value))
        }
    }

    /// Adds `totals` (building the accumulated file).
    func add(_ totals: MetricsTotals) {
        for (series, counts) in totals.series {
            let index = index(for: series)
            for (bucket, value) in counts.buckets.enumerated() {
                cflows_add_relaxed(counter(index, 64 + 8 * bucket), Int64(value))
            }
            cflows_add_relaxed(counter(index, 64 + 8 * MetricsTable.bucketCount), Int64(counts.sumMicros))
        }
        cflows_add_relaxed((base + 16).assumingMemoryBound(to: Int64.self), Int64(totals.busyRetries))
        for (i, value) in totals.postgres.enumerated() {
            cflows_add_relaxed((base + 24 + 8 * i).assumingMemoryBound(to: Int64.self), Int64(value))
        }
    }

    /// The key bytes of `series`: flow NUL action NUL status (a flow name too long for a key counts as `other`).
    static func key(_ series: RequestSeries) -> [UInt8] {
        let key = Array(series.flow.utf8) + [0] + Array(series.action.utf8) + [0] + Array(String(series.status).utf8)
        if key.count <= keyCapacity { return key }
        return MetricsTable.key(RequestSeries(flow: "other", action: series.action, status: series.status))
    }

    /// The published key of slot `index`, empty while the slot is free.
    private static func key(_ base: UnsafeRawPointer, _ index: Int) -> [UInt8] {
        let slot = MetricsTable.slot(base, index)
        let length = Int(cflows_load_acquire(slot.assumingMemoryBound(to: UInt32.self)))
        guard length <= keyCapacity else { return [] }
        return Array(UnsafeRawBufferPointer(start: slot + 4, count: length))
    }

    /// Whether `base` holds a table of this format (magic and geometry).
    static func isValid(_ base: UnsafeRawPointer) -> Bool {
        base.load(as: UInt64.self) == magic && base.load(fromByteOffset: 8, as: UInt32.self) == UInt32(slotCount)
            && base.load(fromByteOffset: 12, as: UInt32.self) == UInt32(slotSize)
    }

    /// Adds the table at `base` (which may be written concurrently) to `totals`.
    static func read(_ base: UnsafeRawPointer, into totals: inout MetricsTotals) {
        func load(_ pointer: UnsafeRawPointer) -> Int { Int(cflows_load_relaxed(pointer.assumingMemoryBound(to: Int64.self))) }
        totals.busyRetries += load(base + 16)
        for i in totals.postgres.indices { totals.postgres[i] += load(base + 24 + 8 * i) }
        for index in 0..<slotCount {
            let key = key(base, index)
            if key.isEmpty { break }
            let parts = key.split(separator: 0, omittingEmptySubsequences: false)
            guard parts.count == 3, let status = Int(String(decoding: parts[2], as: UTF8.self)) else { continue }
            let series = RequestSeries(flow: String(decoding: parts[0], as: UTF8.self),
                                       action: String(decoding: parts[1], as: UTF8.self), status: status)
            let slot = MetricsTable.slot(base, index)
            var counts = SeriesCounts()
            for bucket in 0..<bucketCount { counts.buckets[bucket] = load(slot + 64 + 8 * bucket) }
            counts.sumMicros = load(slot + 64 + 8 * bucketCount)
            totals.series[series, default: SeriesCounts()] += counts
        }
    }

    /// This table's counts.
    func totals() -> MetricsTotals {
        var totals = MetricsTotals()
        MetricsTable.read(base, into: &totals)
        return totals
    }
}

/// The host's metrics folder (`METRICS_DIR`): one mapped file per serving process, `p-<instance>`, locked with
/// `flock` for the process's whole life (the kernel drops the lock however the process ends); `accumulated`, the
/// counts of exited processes' files folded together, followed by the names of the files it folded; and `lock`,
/// whose `flock` serializes scrapes and compactions (across processes and threads).
///
/// Folding is exactly once under a crash at any point: the new accumulated file is written to `accumulated.tmp`,
/// synced and renamed over the old one before the folded files are removed, and it lists them, so a file that is
/// still there but listed is removed without being counted again.
enum MetricsFolder {
    static let lockName = "lock"
    static let accumulatedName = "accumulated"
    static let temporaryName = "accumulated.tmp"
    static let processPrefix = "p-"
    /// A process file while it is being set up (renamed to `p-` once locked and initialized).
    static let newPrefix = "new-"
    /// Files folded in one pass at most (each is held open until the new accumulated file is in place).
    static let foldLimit = 256

    /// Creates `directory` (mode 0700) unless it exists; it must be a directory.
    static func prepare(_ directory: String) throws(MetricsError) {
        if mkdir(directory, 0o700) != 0, errno != EEXIST { throw .system("create the folder", directory) }
        var status = stat()
        guard stat(directory, &status) == 0 else { throw .system("stat", directory) }
        guard status.st_mode & S_IFMT == S_IFDIR else { throw MetricsError("metrics: \(directory) is not a folder") }
        guard access(directory, W_OK | X_OK) == 0 else { throw .system("write into", directory) }
    }

    /// Creates, locks and maps this process's file `p-<instance>`; returns its descriptor (holding the lock) and
    /// its table. The file gets its final name only once locked and initialized, so a compaction never takes it
    /// for a dead process's file.
    static func createProcessFile(_ directory: String, instance: String) throws(MetricsError)
        -> (fd: Int32, table: MetricsTable)
    {
        try prepare(directory)
        var attempt = 0
        while true {
            let temporary = "\(directory)/\(newPrefix)\(instance)-\(attempt)"
            let fd = open(temporary, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw .system("create", temporary) }
            // A compaction removes `new-` files it can lock (left by a process that died while starting): if one
            // got in between open and flock, try again under another name.
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
                let error = MetricsError.system("lock", temporary)
                let taken = errno == EWOULDBLOCK
                close(fd)
                attempt += 1
                if taken, attempt < 5 { continue }
                throw error
            }
            // Blocks allocated now, not sparse: a full disk fails here, at the start, instead of raising SIGBUS
            // when a request first touches a page of the mapping.
            let allocated = posix_fallocate(fd, 0, off_t(MetricsTable.size))
            guard allocated == 0 else {
                errno = allocated
                let error = MetricsError.system("allocate \(MetricsTable.size) bytes for", temporary)
                close(fd)
                unlink(temporary)
                throw error
            }
            let memory = mmap(nil, MetricsTable.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
            guard let memory, memory != MAP_FAILED else {
                let error = MetricsError.system("map", temporary)
                close(fd)
                unlink(temporary)
                throw error
            }
            let table = MetricsTable(mapped: memory)
            let path = "\(directory)/\(processPrefix)\(instance)"
            if rename(temporary, path) == 0 { return (fd, table) }
            let error = MetricsError.system("rename \(temporary) to", path)
            let vanished = errno == ENOENT
            close(fd)
            if !vanished || attempt >= 4 { throw error }
            attempt += 1
        }
    }

    /// The names in `directory`.
    private static func names(_ directory: String) throws(MetricsError) -> [String] {
        guard let dir = opendir(directory) else { throw .system("list", directory) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != ".", name != ".." { names.append(name) }
        }
        return names
    }

    /// Maps `path` (open as `fd`) read-only and adds its table to `totals`; returns the bytes after the table (the
    /// accumulated file's listing; only with `extra`), nil when it is not a metrics file of this format.
    private static func read(fd: Int32, path: String, extra: Bool, into totals: inout MetricsTotals)
        throws(MetricsError) -> [UInt8]?
    {
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw .system("stat", path) }
        let length = Int(status.st_size)
        guard length == MetricsTable.size || (extra && length > MetricsTable.size) else { return nil }
        let memory = mmap(nil, length, PROT_READ, MAP_SHARED, fd, 0)
        guard let memory, memory != MAP_FAILED else { throw .system("map", path) }
        defer { munmap(memory, length) }
        guard MetricsTable.isValid(memory) else { return nil }
        MetricsTable.read(memory, into: &totals)
        return Array(UnsafeRawBufferPointer(start: memory + MetricsTable.size, count: length - MetricsTable.size))
    }

    /// The accumulated counts and the names of the files folded into them (empty when there is none yet).
    private static func readAccumulated(_ directory: String) throws(MetricsError) -> (MetricsTotals, Set<String>) {
        let path = "\(directory)/\(accumulatedName)"
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0, errno == ENOENT { return (MetricsTotals(), []) }
        guard fd >= 0 else { throw .system("open", path) }
        defer { close(fd) }
        var totals = MetricsTotals()
        guard let names = try read(fd: fd, path: path, extra: true, into: &totals) else {
            throw MetricsError("metrics: \(path) is not a flows-fcgi metrics file of this version (move it away)")
        }
        return (totals, Set(names.split(separator: 0x0A).map { String(decoding: $0, as: UTF8.self) }))
    }

    /// Folds the files of exited processes into the accumulated file, and with `read` returns the counts of the
    /// whole host: accumulated plus every live process's file.
    ///
    /// - Parameters:
    ///   - wait: wait for a scrape or compaction running elsewhere; without, return nil when one is.
    ///   - minimumFiles: fold only when at least this many process files (live or not) are there.
    static func collect(_ directory: String, read: Bool, wait: Bool = true, minimumFiles: Int = 0)
        throws(MetricsError) -> MetricsTotals?
    {
        let lockPath = "\(directory)/\(lockName)"
        let lock = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lock >= 0 else { throw .system("open", lockPath) }
        defer { close(lock) }
        while flock(lock, wait ? LOCK_EX : LOCK_EX | LOCK_NB) != 0 {
            if errno == EINTR { continue }
            if errno == EWOULDBLOCK { return nil }
            throw .system("lock", lockPath)
        }
        let (folded0, listed) = try readAccumulated(directory)
        var accumulated = folded0
        let names = try names(directory)
        if !read, names.count(where: { $0.hasPrefix(processPrefix) }) < minimumFiles { return nil }
        var live = MetricsTotals()
        var stillListed: [String] = []
        var folded: [(name: String, fd: Int32)] = []
        defer { for file in folded { close(file.fd) } }
        for name in names where name.hasPrefix(processPrefix) || name.hasPrefix(newPrefix) {
            let path = "\(directory)/\(name)"
            if listed.contains(name) {
                // Folded by a compaction that stopped before removing it: counted already.
                if unlink(path) != 0, errno != ENOENT { stillListed.append(name) }
                continue
            }
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            if fd < 0, errno == ENOENT { continue }
            guard fd >= 0 else { throw .system("open", path) }
            let exited = flock(fd, LOCK_EX | LOCK_NB) == 0
            if name.hasPrefix(newPrefix) {
                // A process that died while setting up its file: nothing counted in it yet.
                if exited { unlink(path) }
                close(fd)
                continue
            }
            var counts = MetricsTotals()
            var kept = false
            defer { if !kept { close(fd) } }
            guard try self.read(fd: fd, path: path, extra: false, into: &counts) != nil else {
                throw MetricsError("metrics: \(path) is not a flows-fcgi metrics file of this version (move it away)")
            }
            // Folded files stay open (locked) until removed: at most `foldLimit` a pass, the rest are counted only.
            if exited, folded.count < foldLimit {
                accumulated += counts
                folded.append((name, fd))
                kept = true
            } else {
                live += counts
            }
        }
        if !folded.isEmpty {
            try writeAccumulated(directory, accumulated, listing: folded.map(\.name) + stillListed)
            for file in folded { unlink("\(directory)/\(file.name)") }
        }
        guard read else { return nil }
        accumulated += live
        return accumulated
    }

    /// Replaces the accumulated file: written to a temporary name, synced, renamed, and the folder synced.
    private static func writeAccumulated(_ directory: String, _ totals: MetricsTotals, listing names: [String])
        throws(MetricsError)
    {
        let table = MetricsTable()
        table.add(totals)
        let listing = Array(names.joined(separator: "\n").utf8)
        let temporary = "\(directory)/\(temporaryName)"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .system("create", temporary) }
        guard writeFully(fd, UnsafeRawBufferPointer(start: table.base, count: MetricsTable.size)),
            listing.withUnsafeBytes({ writeFully(fd, $0) }), fsync(fd) == 0
        else {
            let error = MetricsError.system("write", temporary)
            close(fd)
            throw error
        }
        close(fd)
        let path = "\(directory)/\(accumulatedName)"
        guard rename(temporary, path) == 0 else { throw .system("rename \(temporary) to", path) }
        let folder = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if folder >= 0 {
            fsync(folder)
            close(folder)
        }
    }

    /// Writes every byte, retrying short writes; false on an error.
    private static func writeFully(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0, errno == EINTR { continue }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }
}
