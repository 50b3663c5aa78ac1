import FlowCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `flows-fcgi probe`: acts as WhatsApp against a running endpoint. Encrypts a ping (or an INIT for a flow) to
/// the public key, signs it with the app secret, sends it over HTTP(S) or straight to a FastCGI socket, decrypts
/// and prints the answer, and explains the error statuses WhatsApp would see.
enum Probe {
    static let usage = """
        usage: flows-fcgi probe URL|unix:/path.sock|fcgi://HOST:PORT [--flow NAME] [--init] [--config FILE]
                                [--public-key FILE]

        Sends what WhatsApp sends: a ping (or with --init an INIT of flow NAME with a random flow token),
        encrypted to the public key and signed with APP_SECRET, and prints the decrypted answer.
          URL                 http(s)://host/prefix/flows/NAME, or http(s)://host/prefix (then /flows/NAME is added)
          unix:/path.sock     the responder's FastCGI socket, without a web server (also fcgi://127.0.0.1:9000)
          --flow NAME         the flow to address (default: the one in the URL, else the first served flow)
          --init              send an INIT instead of a ping
          --config FILE       settings as the responder reads them: APP_SECRET and (without --public-key) the key
          --public-key FILE   encrypt to this SPKI PEM public key (e.g. the public.pem uploaded to Meta)
        Exit status: 0 when the endpoint answers 200 with an answer that decrypts, 1 otherwise, 2 usage,
        78 configuration error.
        """

    /// Runs `probe` with `arguments`; returns the exit status.
    static func run(_ arguments: [String]) -> Int32 {
        guard let parsed = CommandArguments.parse(arguments, command: "probe",
                                                  valued: ["--flow", "--config", "--public-key"], switches: ["--init"],
                                                  usage: usage) else {
            return ExitStatus.usage
        }
        if parsed.help { return 0 }
        guard parsed.positional.count == 1 else {
            return parsed.usageError("needs one target: a URL, unix:/path.sock or fcgi://HOST:PORT")
        }
        let secret: [UInt8]
        let key: PrivateKey
        do {
            let settings = try Settings(environment: currentEnvironment(), file: parsed["--config"],
                                        names: Configuration.allSettingNames)
            guard let value = settings["APP_SECRET"], !value.isEmpty else {
                printError("APP_SECRET is not set (in the environment or the --config file): the probe signs with it")
                return ExitStatus.config
            }
            secret = Array(value.utf8)
            key = try operatorKey(publicKeyFile: parsed["--public-key"], settings: settings)
        } catch {
            return configurationFailure(error)
        }
        // The flows this configuration serves, to name them (form flows too when FLOWS_DIR loads).
        let served = (try? Settings(environment: currentEnvironment(), file: parsed["--config"],
                                    names: Configuration.allSettingNames))
            .flatMap { try? Command.servedFlows($0).map(\.name) } ?? FlowRegistry.all.map(\.name)
        return probe(parsed.positional[0], flow: parsed["--flow"], initialise: parsed.has("--init"), key: key,
                     secret: secret, served: served)
    }

    /// Where the probe goes.
    private enum Target {
        case http(CallbackTarget)
        case fastCGI(address: String, connect: () throws(HTTPError) -> Connection)
    }

