import CFlowsFastCGI
import FlowCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Runs `processes` children that each serve `fd` with `serve`, respawning any that exits unexpectedly, until
/// SIGTERM/SIGINT, which is passed on to every child; returns once all have exited.
///
/// The parent holds no database connection and serves no requests: a crash in a child costs only that child.
/// A child whose parent dies (SIGKILL, OOM killer) gets SIGTERM from the kernel and stops the way SIGTERM always
/// stops it (no more accepting, requests in flight answered, exit), so no orphan keeps the socket busy.
func prefork(processes: Int, log: Logger, serve: @escaping () -> Int32) -> Int32 {
    var children: [pid_t: Int] = [:]
    var recentStarts: [Int] = []
    let master = getpid()
    func spawn(slot: Int) {
        let pid = fork()
        if pid == 0 {
            // SIGTERM is blocked in every thread (main.swift), so it waits for the serving loop's signal wait.
            if cflows_set_parent_death_signal(SIGTERM) != 0 {
                log.warning("cannot ask for SIGTERM when the master exits", ["error": errnoText()])
            }
            // The master may have died between fork and prctl: then no death signal will come.
            if getppid() != master { kill(getpid(), SIGTERM) }
            exit(serve())
        }
        if pid < 0 {
            log.error("fork failed", ["error": errnoText()])
            return
        }
        children[pid] = slot
    }
    for slot in 0..<processes { spawn(slot: slot) }
    log.info("prefork master running", ["processes": String(processes)])
    var stopping = false
    while !children.isEmpty {
        let s = waitForSignal([SIGTERM, SIGINT, SIGCHLD, SIGHUP, SIGUSR1])
        switch s {
        case SIGTERM, SIGINT:
            if !stopping {
                stopping = true
                log.info("stopping: passing the signal to the workers")
                for pid in children.keys { kill(pid, SIGTERM) }
            }
        case SIGHUP, SIGUSR1:
            do { try log.reopen() } catch { log.error("cannot reopen the log file", ["error": error.description]) }
            for pid in children.keys { kill(pid, s) }
        default:
            var status: Int32 = 0
            while true {
                let pid = waitpid(-1, &status, WNOHANG)
                if pid <= 0 { break }
                guard let slot = children.removeValue(forKey: pid) else { continue }
                if stopping { continue }
                if status == 0 {
                    // A clean exit is MAX_REQUESTS recycling: replace it at once, no crash-loop accounting.
                    log.info("worker process recycled; starting another", ["pid": String(pid)])
                    spawn(slot: slot)
                    continue
                }
                log.warning("worker process exited; starting another", [
                    "pid": String(pid),
                    "status": status & 0x7F == 0 ? "exit \((status >> 8) & 0xFF)" : "signal \(status & 0x7F)",
                ])
                // Back off when children keep dying (a broken database, say) instead of spinning.
                let now = Int(time(nil))
                recentStarts = recentStarts.filter { now - $0 < 10 } + [now]
                if recentStarts.count > processes * 5 {
                    log.error("workers keep exiting; waiting 5 s before the next start")
                    sleep(5)
                }
                spawn(slot: slot)
            }
        }
    }
    return 0
}
