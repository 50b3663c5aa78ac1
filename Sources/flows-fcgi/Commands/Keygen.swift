import FlowCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `flows-fcgi keygen`: a new RSA key pair for the Flows endpoint, the private half encrypted with a passphrase
/// that never appears on the command line.
enum Keygen {
    static let usage = """
        usage: flows-fcgi keygen --out DIR [--bits 2048] [--format pkcs8|pkcs1] [--passphrase-file FILE]

        Writes DIR/private.pem (mode 0600, encrypted with the passphrase) and DIR/public.pem (0644, the
        SubjectPublicKeyInfo PEM to upload to Meta), refusing to overwrite either; prints the public key, its
        SHA-256 fingerprint and the settings to configure.
          --out DIR               the directory for the two files (must exist)
          --bits N                RSA modulus size, 2048 to 8192 (default 2048)
          --format F              pkcs8 (BEGIN ENCRYPTED PRIVATE KEY, AES-256-CBC; default) or pkcs1 (BEGIN RSA
                                  PRIVATE KEY with the legacy DES-EDE3-CBC header, as Meta's generator writes)
          --passphrase-file FILE  read the passphrase from the first line of FILE
        Without --passphrase-file the passphrase comes from the PASSPHRASE environment variable, else from a prompt
        on the terminal (asked twice). It is never taken from the command line.
        """

    /// Runs `keygen` with `arguments`; returns the exit status.
    static func run(_ arguments: [String]) -> Int32 {
        if arguments.contains(where: { $0 == "--passphrase" || $0.hasPrefix("--passphrase=") }) {
            printError("keygen: the passphrase is never taken from the command line (other users can read it in the "
                + "process list): use --passphrase-file FILE, PASSPHRASE or the prompt")
            return ExitStatus.usage
        }
        guard let parsed = CommandArguments.parse(arguments, command: "keygen",
                                                  valued: ["--out", "--bits", "--format", "--passphrase-file"],
                                                  usage: usage) else { return ExitStatus.usage }
        if parsed.help { return 0 }
        if let extra = parsed.positional.first { return parsed.usageError("unexpected argument \(extra)") }
        let outArgument = parsed["--out"]
        let passphraseFile = parsed["--passphrase-file"]
        let bits: Int
        let format: PrivateKey.PEMFormat
        do throws(CommandArguments.Problem) {
            bits = try parsed.integer("--bits", range: 2048...8192) ?? 2048
        } catch {
            return parsed.usageError(error.message)
        }
        switch parsed["--format"] ?? "pkcs8" {
        case "pkcs8": format = .pkcs8
        case "pkcs1": format = .pkcs1
        case let other: return parsed.usageError("--format must be pkcs8 or pkcs1, not '\(other)'")
        }
        guard let given = outArgument else {
            return parsed.usageError("needs --out DIR")
        }
        // Absolute paths, so the settings printed at the end can be pasted as they are.
        guard let resolved = realpath(given, nil) else {
            return failure("--out \(given): \(String(cString: strerror(errno)))")
        }
        let out = String(cString: resolved)
        free(resolved)
        let privatePath = (out == "/" ? "" : out) + "/private.pem"
        let publicPath = (out == "/" ? "" : out) + "/public.pem"
        for path in [privatePath, publicPath] {
            var info = stat()
            if lstat(path, &info) == 0 {
                return failure("\(path) already exists: keygen never overwrites a key (move it away or pick "
                    + "another --out directory)")
            }
        }
        var directory = stat()
        guard stat(out, &directory) == 0, directory.st_mode & S_IFMT == S_IFDIR else {
            return failure("--out \(out): not an existing directory")
        }

        let passphrase: String
        do {
            passphrase = try readPassphrase(file: passphraseFile)
        } catch {
            return failure(error.description)
        }

        let key: PrivateKey
        do {
            key = try PrivateKey.generate(bits: bits)
        } catch {
            return failure(error.description)
        }
        let privatePEM = key.privateKeyPEM(format: format, passphrase: passphrase)
        let publicPEM = key.publicKeyPEM
        guard !privatePEM.isEmpty, !publicPEM.isEmpty else { return failure("could not encode the key as PEM") }
        do {
            try createExclusive(privatePath, Array(privatePEM.utf8), mode: 0o600)
        } catch {
            return failure(error.description)
        }
        do {
            try createExclusive(publicPath, Array(publicPEM.utf8), mode: 0o644)
        } catch {
            unlink(privatePath)
            return failure(error.description)
        }

        let passphraseHint = passphraseFile.flatMap { file in
            realpath(file, nil).map { pointer in
                defer { free(pointer) }
                return String(cString: pointer)
            }
        } ?? "/path/to/a/file/holding/the/passphrase   (mode 0600, readable by the responder's user only)"
        let text = """
            wrote \(privatePath) (mode 0600, \(format == .pkcs8 ? "PKCS#8" : "PKCS#1"), RSA-\(key.bits), \
            encrypted with the passphrase)
            wrote \(publicPath) (mode 0644)

            Public key (upload this):
            \(publicPEM)
            SHA-256 fingerprint: \(key.publicKeyFingerprint)
              (compare: openssl pkey -pubin -in \(publicPath) -outform DER | sha256sum)

            Upload it for each phone number that sends these Flows (Graph API, a token with
            whatsapp_business_messaging):
              curl -X POST 'https://graph.facebook.com/v21.0/<PHONE_NUMBER_ID>/whatsapp_business_encryption' \\
                -H 'Authorization: Bearer <ACCESS_TOKEN>' \\
                --data-urlencode business_public_key@\(publicPath)

            Then configure the responder (environment or --config file):
              PRIVATE_KEY_FILE=\(privatePath)
              PASSPHRASE_FILE=\(passphraseHint)
            and run: flows-fcgi check --config FILE

            """
        writeAll(1, Array(text.utf8))
        return 0
    }

