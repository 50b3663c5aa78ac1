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

/// Serves FastCGI on `fd` with `threads` worker threads until SIGTERM/SIGINT; returns when every in-flight request
/// has been answered and every database connection closed.
func serveFastCGI(fd: Int32, threads: Int, endpoint: Endpoint) -> Int32 {
    guard FCGX_Init() == 0 else {
        endpoint.log.error("FCGX_Init failed")
        return 1
    }
    let finished = Mutex<[Bool]>(Array(repeating: false, count: threads))
    var workers: [pthread_t] = []
    let failures = Atomic<Int>(0)
    // Created here, after a prefork fork: the pid and instance id are this process's.
    let metrics = Metrics()
    let workersDone = Atomic<Bool>(false)
    let flusher = startThread { metricsLoop(endpoint: endpoint, metrics: metrics, workersDone: workersDone) }
    for index in 0..<threads {
        workers.append(startThread {
            let ok = workerLoop(fd: fd, index: index, endpoint: endpoint, metrics: metrics)
            if !ok { failures.add(1, ordering: .relaxed) }
            finished.withLock { $0[index] = true }
        })
    }
    // This thread waits for signals; the workers keep them blocked.
    let signalThreadDone = Atomic<Bool>(false)
    let signals = startThread {
        while true {
            let s = waitForSignal([SIGTERM, SIGINT, SIGHUP, SIGUSR1])
            if s == SIGHUP || s == SIGUSR1 {
                do {
                    try endpoint.log.reopen()
                    endpoint.log.info("log file reopened")
                } catch {
                    endpoint.log.error("cannot reopen the log file", ["error": String(describing: error)])
                }
                continue
            }
            if s == wakeSignal { continue }
            // Already stopping (MAX_REQUESTS reached): the signal only ends this thread.
            if stopRequested.load(ordering: .sequentiallyConsistent) { break }
            endpoint.log.info("stopping: finishing in-flight requests", ["signal": s == SIGTERM ? "TERM" : "INT"])
            stopRequested.store(true, ordering: .sequentiallyConsistent)
            FCGX_ShutdownPending()
            break
        }
        signalThreadDone.store(true, ordering: .sequentiallyConsistent)
    }
    // Wake idle workers until each has left its loop (a wake-up can land just before `accept`, so repeat).
    while !finished.withLock({ $0.allSatisfy { $0 } }) {
        if stopRequested.load(ordering: .sequentiallyConsistent) {
            for (index, thread) in workers.enumerated() where !finished.withLock({ $0[index] }) {
                pthread_kill(thread, wakeSignal)
            }
        }
        var pause = timespec(tv_sec: 0, tv_nsec: 50_000_000)
        nanosleep(&pause, nil)
    }
    for thread in workers { pthread_join(thread, nil) }
    workersDone.store(true, ordering: .sequentiallyConsistent)
    pthread_join(flusher, nil)
    if !signalThreadDone.load(ordering: .sequentiallyConsistent) {
        // All workers failed on their own: no signal will come, so end the signal thread with one.
        pthread_kill(signals, SIGTERM)
    }
    pthread_join(signals, nil)
    return failures.load(ordering: .relaxed) == 0 ? 0 : 1
}

/// The metrics thread of one serving process: every 200 ms it interrupts requests past `REQUEST_DEADLINE_MS`;
/// every `METRICS_FLUSH_SECONDS` it writes the process's counters to the database (its own connection); once the
/// workers are done, a last flush folds this instance's rows into the `retired` ones.
private func metricsLoop(endpoint: Endpoint, metrics: Metrics, workersDone: borrowing Atomic<Bool>) {
    let runtime = endpoint.configuration.runtime
    var database: Database?
    if let path = endpoint.configuration.databasePath {
        do {
            // A short lock wait: this thread is also the deadline watchdog, and a failed flush is retried.
            let wait = min(endpoint.configuration.busyTimeoutMilliseconds, 500)
            database = try Database(path: path, busyTimeoutMilliseconds: wait)
        } catch {
            endpoint.log.error("metrics cannot open the database", ["error": error.description])
        }
    }
    defer { database?.close() }
    func flush(retire: Bool) {
        guard let database else { return }
        do {
            try metrics.flush(into: database, now: endpoint.clock(), retire: retire)
        } catch {
            endpoint.log.warning("metrics flush failed (retried later)", ["error": error.description])
        }
    }
    let tick: Int64 = 200_000_000
    var nextFlush = monotonicNanoseconds() + Int64(runtime.metricsFlushSeconds) * 1_000_000_000
    while !workersDone.load(ordering: .sequentiallyConsistent) {
        var pause = timespec(tv_sec: 0, tv_nsec: Int(tick))
        nanosleep(&pause, nil)
        metrics.interruptOverdue(deadlineMilliseconds: runtime.requestDeadlineMilliseconds)
        let now = monotonicNanoseconds()
        if now >= nextFlush {
            flush(retire: false)
            nextFlush = now + Int64(runtime.metricsFlushSeconds) * 1_000_000_000
        }
    }
    flush(retire: true)
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
    var buffer = [CChar](repeating: 0, count: 65536)
    while !stopRequested.load(ordering: .relaxed) {
        // The wake-up signal may interrupt only the wait for a connection.
        unblockSignals([wakeSignal])
        let accepted = FCGX_Accept_r(&request)
        blockSignals([wakeSignal])
        if accepted < 0 { break }

        let params = copyParams(request.envp)
        var collector = BodyCollector(cap: cap)
        while true {
            let n = FCGX_GetStr(&buffer, Int32(buffer.count), request.in)
            if n <= 0 { break }
            buffer.withUnsafeBytes { collector.append(UnsafeRawBufferPointer(rebasing: $0.prefix(Int(n)))) }
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

/// Copies the FastCGI params (they live only until the next accept).
private func copyParams(_ envp: FCGX_ParamArray?) -> [(String, String)] {
    var params: [(String, String)] = []
    guard let envp else { return params }
    params.reserveCapacity(32)
    var i = 0
    while let entry = envp[i] {
        params.append(CGIMessage.splitParam(entry))
        i += 1
    }
    return params
}