    private static func probe(_ address: String, flow: String?, initialise: Bool, key: PrivateKey,
                              secret: [UInt8], served: [String]) -> Int32 {
        var flowName = flow
        var target: Target
        var path: String
        do {
            if address.hasPrefix("unix:") {
                let socketPath = String(address.dropFirst("unix:".count))
                target = .fastCGI(address: address) { () throws(HTTPError) in
                    try Connection.unix(path: socketPath, timeoutSeconds: 10)
                }
                path = ""
            } else if address.hasPrefix("fcgi://") {
                let http = try CallbackTarget(url: "http://" + address.dropFirst("fcgi://".count), setting: "target")
                target = .fastCGI(address: address) { () throws(HTTPError) in
                    try Connection.tcp(host: http.host, port: http.port, timeoutSeconds: 10)
                }
                path = ""
            } else {
                let http = try CallbackTarget(url: address, setting: "target")
                target = .http(http)
                path = String(http.path.prefix { $0 != "?" })
            }
        } catch {
            printError("\(error.description) (or unix:/path.sock, fcgi://HOST:PORT)")
            return ExitStatus.usage
        }
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        if segments.count >= 3, segments[segments.count - 2] == "flows" {
            let named = String(segments[segments.count - 1])
            if let flowName, flowName != named {
                printError("--flow \(flowName) differs from the flow in the URL (\(named))")
                return ExitStatus.usage
            }
            flowName = named
        } else {
            while path.hasSuffix("/") { path.removeLast() }
            path += "/flows/" + (flowName ?? served.first ?? "appointment")
        }
        let name = flowName ?? served.first ?? "appointment"
        if case .http(let http) = target {
            let url = (http.secure ? "https://" : "http://") + "\(bracketed(http.host)):\(http.port)\(path)"
            guard let withPath = try? CallbackTarget(url: url, setting: "target") else {
                printError("cannot address \(url)")
                return ExitStatus.usage
            }
            target = .http(withPath)
        }
        var request: JSONValue = ["version": "3.0", "action": "ping"]
        if initialise {
            let token = "probe-" + Hex.encode(Digest.randomBytes(12))
            request = ["version": "3.0", "action": "INIT", "flow_token": .string(token)]
        }
        let sealed = FlowCrypto.encryptRequest(request.serialized, for: key)
        let body = sealed.envelope.body
        let signature = Signature.header(for: body, secret: secret)
        let what = initialise ? "INIT of flow \(name)" : "ping"
        let shownPath = address.hasPrefix("http") ? "" : " (path \(path))"
        writeAll(1, Array("sending a \(what) to \(address)\(shownPath)\n".utf8))
        let answer: HTTPResponse
        do throws(HTTPError) {
            switch target {
            case .http(let url):
                answer = try HTTPClient.send("POST", to: url, headers: [
                    ("Content-Type", "application/json"), ("X-Hub-Signature-256", signature),
                ], body: body)
            case .fastCGI(_, let connect):
                answer = try FastCGIClient.request(connect(), params: [
                    ("REQUEST_METHOD", "POST"), ("SCRIPT_NAME", path), ("REQUEST_URI", path), ("DOCUMENT_URI", path),
                    ("CONTENT_TYPE", "application/json"), ("CONTENT_LENGTH", String(body.count)),
                    ("SERVER_PROTOCOL", "HTTP/1.1"), ("GATEWAY_INTERFACE", "CGI/1.1"),
                    ("HTTP_X_HUB_SIGNATURE_256", signature),
                ], stdin: body, what: address)
            }
        } catch {
            printError("the probe got no answer: \(error.description)")
            return 1
        }
        writeAll(1, Array("HTTP \(answer.status)\n".utf8))
        guard answer.status == 200 else {
            printError(explain(answer.status, flow: name, key: key, served: served))
            let text = String(decoding: answer.body.prefix(300), as: UTF8.self)
            if !text.isEmpty { writeAll(2, Array("answer body: \(text)\n".utf8)) }
            return 1
        }
        let text = String(decoding: answer.body, as: UTF8.self).trimmed
        guard let clear = try? FlowCrypto.openAnswer(text, key: sealed.aesKey, requestIV: sealed.iv),
              let json = try? JSONParser.parse(clear) else {
            printError("the answer (HTTP 200) is not sealed with the request's key: it does not decrypt (a proxy or "
                + "another application answered?)")
            return 1
        }
        writeAll(1, Array((pretty(json) + "\n").utf8))
        return 0
    }

    private static func bracketed(_ host: String) -> String { host.contains(":") ? "[\(host)]" : host }

    /// What an error status means and what to check.
    static func explain(_ status: Int, flow: String, key: PrivateKey, served: [String]) -> String {
        switch status {
        case 421:
            return "421: the endpoint could not decrypt the request. The public key the probe used (\(key.source), "
                + "SHA-256 fingerprint \(key.publicKeyFingerprint)) is not the half of any key in the responder's "
                + "PRIVATE_KEY_FILE: compare with the fingerprints `flows-fcgi check` prints on the server"
        case 432:
            return "432: the endpoint rejected the signature: the probe's APP_SECRET is not the responder's "
                + "APP_SECRET (nor APP_SECRET_PREVIOUS); check both configurations (App settings > Basic)"
        case 427:
            return "427: the flow token is no longer valid (completed flow or expired session)"
        case 404:
            return "404: nothing answers this path: the path must end in /flows/\(flow) with a flow the responder "
                + "serves (\(served.joined(separator: ", "))), and the web server's location "
                + "prefix must route to the responder"
        case 413:
            return "413: the request body is above MAX_BODY_BYTES or the web server's limit (client_max_body_size)"
        case 400, 405:
            return "\(status): the endpoint did not take this as a Flows request (wrong method or not an envelope)"
        case 500..<600:
            return "\(status): the endpoint failed (storage unavailable, responder down behind the web server?): "
                + "see the responder's log"
        default:
            return "\(status): unexpected answer (WhatsApp expects 200)"
        }
    }

    /// JSON with two-space indentation and sorted keys.
    static func pretty(_ value: JSONValue, indent: String = "") -> String {
        let inner = indent + "  "
        switch value {
        case .array(let items) where !items.isEmpty:
            return "[\n" + items.map { inner + pretty($0, indent: inner) }.joined(separator: ",\n") + "\n\(indent)]"
        case .object(let members) where !members.isEmpty:
            let lines = members.keys.sorted().map { key in
                inner + JSONValue.string(key).text + ": " + pretty(members[key]!, indent: inner)
            }
            return "{\n" + lines.joined(separator: ",\n") + "\n\(indent)}"
        default:
            return value.text
        }
    }
}

/// A FastCGI client for one request (responder role), as a web server speaks it.
enum FastCGIClient {
    private enum RecordType {
        static let beginRequest: UInt8 = 1
        static let endRequest: UInt8 = 3
        static let params: UInt8 = 4
        static let stdin: UInt8 = 5
        static let stdout: UInt8 = 6
    }