    /// The passphrase from `file`, else `PASSPHRASE`, else the terminal (asked twice).
    private static func readPassphrase(file: String?) throws(ConfigError) -> String {
        var passphrase: String
        if let file {
            let text = try readTextFile(file, what: "--passphrase-file")
            passphrase = String(text.prefix { $0 != "\n" && $0 != "\r\n" })
            while passphrase.hasSuffix("\r") { passphrase.removeLast() }
            guard !passphrase.isEmpty else { throw ConfigError("--passphrase-file \(file): the first line is empty") }
        } else if let value = currentEnvironment()["PASSPHRASE"] {
            guard !value.isEmpty else { throw ConfigError("PASSPHRASE is set but empty") }
            passphrase = value
        } else {
            let first = try Terminal.readSecret(prompt: "Passphrase for the new private key: ")
            guard !first.isEmpty else { throw ConfigError("the passphrase is empty: no key written") }
            let second = try Terminal.readSecret(prompt: "The same passphrase again: ")
            guard first == second else { throw ConfigError("the two passphrases differ: no key written") }
            passphrase = first
        }
        guard passphrase.utf8.count >= 4 else {
            throw ConfigError("the passphrase is shorter than 4 bytes (OpenSSL needs at least 4): no key written")
        }
        return passphrase
    }

    /// Creates `path` with `mode` (exactly, whatever the umask), failing when it already exists.
    private static func createExclusive(_ path: String, _ bytes: [UInt8], mode: mode_t) throws(ConfigError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else {
            let reason = errno == EEXIST ? "already exists (never overwritten)" : String(cString: strerror(errno))
            throw ConfigError("\(path): cannot create: \(reason)")
        }
        defer { close(fd) }
        fchmod(fd, mode)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else {
                let reason = String(cString: strerror(errno))
                unlink(path)
                throw ConfigError("\(path): cannot write: \(reason)")
            }
            offset += n
        }
        guard fsync(fd) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(path)
            throw ConfigError("\(path): cannot write: \(reason)")
        }
    }

    private static func failure(_ message: String) -> Int32 {
        printError(message)
        return 1
    }
}

/// The controlling terminal, for reading a secret with echo off.
enum Terminal {
    /// Writes `prompt` to `/dev/tty` and reads one line with echo turned off (restored afterwards).
    static func readSecret(prompt: String) throws(ConfigError) -> String {
        let fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else {
            throw ConfigError("no terminal to ask for the passphrase (/dev/tty: \(String(cString: strerror(errno)))): "
                + "use --passphrase-file FILE or PASSPHRASE")
        }
        defer { close(fd) }
        var saved = termios()
        guard tcgetattr(fd, &saved) == 0 else {
            throw ConfigError("/dev/tty: cannot read the terminal settings: \(String(cString: strerror(errno)))")
        }
        var quiet = saved
        quiet.c_lflag &= ~tcflag_t(ECHO)
        quiet.c_lflag |= tcflag_t(ECHONL)
        guard tcsetattr(fd, TCSAFLUSH, &quiet) == 0 else {
            throw ConfigError("/dev/tty: cannot turn echo off: \(String(cString: strerror(errno)))")
        }
        defer { tcsetattr(fd, TCSAFLUSH, &saved) }
        writeAll(fd, Array(prompt.utf8))
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while true {
            let n = read(fd, &byte, 1)
            if n < 0, errno == EINTR { continue }
            if n <= 0 || byte == 0x0A { break }
            line.append(byte)
            if line.count > 4096 { throw ConfigError("the passphrase is longer than 4096 bytes") }
        }
        defer {
            for i in line.indices { line[i] = 0 }
        }
        while line.last == 0x0D { line.removeLast() }
        return String(decoding: line, as: UTF8.self)
    }
}
