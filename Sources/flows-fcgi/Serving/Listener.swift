import FlowCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// How this process was asked to serve.
enum ServingMode {
    /// A socket this process created (`--listen`); `unixPath` is removed on exit.
    case ownSocket(fd: Int32, description: String, unixPath: String?)
    /// systemd socket activation: fd 3.
    case systemd(fd: Int32)
    /// A listening socket on fd 0 (spawn-fcgi, lighttpd bin-path, mod_fcgid).
    case inherited(fd: Int32)
    /// Plain CGI: one request on stdin/stdout.
    case cgi

    var fd: Int32? {
        switch self {
        case .ownSocket(let fd, _, _), .systemd(let fd), .inherited(let fd): return fd
        case .cgi: return nil
        }
    }

    var description: String {
        switch self {
        case .ownSocket(_, let description, _): return description
        case .systemd: return "systemd socket (fd 3)"
        case .inherited: return "inherited socket (fd 0)"
        case .cgi: return "CGI"
        }
    }
}

/// A startup failure: message for stderr and the exit status.
struct StartupError: Error {
    let message: String
    let status: Int32
}

func errnoText() -> String { String(cString: strerror(errno)) }

/// True when `fd` is a socket in the listening state.
func isListeningSocket(_ fd: Int32) -> Bool {
    var accepting: Int32 = 0
    var length = socklen_t(MemoryLayout<Int32>.size)
    return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &length) == 0 && accepting != 0
}

/// True when some serving mode applies (checked before the configuration, so a bare run prints the usage).
func servingModeRequested(options: Options, environment: [String: String]) -> Bool {
    options.listen != nil || environment["LISTEN_FDS"] != nil || isListeningSocket(0)
        || environment["GATEWAY_INTERFACE"] != nil
}

/// Picks the serving mode: `--listen`, then systemd's fd 3, then fd 0, then CGI; `nil` when none applies.
func chooseMode(options: Options, environment: [String: String]) throws(StartupError) -> ServingMode? {
    if let address = options.listen {
        return try openListener(address, options: options)
    }
    if let count = environment["LISTEN_FDS"], let pid = environment["LISTEN_PID"], Int32(pid) == getpid() {
        guard Int(count) == 1 else {
            throw StartupError(message: "LISTEN_FDS=\(count): expected exactly one socket from systemd", status: 1)
        }
        unsetenv("LISTEN_FDS")
        unsetenv("LISTEN_PID")
        unsetenv("LISTEN_FDNAMES")
        guard isListeningSocket(3) else {
            throw StartupError(message: "LISTEN_FDS=1 but fd 3 is not a listening socket", status: 1)
        }
        _ = fcntl(3, F_SETFD, FD_CLOEXEC)
        return .systemd(fd: 3)
    }
    if isListeningSocket(0) { return .inherited(fd: 0) }
    if environment["GATEWAY_INTERFACE"] != nil { return .cgi }
    return nil
}

private func openListener(_ address: String, options: Options) throws(StartupError) -> ServingMode {
    if address.hasPrefix("unix:") {
        let path = String(address.dropFirst(5))
        return try openUnixListener(path, options: options)
    }
    return try openTCPListener(address, options: options)
}

private func withSockaddrUn<T>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) throws(StartupError) -> T {
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    let capacity = MemoryLayout.size(ofValue: addr.sun_path)
    guard !bytes.isEmpty, bytes.count < capacity else {
        throw StartupError(message: "--listen unix:\(path): the path must be 1 to \(capacity - 1) bytes", status: 1)
    }
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
        for (i, b) in bytes.enumerated() { raw[i] = b }
    }
    return withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
}

private func openUnixListener(_ path: String, options: Options) throws(StartupError) -> ServingMode {
    var info = stat()
    if lstat(path, &info) == 0 {
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw StartupError(message: "--listen unix:\(path): a file that is not a socket is in the way; "
                + "not replacing it", status: 1)
        }
        // Live or stale? Try to connect to it.
        let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        let connected = try withSockaddrUn(path) { connect(probe, $0, $1) == 0 }
        let reason = errno
        close(probe)
        if connected || reason != ECONNREFUSED {
            throw StartupError(message: "--listen unix:\(path): another process is serving on this socket; "
                + "stop it first (not replacing a live socket)", status: 1)
        }
        unlink(path)
    }
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw StartupError(message: "socket(): \(errnoText())", status: 1) }
    let bound = try withSockaddrUn(path) { bind(fd, $0, $1) == 0 }
    guard bound else {
        let text = errnoText()
        close(fd)
        throw StartupError(message: "--listen unix:\(path): cannot bind: \(text)", status: 1)
    }
    if let group = options.socketGroup {
        guard let entry = getgrnam(group) else {
            unlink(path)
            throw StartupError(message: "--socket-group \(group): no such group", status: 1)
        }
        guard chown(path, uid_t.max, entry.pointee.gr_gid) == 0 else {
            let text = errnoText()
            unlink(path)
            throw StartupError(message: "--socket-group \(group): cannot change the socket's group: \(text)", status: 1)
        }
    }
    guard chmod(path, mode_t(options.socketMode)) == 0, listen(fd, options.backlog) == 0 else {
        let text = errnoText()
        unlink(path)
        throw StartupError(message: "--listen unix:\(path): \(text)", status: 1)
    }
    return .ownSocket(fd: fd, description: "unix:\(path)", unixPath: path)
}

private func openTCPListener(_ address: String, options: Options) throws(StartupError) -> ServingMode {
    guard let colon = address.lastIndex(of: ":") else {
        throw StartupError(message: "--listen \(address): expected unix:/path.sock or HOST:PORT", status: 1)
    }
    var host = String(address[..<colon])
    let portText = String(address[address.index(after: colon)...])
    guard let port = UInt16(portText), port > 0 else {
        throw StartupError(message: "--listen \(address): invalid port '\(portText)'", status: 1)
    }
    if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    guard !host.isEmpty, host != "*" else {
        throw StartupError(message: "--listen \(address): give the address to bind (127.0.0.1:\(port) for this "
            + "machine only; 0.0.0.0:\(port) to bind every interface on purpose)", status: 1)
    }
    if host == "localhost" { host = "127.0.0.1" }
    var v4 = in_addr()
    var v6 = in6_addr()
    let fd: Int32
    let bound: Bool
    if inet_pton(AF_INET, host, &v4) == 1 {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr = v4
        (fd, bound) = bindTCP(family: AF_INET, address: &addr)
    } else if inet_pton(AF_INET6, host, &v6) == 1 {
        var addr = sockaddr_in6()
        addr.sin6_family = sa_family_t(AF_INET6)
        addr.sin6_port = port.bigEndian
        addr.sin6_addr = v6
        (fd, bound) = bindTCP(family: AF_INET6, address: &addr)
    } else {
        throw StartupError(message: "--listen \(address): '\(host)' is not an IP address", status: 1)
    }
    guard bound, listen(fd, options.backlog) == 0 else {
        let text = errnoText()
        close(fd)
        throw StartupError(message: "--listen \(address): cannot bind: \(text)", status: 1)
    }
    return .ownSocket(fd: fd, description: address, unixPath: nil)
}

/// A TCP socket with SO_REUSEADDR bound to `address` (a `sockaddr_in` or `sockaddr_in6`).
private func bindTCP<Address>(family: Int32, address: inout Address) -> (fd: Int32, bound: Bool) {
    let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return (fd, false) }
    var one: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, socklen_t(MemoryLayout<Address>.size)) == 0
        }
    }
    return (fd, bound)
}
