import FlowCore
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The `Tests/Fixtures` folder.
let fixturesDirectory: String = {
    let file = "\(#filePath)"
    let testsDir = file.split(separator: "/", omittingEmptySubsequences: false).dropLast(2).joined(separator: "/")
    return testsDir + "/Fixtures"
}()

/// The repository root.
let repositoryRoot: String = {
    let file = "\(#filePath)"
    return file.split(separator: "/", omittingEmptySubsequences: false).dropLast(3).joined(separator: "/")
}()

func fixture(_ name: String) throws -> [UInt8] {
    try readFile(fixturesDirectory + "/" + name, what: "fixture")
}

func fixtureText(_ name: String) throws -> String {
    try readTextFile(fixturesDirectory + "/" + name, what: "fixture")
}

/// The names in a directory (without `.` and `..`).
func listDirectory(_ path: String) throws -> [String] {
    guard let directory = opendir(path) else { throw FlowJSONChecker.LoadError(description: "cannot list \(path)") }
    defer { closedir(directory) }
    var names: [String] = []
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != ".", name != ".." { names.append(name) }
    }
    return names.sorted()
}

/// A fresh temporary directory.
func temporaryDirectory() -> String {
    var template = Array("/tmp/flowcore-test-XXXXXX".utf8CString)
    let path = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    return String(cString: path!)
}

func writeFile(_ path: String, _ text: String, mode: mode_t = 0o600) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode)
    precondition(fd >= 0, "cannot write \(path)")
    let bytes = Array(text.utf8)
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
}

/// The test key pairs (see Tests/Fixtures/keys/README.md); parsed once.
enum TestKeys {
    static let passphrase = "test-pass"
    static let pkcs1 = load("keys/pkcs1.pem", passphrase: nil)
    static let pkcs8 = load("keys/pkcs8.pem", passphrase: nil)
    static let pkcs8Encrypted = load("keys/pkcs8-enc.pem", passphrase: passphrase)

    static func load(_ name: String, passphrase: String?) -> PrivateKey {
        try! PrivateKey.load(pem: try! fixture(name), passphrase: passphrase, file: name)
    }
}

/// A flow for exercising the endpoint: answers from a closure, so each test states what the flow does.
struct ScriptedFlow: Flow {
    let name: String
    let migrations: [Migration] = []
    let answer: @Sendable (FlowRequest) throws -> FlowAnswer

    func handle(_ request: FlowRequest, context: FlowContext) throws -> FlowAnswer {
        try answer(request)
    }
}

/// An endpoint with the pkcs8 test key, app secret `secret` (previous `old-secret`) and `flows`.
func makeEndpoint(
    flows: [ScriptedFlow] = [ScriptedFlow(name: "demo") { .screen("NEXT", data: ["echo": .string($0.flowToken)]) }],
    extra: [String: String] = [:],
    keys: String = fixturesDirectory + "/keys/pkcs8.pem"
) throws -> Endpoint {
    var values = ["APP_SECRET": "secret", "APP_SECRET_PREVIOUS": "old-secret", "PRIVATE_KEY_FILE": keys,
                  "MAX_BODY_BYTES": "4096"]
    for (k, v) in extra { values[k] = v }
    let factories = flows.map { flow in FlowFactory(name: flow.name, settingNames: []) { _ in flow } }
    let configuration = try Configuration(settings: Settings(values), flows: factories)
    return Endpoint(configuration: configuration, log: .discard, clock: { 1_800_000_000 })
}

/// A client's view of one encrypted call.
struct ClientCall {
    let body: [UInt8]
    let aesKey: [UInt8]
    let iv: [UInt8]

    /// The clear-text request, when the call was made from one.
    let clear: JSONValue?

    init(_ clear: JSONValue, for key: PrivateKey = TestKeys.pkcs8) {
        let (envelope, aesKey, iv) = FlowCrypto.encryptRequest(clear.serialized, for: key)
        body = envelope.body
        self.aesKey = aesKey
        self.iv = iv
        self.clear = clear
    }

