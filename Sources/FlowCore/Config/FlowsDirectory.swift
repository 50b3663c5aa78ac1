#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Configuration {
    /// Where a package installs the shipped Flow JSON, relative to the binary's folder (`/usr/bin` ->
    /// `/usr/share/flows-fcgi/flows`, `/usr/local/bin` -> `/usr/local/share/flows-fcgi/flows`).
    public static let installedFlowsPath = "../share/flows-fcgi/flows"

    /// The folder of Flow JSON files (`FLOWS_DIR`), resolved the same way by the responder and every command:
    /// `FLOWS_DIR` when set (it must be a folder), else `<the binary's folder>/../share/flows-fcgi/flows` (an
    /// installed package), else the `flows/` folder of the source tree the binary was built in, found by walking up
    /// from the binary (`.build/release/flows-fcgi` -> `flows/` beside `Package.swift`). So the demo, CGI,
    /// spawn-fcgi and the systemd unit find the shipped flows with nothing configured.
    /// - Parameter executable: the binary's path (default: `/proc/self/exe`, symbolic links resolved).
    /// - Throws: `ConfigError` naming `FLOWS_DIR` or the places looked in.
    public static func flowsDirectory(_ settings: Settings, executable: String? = nil) throws(ConfigError) -> String {
        if let configured = settings["FLOWS_DIR"] {
            guard !configured.isEmpty, isDirectory(configured) else {
                throw ConfigError(setting: "FLOWS_DIR", value: configured, "not a folder")
            }
            return configured
        }
        guard let binary = executable.flatMap(realPath) ?? realPath("/proc/self/exe") else {
            throw ConfigError("FLOWS_DIR is not set and the binary's own path cannot be read: set FLOWS_DIR")
        }
        var folder = parent(binary)
        let installed = folder + "/" + installedFlowsPath
        if isDirectory(installed) { return realPath(installed) ?? installed }
        while folder != "/" {
            if isDirectory(folder + "/flows"), access(folder + "/Package.swift", F_OK) == 0 { return folder + "/flows" }
            folder = parent(folder)
        }
        throw ConfigError("FLOWS_DIR is not set, and neither \(parent(binary))/\(installedFlowsPath) nor a source "
            + "tree's flows/ folder above \(binary) exists: set FLOWS_DIR to the folder of the Flow JSON files")
    }

    private static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR
    }

    private static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// The folder part of an absolute path (`/a/b` -> `/a`, `/a` -> `/`).
    private static func parent(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }
}
