import CFlowsFastCGI
import FlowCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The signal that wakes idle workers out of `accept` at shutdown. Workers keep it blocked while a request is in
/// flight, so it never interrupts reading a body or writing an answer.
let wakeSignal = SIGUSR2

/// Set once a stop was requested.
let stopRequested = Atomic<Bool>(false)

/// Sleeps `seconds` in 100 ms steps (background threads); false as soon as the process is asked to stop.
func pauseUnlessStopping(seconds: Int) -> Bool {
    for _ in 0..<(seconds * 10) {
        if stopRequested.load(ordering: .relaxed) { return false }
        var step = timespec(tv_sec: 0, tv_nsec: 100_000_000)
        nanosleep(&step, nil)
    }
    return !stopRequested.load(ordering: .relaxed)
}

/// Starts a kernel thread running `body` (one per worker: never a Task, libfcgi blocks).
func startThread(_ body: @escaping @Sendable () -> Void) -> pthread_t {
    final class Box: Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    let context = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { raw in
        let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
        box.body()
        return nil
    }, context)
    precondition(rc == 0, "pthread_create failed: \(rc)")
    return thread
}

/// Blocks `signals` in the calling thread (and the threads it starts afterwards).
func blockSignals(_ signals: [Int32]) {
    var set = sigset_t()
    sigemptyset(&set)
    for s in signals { sigaddset(&set, s) }
    pthread_sigmask(SIG_BLOCK, &set, nil)
}

/// Unblocks `signals` in the calling thread.
func unblockSignals(_ signals: [Int32]) {
    var set = sigset_t()
    sigemptyset(&set)
    for s in signals { sigaddset(&set, s) }
    pthread_sigmask(SIG_UNBLOCK, &set, nil)
}

/// Installs a no-op handler for the wake-up signal, without SA_RESTART, so it interrupts `accept`.
func installWakeHandler() {
    var action = sigaction()
    action.__sigaction_handler.sa_handler = { _ in }
    action.sa_flags = 0
    sigemptyset(&action.sa_mask)
    sigaction(wakeSignal, &action, nil)
    signal(SIGPIPE, SIG_IGN)
}

/// Waits for one of `signals` (which must be blocked).
func waitForSignal(_ signals: [Int32]) -> Int32 {
    var set = sigset_t()
    sigemptyset(&set)
    for s in signals { sigaddset(&set, s) }
    var received: Int32 = 0
    while sigwait(&set, &received) != 0 {}
    return received
}

/// Waits up to `milliseconds` for one of `signals` (which must be blocked); nil when none came.
func waitForSignal(_ signals: [Int32], milliseconds: Int) -> Int32? {
    var set = sigset_t()
    sigemptyset(&set)
    for s in signals { sigaddset(&set, s) }
    var timeout = timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
    let received = sigtimedwait(&set, nil, &timeout)
    return received > 0 ? received : nil
}

/// Serves FastCGI on `fd` with `threads` worker threads until SIGTERM/SIGINT; returns when every in-flight request
/// has been answered and every database connection closed.
///
/// The calling thread is the process's housekeeper (no thread of its own for it: each costs memory in every
/// process): it waits for signals and every 200 ms interrupts requests past `REQUEST_DEADLINE_MS`. The workers
/// count into this process's file of the metrics folder; at the end the file is released and folded.
func serveFastCGI(fd: Int32, threads: Int, endpoint: Endpoint) -> Int32 {
    guard FCGX_Init() == 0 else {
        endpoint.log.error("FCGX_Init failed")
        return 1
    }
    let finished = Mutex<[Bool]>(Array(repeating: false, count: threads))
    var workers: [pthread_t] = []
    let failures = Atomic<Int>(0)
    // Created here, after a prefork fork: the pid, instance id and file are this process's.
    let metrics = openMetrics(endpoint: endpoint)
    for index in 0..<threads {
        workers.append(startThread {
            let ok = workerLoop(fd: fd, index: index, endpoint: endpoint, metrics: metrics)
            if !ok { failures.add(1, ordering: .relaxed) }
            finished.withLock { $0[index] = true }
        })
    }
    let runtime = endpoint.configuration.runtime
    var nextDeadlineCheck: Int64 = 0
    // Until each worker has left its loop; once stopping, idle workers are woken again on every pass (a wake-up
    // can land just before `accept`).
    while !finished.withLock({ $0.allSatisfy { $0 } }) {
        if let s = waitForSignal([SIGTERM, SIGINT, SIGHUP, SIGUSR1], milliseconds: 50) {
            if s == SIGHUP || s == SIGUSR1 {
                do {
                    try endpoint.log.reopen()
                    endpoint.log.info("log file reopened")
                } catch {
                    endpoint.log.error("cannot reopen the log file", ["error": String(describing: error)])
                }
            } else if !stopRequested.load(ordering: .sequentiallyConsistent) {
                endpoint.log.info("stopping: finishing in-flight requests", ["signal": s == SIGTERM ? "TERM" : "INT"])
                stopRequested.store(true, ordering: .sequentiallyConsistent)
                FCGX_ShutdownPending()
            }
        }
        if stopRequested.load(ordering: .sequentiallyConsistent) {
            for (index, thread) in workers.enumerated() where !finished.withLock({ $0[index] }) {
                pthread_kill(thread, wakeSignal)
            }
        }
        let now = monotonicNanoseconds()
        if now >= nextDeadlineCheck {
            metrics.interruptOverdue(deadlineMilliseconds: runtime.requestDeadlineMilliseconds)
            nextDeadlineCheck = now + 200_000_000
        }
    }
    for thread in workers { pthread_join(thread, nil) }
    retireMetrics(metrics, endpoint: endpoint, minimumFiles: 0)
    return failures.load(ordering: .relaxed) == 0 ? 0 : 1
}

