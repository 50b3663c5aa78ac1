import CFlowsFastCGI
import FlowCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Exit statuses: 0 done, 1 runtime failure, 2 usage, 78 configuration error (EX_CONFIG).
enum ExitStatus {
    static let usage: Int32 = 2
    static let config: Int32 = 78
}

func printError(_ message: String) {
    writeAll(2, Array("flows-fcgi: \(message)\n".utf8))
}

func currentEnvironment() -> [String: String] {
    var result: [String: String] = [:]
    var entry = environ
    while let pointer = entry.pointee {
        let (name, value) = CGIMessage.splitParam(pointer)
        result[name] = value
        entry += 1
    }
    return result
}

func run() -> Int32 {
    let arguments = Array(CommandLine.arguments.dropFirst())
    if let first = arguments.first, Command.names.contains(first) {
        return Command.run(first, Array(arguments.dropFirst()))
    }
    let options: Options
    do {
        options = try Options.parse(Array(CommandLine.arguments.dropFirst()))
    } catch {
        printError(error.description)
        return ExitStatus.usage
    }
    if options.showHelp {
        writeAll(1, Array((Options.usage + "\n").utf8))
        return 0
    }
    if options.showVersion {
        writeAll(1, Array("flows-fcgi \(flowsFCGIVersion)\n".utf8))
        return 0
    }
    let environment = currentEnvironment()
    guard servingModeRequested(options: options, environment: environment) else {
        writeAll(2, Array((Options.usage + "\n").utf8))
        return ExitStatus.usage
    }

    // Signals are handled by dedicated threads with sigwait; every thread starts with them blocked. Blocked from
    // here on, so a SIGHUP from logrotate while the keys load waits for the signal thread instead of killing us.
    blockSignals([SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGCHLD, wakeSignal])

    // Configuration first: a broken key or a missing secret fails before any socket is touched.
    let configuration: Configuration
    let log: Logger
    do {
        var settings = try Settings(environment: environment, file: options.configFile,
                                    names: Configuration.allSettingNames)
        if let file = options.logFile { settings = settings.overriding("LOG_FILE", with: file) }
        if let max = options.maxBody { settings = settings.overriding("MAX_BODY_BYTES", with: max) }
        if let max = options.maxRequests { settings = settings.overriding("MAX_REQUESTS", with: max) }
        configuration = try Configuration(settings: settings)
        let sink = try configuration.logFile.map { path throws(ConfigError) in try LogSink.file(path) } ?? .standardError
        log = Logger(level: configuration.logLevel, sink: sink, format: configuration.runtime.logFormat)
    } catch {
        printError("configuration error: \(error.description)")
        return ExitStatus.config
    }
    for warning in configuration.warnings { log.warning(warning) }
    if !configuration.signatureCheck {
        let banner = "SIGNATURE CHECKING IS OFF (SIGNATURE_CHECK=off): anyone can call this endpoint. "
            + "For local development only; never in production."
        log.error(banner)
        if configuration.logFile != nil { printError("WARNING: " + banner) }
    }

    installWakeHandler()

    let mode: ServingMode
    do {
        guard let chosen = try chooseMode(options: options, environment: environment) else {
            writeAll(2, Array((Options.usage + "\n").utf8))
            return ExitStatus.usage
        }
        mode = chosen
    } catch {
        log.error(error.message)
        if configuration.logFile != nil { printError(error.message) }
        return error.status
    }

    let endpoint = Endpoint(configuration: configuration, log: log)
    if case .cgi = mode { return serveCGI(endpoint: endpoint) }
    // A serving process: the code that loaded the key and compiled the flows is not needed again (see
    // releaseStartupCode; again before serving, after the migrations and the helper threads' start).
    releaseStartupCode()

    // Open the database once before serving: a wrong path or permission fails loudly at startup, and the
    // migrations run before any worker needs them.
    do {
        try Worker(configuration: configuration).close()
    } catch {
        log.error("cannot open the database", ["error": error.description])
        if configuration.logFile != nil { printError("cannot open the database: \(error.description)") }
        return 1
    }
    if let directory = configuration.runtime.metricsDirectory {
        do {
            try Metrics.prepare(directory: directory)
        } catch {
            log.error("cannot use the metrics folder (METRICS_DIR)", ["error": error.description])
            if configuration.logFile != nil { printError("cannot use the metrics folder: \(error.description)") }
            return 1
        }
    }

    guard let fd = mode.fd else { return 1 }
    log.info("flows-fcgi \(flowsFCGIVersion) serving FastCGI", [
        "on": mode.description, "threads": String(options.threads),
        "processes": String(max(options.processes, 1)), "keys": String(configuration.keys.count),
        "flows": configuration.flows.keys.sorted().joined(separator: ","),
        "database": configuration.database?.shown ?? "none",
    ])
    // One serving process: worker threads, the callback delivery thread when CALLBACK_URL is set, and the
    // automatic purge thread (RETENTION_DAYS).
    let serve = { () -> Int32 in
        // One malloc arena per process instead of one per thread (each new arena is memory that stays resident);
        // threads keep their own small-allocation caches, so they rarely wait for each other. Blocks of 128 KiB and
        // more (a large read-API answer, a webhook batch) are mapped and unmapped on their own instead of growing
        // the heap for good. MALLOC_ARENA_MAX and MALLOC_MMAP_THRESHOLD_ in the environment still decide.
        if getenv("MALLOC_ARENA_MAX") == nil { _ = cflows_set_malloc_arena_max(1) }
        if getenv("MALLOC_MMAP_THRESHOLD_") == nil { _ = cflows_set_malloc_mmap_threshold(128 * 1024) }
        let delivery = CallbackDelivery.start(configuration: configuration, log: log)
        let purge = Purge.start(configuration: configuration, log: log)
        releaseStartupCode()
        let status = serveFastCGI(fd: fd, threads: options.threads, endpoint: endpoint)
        stopRequested.store(true, ordering: .sequentiallyConsistent)
        if let delivery { pthread_join(delivery, nil) }
        if let purge { pthread_join(purge, nil) }
        return status
    }
    let status = options.processes > 0 ? prefork(processes: options.processes, log: log, serve: serve) : serve()
    if case .ownSocket(_, _, let path?) = mode { unlink(path) }
    log.info("stopped", ["status": String(status)])
    return status
}

exit(run())