    init(body: [UInt8], aesKey: [UInt8], iv: [UInt8]) {
        self.body = body
        self.aesKey = aesKey
        self.iv = iv
        clear = nil
    }

    func request(path: String = "/flows/demo", secret: String = "secret", method: String = "POST") -> EndpointRequest {
        EndpointRequest(method: method, path: path,
                        params: [(Signature.parameterName, Signature.header(for: body, secret: Array(secret.utf8)))],
                        body: body)
    }

    /// Decrypts a 200 or 427 answer; an answer of a shipped flow is checked, as sent, against its Flow JSON.
    func open(_ response: EndpointResponse, sourceLocation: SourceLocation = #_sourceLocation) throws -> JSONValue {
        let answer = try JSONParser.parse(try FlowCrypto.openAnswer(String(decoding: response.body, as: UTF8.self),
                                                                    key: aesKey, requestIV: iv))
        if response.status == 200, let request = flowRequest,
            let checker = FlowJSONChecker.shipped(knowing: request.screen)
                ?? FlowJSONChecker.shipped(knowing: answer["screen"]?.stringValue ?? "")
        {
            #expect(checker.problems(request: request, sent: answer) == [], "answer breaks \(checker.source)",
                    sourceLocation: sourceLocation)
        }
        return answer
    }

    /// The request as a flow sees it: `nil` for a ping, an error notification, or anything the endpoint refuses.
    private var flowRequest: FlowRequest? {
        guard let clear, let action = clear["action"]?.stringValue.flatMap(FlowAction.init(rawValue:)),
            let version = clear["version"]?.stringValue, let token = clear["flow_token"]?.stringValue
        else { return nil }
        let data = clear["data"]?.objectValue ?? [:]
        if let error = data["error_key"] ?? data["error"], error != .null { return nil }
        return FlowRequest(version: version, action: action, screen: clear["screen"]?.stringValue ?? "", data: data,
                           flowToken: token)
    }
}

/// Calls `endpoint` with a fresh worker (no database).
func call(_ endpoint: Endpoint, _ request: EndpointRequest) throws -> EndpointResponse {
    endpoint.handle(request, worker: try Worker(configuration: endpoint.configuration))
}

/// Records an issue for every line of the log at `path` that holds one of `values` (the flow tokens, names, emails,
/// phones and texts a test sent), quoting the line with the value masked. Every test that writes a log file and
/// sends personal data checks it with this.
func expectNoPersonalData(inLog path: String, _ values: [String], sourceLocation: SourceLocation = #_sourceLocation) {
    let text = (try? readTextFile(path, what: "log")) ?? ""
    for line in text.split(separator: "\n") {
        for value in values where !value.isEmpty && line.contains(value) {
            Issue.record("the log \(path) holds personal data: \(line.replacing(value, with: "<personal data>"))",
                         sourceLocation: sourceLocation)
        }
    }
}

// MARK: - Shipped flows, checked

extension Flow {
    /// Runs the flow as the endpoint does and checks the answer, as sent (`FlowAnswer.clearText`), against
    /// `flows/<name>.json`. Unit tests call a flow only through here (directly or through the harnesses), so every
    /// answer any test produces is checked (`FlowJSONCheckerTests.everyFlowAnswerInTheTestsIsChecked` keeps it that
    /// way); answers through an endpoint are checked where the client opens them, in `ClientCall.open`.
    func checkedHandle(_ request: FlowRequest, context: FlowContext,
                       sourceLocation: SourceLocation = #_sourceLocation) throws -> FlowAnswer {
        let answer = try handle(request, context: context)
        guard let checker = FlowJSONChecker.shipped[name] else {
            Issue.record("no flows/\(name).json for the flow '\(name)'", sourceLocation: sourceLocation)
            return answer
        }
        let problems = checker.problems(request: request, answer: answer)
        #expect(problems == [], "answer breaks flows/\(name).json", sourceLocation: sourceLocation)
        return answer
    }
}