/// This process's counters: a new file in the metrics folder, or (without a folder, or when the file cannot be
/// made, which is logged) memory that `/metrics` of this process alone reports.
func openMetrics(endpoint: Endpoint) -> Metrics {
    guard let directory = endpoint.configuration.runtime.metricsDirectory else { return Metrics() }
    do {
        return try Metrics(directory: directory)
    } catch {
        endpoint.log.error("metrics file not created: this process is counted by its own /metrics only",
                           ["error": error.description])
        return Metrics()
    }
}

/// Releases this process's metrics file and folds the files of exited processes (this one's included) into the
/// accumulated file when at least `minimumFiles` are there, unless another process is doing it.
func retireMetrics(_ metrics: Metrics, endpoint: Endpoint, minimumFiles: Int) {
    metrics.retire()
    do {
        try metrics.compact(minimumFiles: minimumFiles)
    } catch {
        endpoint.log.warning("metrics compaction failed (retried at the next scrape)", ["error": error.description])
    }
}

/// One worker: its own FastCGI request and database connection. Returns false when it could not start.
private func workerLoop(fd: Int32, index: Int, endpoint: Endpoint, metrics: Metrics) -> Bool {
    let maxRequests = endpoint.configuration.runtime.maxRequests
    let worker: Worker
    do {
        worker = try Worker(configuration: endpoint.configuration, metrics: metrics)
    } catch {
        endpoint.log.error("worker cannot open the database", ["worker": String(index), "error": error.description])
        return false
    }
    defer { worker.close() }
    var request = FCGX_Request()
    guard FCGX_InitRequest(&request, fd, 0) == 0 else {
        endpoint.log.error("FCGX_InitRequest failed", ["worker": String(index)])
        return false
    }
    let cap = endpoint.configuration.transportBodyLimit
    // Not zero-filled: only the part bodies actually use becomes resident.
    let bufferSize = 65536
    let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: bufferSize)
    defer { buffer.deallocate() }
    while !stopRequested.load(ordering: .relaxed) {
        // The wake-up signal may interrupt only the wait for a connection.
        unblockSignals([wakeSignal])
        let accepted = FCGX_Accept_r(&request)
        blockSignals([wakeSignal])
        if accepted < 0 { break }

        let params = copyParams(request.envp)
        var collector = BodyCollector(cap: cap)
        while true {
            let n = FCGX_GetStr(buffer, Int32(bufferSize), request.in)
            if n <= 0 { break }
            collector.append(UnsafeRawBufferPointer(start: buffer, count: Int(n)))
        }
        let incoming = collector.request(params: params)
        let response = endpoint.handle(incoming, worker: worker)
        let bytes = CGIMessage.encode(response, includeBody: incoming.method != "HEAD")
        _ = bytes.withUnsafeBufferPointer { raw in
            raw.withMemoryRebound(to: CChar.self) { FCGX_PutStr($0.baseAddress, Int32($0.count), request.out) }
        }
        FCGX_Finish_r(&request)
        // Recycling: after MAX_REQUESTS requests the whole process stops cleanly (exit 0) for its spawner to replace.
        if maxRequests > 0, metrics.requestCount >= maxRequests,
            !stopRequested.exchange(true, ordering: .sequentiallyConsistent)
        {
            endpoint.log.info("MAX_REQUESTS reached: exiting for recycling", ["requests": String(metrics.requestCount)])
            FCGX_ShutdownPending()
        }
    }
    FCGX_Free(&request, 1)
    return true
}

/// Copies the FastCGI params the endpoint reads (they live only until the next accept).
private func copyParams(_ envp: FCGX_ParamArray?) -> [(String, String)] {
    var params: [(String, String)] = []
    guard let envp else { return params }
    params.reserveCapacity(EndpointRequest.parameterNames.count)
    var i = 0
    while let entry = envp[i] {
        if let param = CGIMessage.readParam(entry) { params.append(param) }
        i += 1
    }
    return params
}