    /// Sends `params` and `stdin` as request 1 on `connection` and returns the responder's answer.
    static func request(_ connection: Connection, params: [(String, String)], stdin: [UInt8],
                        what: String) throws(HTTPError) -> HTTPResponse {
        var out = record(RecordType.beginRequest, [0, 1, 0, 0, 0, 0, 0, 0])  // role RESPONDER, no keep-alive
        var encoded: [UInt8] = []
        for (name, value) in params {
            for field in [Array(name.utf8), Array(value.utf8)] { encoded += length(field.count) }
            encoded += Array(name.utf8) + Array(value.utf8)
        }
        out += stream(RecordType.params, encoded) + stream(RecordType.stdin, stdin)
        try connection.write(out)
        var input: [UInt8] = []
        var stdout: [UInt8] = []
        var offset = 0
        while true {
            while input.count - offset < 8 || input.count - offset < 8 + contentAndPadding(input, offset) {
                guard try connection.read(into: &input) > 0 else {
                    throw HTTPError("\(what) closed the connection before the end of the FastCGI answer")
                }
            }
            let type = input[offset + 1]
            let contentLength = Int(input[offset + 4]) << 8 | Int(input[offset + 5])
            if type == RecordType.stdout {
                stdout += input[(offset + 8)..<(offset + 8 + contentLength)]
            }
            offset += 8 + contentAndPadding(input, offset)
            if type == RecordType.endRequest { break }
        }
        return try cgiAnswer(stdout, from: what)
    }

    private static func contentAndPadding(_ bytes: [UInt8], _ offset: Int) -> Int {
        guard bytes.count - offset >= 8 else { return 0 }
        return (Int(bytes[offset + 4]) << 8 | Int(bytes[offset + 5])) + Int(bytes[offset + 6])
    }

    private static func record(_ type: UInt8, _ content: ArraySlice<UInt8>) -> [UInt8] {
        [1, type, 0, 1, UInt8(content.count >> 8), UInt8(content.count & 0xFF), 0, 0] + content
    }

    private static func record(_ type: UInt8, _ content: [UInt8]) -> [UInt8] { record(type, content[...]) }

    /// A stream's content in records of at most 65535 bytes, then the empty record that ends it.
    private static func stream(_ type: UInt8, _ content: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var start = 0
        while start < content.count {
            let end = min(start + 65535, content.count)
            out += record(type, content[start..<end])
            start = end
        }
        return out + record(type, [])
    }

    private static func length(_ count: Int) -> [UInt8] {
        count < 128 ? [UInt8(count)]
            : [UInt8(count >> 24) | 0x80, UInt8(count >> 16 & 0xFF), UInt8(count >> 8 & 0xFF), UInt8(count & 0xFF)]
    }

    /// A CGI answer (`Status:` and other headers, a blank line, the body) as an HTTP response.
    private static func cgiAnswer(_ bytes: [UInt8], from what: String) throws(HTTPError) -> HTTPResponse {
        var headEnd: Int?
        var bodyStart = 0
        for i in bytes.indices where bytes[i] == 10 {
            if i + 1 < bytes.count, bytes[i + 1] == 10 {
                headEnd = i
                bodyStart = i + 2
                break
            }
            if i + 2 < bytes.count, bytes[i + 1] == 13, bytes[i + 2] == 10 {
                headEnd = i
                bodyStart = i + 3
                break
            }
        }
        guard let headEnd else { throw HTTPError("\(what) sent no CGI headers") }
        var status = 200
        var headers: [(name: String, value: String)] = []
        for line in String(decoding: bytes[..<headEnd], as: UTF8.self).split(whereSeparator: { $0 == "\n" }) {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = String(line[..<colon]).trimmed
            let value = String(line[line.index(after: colon)...]).trimmed
            if name.lowercased() == "status" {
                status = Int(value.prefix { $0 != " " }) ?? 200
            } else {
                headers.append((name, value))
            }
        }
        return HTTPResponse(status: status, headers: headers, body: Array(bytes[bodyStart...]))
    }
}

/// Reports a failure to load the settings, a key or a file; returns the exit status for it (78).
func configurationFailure(_ error: any Error) -> Int32 {
    switch error {
    case let error as ConfigError: printError("configuration error: \(error.description)")
    case let error as KeyError: printError("cannot load the key: \(error.description)")
    default: printError(String(describing: error))
    }
    return ExitStatus.config
}

/// The public key the probe encrypts to and register-key uploads: `--public-key FILE` (SPKI PEM), else the
/// newest configured private key.
func operatorKey(publicKeyFile: String?, settings: Settings) throws -> PrivateKey {
    if let file = publicKeyFile {
        return try PrivateKey.loadPublicKey(pem: readFile(file, what: "public key"), file: file)
    }
    guard let first = try Configuration(settings: settings).keys.first else {
        throw ConfigError("no key configured: set PRIVATE_KEY_FILE or give --public-key FILE")
    }
    return first
}
