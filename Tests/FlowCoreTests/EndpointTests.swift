import FlowCore
import Testing

@Suite("X-Hub-Signature-256")
struct SignatureTests {
    let endpoint: Endpoint
    let call: ClientCall

    init() throws {
        endpoint = try makeEndpoint()
        call = ClientCall(["version": "3.0", "action": "ping"])
    }

    func respond(_ values: [String], body: [UInt8]? = nil) throws -> EndpointResponse {
        try FlowCoreTests.call(endpoint, EndpointRequest(
            method: "POST", path: "/flows/demo", params: values.map { (Signature.parameterName, $0) },
            body: body ?? call.body))
    }

    func hmacHex(_ secret: String, _ body: [UInt8]) -> String {
        Hex.encode(Digest.hmacSHA256(key: Array(secret.utf8), message: body))
    }

    @Test func validCurrentAndPreviousSecret() throws {
        #expect(try respond(["sha256=" + hmacHex("secret", call.body)]).status == 200)
        #expect(try respond(["sha256=" + hmacHex("old-secret", call.body)]).status == 200)
    }

    @Test func uppercaseHexIsTheSameDigest() throws {
        #expect(try respond(["sha256=" + hmacHex("secret", call.body).uppercased()]).status == 200)
    }

    @Test(arguments: [
        ["sha256=" + String(repeating: "0", count: 64)],  // wrong digest
        [],  // missing
        [""],  // empty
        ["sha256="],  // no digest
        ["sha1=abc"],  // other algorithm
        ["sha256=zz" + String(repeating: "0", count: 62)],  // not hex
    ])
    func refused(values: [String]) throws {
        let response = try respond(values)
        #expect(response.status == 432)
        #expect(response.header("Content-Type")?.hasPrefix("text/plain") == true)
    }

    @Test func wrongSecret() throws {
        #expect(try respond(["sha256=" + hmacHex("not-the-secret", call.body)]).status == 432)
    }

    @Test func duplicatedHeaderIsRefusedEvenWhenBothAreValid() throws {
        let good = "sha256=" + hmacHex("secret", call.body)
        #expect(try respond([good, good]).status == 432)
    }

    @Test func signatureOfReserialisedJSONFails() throws {
        // The client's exact bytes with spaces and escapes; a signature over the compact re-serialisation must fail.
        let envelope = try JSONParser.parse(call.body)
        let raw = "{ \"encrypted_flow_data\" :\t\"\(envelope["encrypted_flow_data"]!.stringValue!)\",\n"
            + " \"encrypted_aes_key\": \"\(envelope["encrypted_aes_key"]!.stringValue!.replacingSlashes())\","
            + " \"initial_vector\": \"\(envelope["initial_vector"]!.stringValue!)\", \"note\": \"caf\\u00e9\" }"
        let rawBytes = Array(raw.utf8)
        let reserialised = try JSONParser.parse(rawBytes).serialized
        #expect(reserialised != rawBytes)
        #expect(try respond(["sha256=" + hmacHex("secret", reserialised)], body: rawBytes).status == 432)
        // The same odd bytes signed as they are pass and decrypt.
        let response = try respond(["sha256=" + hmacHex("secret", rawBytes)], body: rawBytes)
        #expect(response.status == 200)
        #expect(try call.open(response) == ["data": ["status": "active"]])
    }

    @Test func checkedBeforeParsing() throws {
        // Garbage with a bad signature is 432, not 400: nothing is parsed before the signature holds.
        #expect(try respond(["sha256=" + hmacHex("wrong", [1, 2])], body: [1, 2]).status == 432)
        #expect(try respond(["sha256=" + hmacHex("secret", [1, 2])], body: [1, 2]).status == 400)
    }
}

extension String {
    /// JSON allows `\/` for `/`: the same value in different bytes.
    func replacingSlashes() -> String {
        var out = ""
        for c in self { if c == "/" { out += "\\/" } else { out.append(c) } }
        return out
    }
}

@Suite("Status codes through the entry point")
struct StatusTests {
    @Test func ping() throws {
        let endpoint = try makeEndpoint()
        let call = ClientCall(["version": "3.0", "action": "ping"])
        let response = try FlowCoreTests.call(endpoint, call.request())
        #expect(response.status == 200)
        #expect(response.header("Content-Type") == "text/plain")
        #expect(try call.open(response) == ["data": ["status": "active"]])
    }

    @Test(arguments: [
        ["error_key": "some.error", "error_message": "bad data"] as JSONValue,
        ["error": "INVALID_SCREEN"] as JSONValue,
    ])
    func errorNotificationIsAcknowledged(data: JSONValue) throws {
        let endpoint = try makeEndpoint(flows: [ScriptedFlow(name: "demo") { _ in
            Issue.record("an error notification must not reach the flow")
            return .screen("X", data: [:])
        }])
        let call = ClientCall(["version": "3.0", "action": "data_exchange", "screen": "A", "flow_token": "t",
                               "data": data])
        let response = try FlowCoreTests.call(endpoint, call.request())
        #expect(response.status == 200)
        #expect(try call.open(response) == ["data": ["acknowledged": true]])
    }

    /// Whatever the engine, a storage failure's outcome decides the status: unavailable and a lost race 503
    /// (retry), a value the database cannot hold 400, anything else 500.
    @Test(arguments: [(DatabaseError.Outcome.unavailable, 503), (.conflict, 503), (.invalidInput, 400),
                      (.failure, 500)])
    func storageOutcomesDecideTheStatus(outcome: DatabaseError.Outcome, status: Int) throws {
        let endpoint = try makeEndpoint(flows: [ScriptedFlow(name: "demo") { _ in
            throw DatabaseError(outcome: outcome, sqlState: "XX000", message: "m", context: "c")
        }])
        let call = ClientCall(["version": "3.0", "action": "INIT", "screen": "", "flow_token": "t", "data": [:]])
        #expect(try FlowCoreTests.call(endpoint, call.request()).status == status)
    }

    @Test(arguments: ["3.0", "4.0"])
    func flowActionsReachTheFlowNamedByThePath(version: String) throws {
        let endpoint = try makeEndpoint(flows: [
            ScriptedFlow(name: "demo") { .screen("DEMO", data: ["action": .string($0.action.rawValue)]) },
            ScriptedFlow(name: "other") { .screen("OTHER", data: ["token": .string($0.flowToken),
                                                                  "screen": .string($0.screen)]) },
        ])
        for action in ["INIT", "data_exchange", "BACK"] {
            let call = ClientCall(["version": .string(version), "action": .string(action), "screen": "S",
                                   "flow_token": "tok-1", "data": [:]])
            let demo = try FlowCoreTests.call(endpoint, call.request(path: "/prefix/flows/demo"))
            #expect(try call.open(demo) == ["screen": "DEMO", "data": ["action": .string(action)]])
            let other = try FlowCoreTests.call(endpoint, call.request(path: "/flows/other"))
            #expect(try call.open(other) == ["screen": "OTHER", "data": ["token": "tok-1", "screen": "S"]])
        }
    }

    @Test func flowTokenSignature() throws {
        let endpoint = try makeEndpoint()
        let good = FlowTokenSignature.make(flowToken: "tok", secret: Array("secret".utf8))
        let signed = ClientCall(["version": "4.0", "action": "INIT", "flow_token": "tok", "flow_token_signature": .string(good)])
        #expect(try FlowCoreTests.call(endpoint, signed.request()).status == 200)
        let previous = FlowTokenSignature.make(flowToken: "tok", secret: Array("old-secret".utf8))
        let rotated = ClientCall(["version": "4.0", "action": "INIT", "flow_token": "tok", "flow_token_signature": .string(previous)])
        #expect(try FlowCoreTests.call(endpoint, rotated.request()).status == 200)
        for bad in [FlowTokenSignature.make(flowToken: "another", secret: Array("secret".utf8)),
                    FlowTokenSignature.make(flowToken: "tok", secret: Array("wrong".utf8)), "not.a.jwt", ""] {
            let call = ClientCall(["version": "4.0", "action": "INIT", "flow_token": "tok", "flow_token_signature": .string(bad)])
            let response = try FlowCoreTests.call(endpoint, call.request())
            #expect(response.status == 427)
            #expect(try call.open(response)["error_msg"]?.stringValue != nil)
        }
    }

    @Test func flowSaysTokenNoLongerValid() throws {
        let endpoint = try makeEndpoint(flows: [ScriptedFlow(name: "demo") { _ in
            .tokenNoLongerValid(message: "This booking is complete.")
        }])
        let call = ClientCall(["version": "3.0", "action": "INIT", "flow_token": "done"])
        let response = try FlowCoreTests.call(endpoint, call.request())
        #expect(response.status == 427)
        #expect(try call.open(response) == ["error_msg": "This booking is complete."])
    }

    @Test func notTheEnvelopeIs400() throws {
        let endpoint = try makeEndpoint()
        for body in ["", "[]", "{}", "{\"encrypted_flow_data\":1,\"encrypted_aes_key\":\"a\",\"initial_vector\":\"b\"}",
                     "not json", "{\"encrypted_flow_data\":\"a\",\"encrypted_aes_key\":\"a\"}"] {
            let call = ClientCall(body: Array(body.utf8), aesKey: [], iv: [])
            #expect(try FlowCoreTests.call(endpoint, call.request()).status == 400, "body \(body)")
        }
    }

    @Test func unknownPathOrFlowIs404() throws {
        let endpoint = try makeEndpoint()
        let call = ClientCall(["version": "3.0", "action": "ping"])
        #expect(try FlowCoreTests.call(endpoint, call.request(path: "/flows/nope")).status == 404)
        #expect(try FlowCoreTests.call(endpoint, call.request(path: "/something/else")).status == 404)
        #expect(try FlowCoreTests.call(endpoint, call.request(path: "")).status == 404)
    }

    @Test func wrongMethodIs405WithAllow() throws {
        let endpoint = try makeEndpoint()
        let call = ClientCall(["version": "3.0", "action": "ping"])
        let response = try FlowCoreTests.call(endpoint, call.request(method: "GET"))
        #expect(response.status == 405)
        #expect(response.header("Allow") == "POST")
        let health = try FlowCoreTests.call(endpoint, call.request(path: "/x/health", method: "POST"))
        #expect(health.status == 405)
        #expect(health.header("Allow") == "GET, HEAD")
        #expect(try FlowCoreTests.call(endpoint, call.request(path: "/x/health", method: "GET")).status == 200)
        #expect(try FlowCoreTests.call(endpoint, call.request(path: "/health/live", method: "GET")).status == 200)
    }

    @Test func overTheBodyLimitIs413() throws {
        let endpoint = try makeEndpoint()
        let big = ClientCall(body: Array(repeating: 0x20, count: 4097), aesKey: [], iv: [])
        #expect(try FlowCoreTests.call(endpoint, big.request()).status == 413)
        var flagged = ClientCall(["version": "3.0", "action": "ping"]).request()
        flagged.bodyTooLarge = true
        #expect(try FlowCoreTests.call(endpoint, flagged).status == 413)
    }

    @Test func bodyShorterThanAnnouncedIsAClientAbortNotABadSignature() throws {
        let endpoint = try makeEndpoint()
        let call = ClientCall(["version": "3.0", "action": "ping"])
        var request = call.request()
        request.params.append(("CONTENT_LENGTH", String(call.body.count + 10)))
        let response = try FlowCoreTests.call(endpoint, request)
        #expect(response.status == 400)
        #expect(String(decoding: response.body, as: UTF8.self).contains("ended early"))
        request.params[request.params.count - 1].1 = String(call.body.count)
        #expect(try FlowCoreTests.call(endpoint, request).status == 200)
    }

    @Test func flowFaultsAre500WithoutDetailAnd503ForStorage() throws {
        struct Boom: Error {}
        let endpoint = try makeEndpoint(flows: [
            ScriptedFlow(name: "demo") { _ in throw Boom() },
            ScriptedFlow(name: "busy") { _ in
                throw DatabaseError(code: 5, message: "database is locked", context: "test")
            },
        ])
        let call = ClientCall(["version": "3.0", "action": "INIT", "flow_token": "t"])
        let fault = try FlowCoreTests.call(endpoint, call.request())
        #expect(fault.status == 500)
        #expect(String(decoding: fault.body, as: UTF8.self) == "internal error\n")
        #expect(try FlowCoreTests.call(endpoint, call.request(path: "/flows/busy")).status == 503)
    }

    @Test func decryptedButInvalidRequestsAre400() throws {
        let endpoint = try makeEndpoint()
        for clear in [["action": "ping"], ["version": "2.0", "action": "ping"], ["version": "3.0"],
                      ["version": "3.0", "action": "DANCE", "flow_token": "t"],
                      ["version": "3.0", "action": "INIT"]] as [JSONValue] {
            #expect(try FlowCoreTests.call(endpoint, ClientCall(clear).request()).status == 400, "\(clear.text)")
        }
    }
}

@Suite("421: anything that cannot be decrypted")
struct UndecryptableTests {
    let endpoint: Endpoint
    init() throws { endpoint = try makeEndpoint() }

    func status(_ envelope: Envelope) throws -> Int {
        try call(endpoint, ClientCall(body: envelope.body, aesKey: [], iv: []).request()).status
    }

    func parts(_ clear: [UInt8] = Array(#"{"version":"3.0","action":"ping"}"#.utf8), aesKey: [UInt8] = Digest.randomBytes(16),
               iv: [UInt8] = Digest.randomBytes(16), key: PrivateKey = TestKeys.pkcs8) throws -> (String, String, String) {
        let sealed = try AESGCM.seal(clear, key: aesKey, iv: iv)
        return (Base64.encode(sealed), Base64.encode(key.oaepEncrypt(aesKey)!), Base64.encode(iv))
    }

    @Test func twelveByteIV() throws {
        // AES-GCM itself accepts a 12-byte IV; the protocol does not.
        let aesKey = Digest.randomBytes(16)
        let iv = Digest.randomBytes(12)
        let sealed = Base64.encode(try AESGCM.seal(Array("{}".utf8), key: aesKey, iv: Digest.randomBytes(16)))
        #expect(try status(Envelope(encryptedFlowData: sealed, encryptedAESKey: Base64.encode(TestKeys.pkcs8.oaepEncrypt(aesKey)!),
                                    initialVector: Base64.encode(iv))) == 421)
    }

    @Test func thirtyTwoByteAESKey() throws {
        let (data, key, iv) = try parts(aesKey: Digest.randomBytes(32))
        #expect(try status(Envelope(encryptedFlowData: data, encryptedAESKey: key, initialVector: iv)) == 421)
    }

    @Test func flippedTagBit() throws {
        let (data, key, iv) = try parts()
        var sealed = Base64.decode(data)!
        sealed[sealed.count - 1] ^= 0x01
        #expect(try status(Envelope(encryptedFlowData: Base64.encode(sealed), encryptedAESKey: key, initialVector: iv)) == 421)
    }

    @Test func keyFromAnotherKeyPair() throws {
        let (data, key, iv) = try parts(key: TestKeys.pkcs1)
        #expect(try status(Envelope(encryptedFlowData: data, encryptedAESKey: key, initialVector: iv)) == 421)
    }

    @Test func invalidBase64InsideTheEnvelope() throws {
        let (data, key, iv) = try parts()
        #expect(try status(Envelope(encryptedFlowData: data + "!", encryptedAESKey: key, initialVector: iv)) == 421)
        #expect(try status(Envelope(encryptedFlowData: data, encryptedAESKey: "%%%", initialVector: iv)) == 421)
        #expect(try status(Envelope(encryptedFlowData: data, encryptedAESKey: key, initialVector: "AAA")) == 421)
    }

    @Test(arguments: ["[1,2]", "\"text\"", "{\"a\":", "\u{FF}\u{FE}", "{\"a\":1,\"a\":2}"])
    func clearTextNotAJSONObject(text: String) throws {
        var clear = Array(text.utf8)
        if text == "\u{FF}\u{FE}" { clear = [0xFF, 0xFE, 0x7B, 0x7D] }  // invalid UTF-8
        let (data, key, iv) = try parts(clear)
        #expect(try status(Envelope(encryptedFlowData: data, encryptedAESKey: key, initialVector: iv)) == 421)
    }

    @Test func keyRotationTriesEveryKeyNewestFirst() throws {
        let rotated = try makeEndpoint(keys: fixturesDirectory + "/keys/pkcs1.pem," + fixturesDirectory + "/keys/pkcs8.pem")
        for key in [TestKeys.pkcs1, TestKeys.pkcs8] {
            let call = ClientCall(["version": "3.0", "action": "ping"], for: key)
            let response = try FlowCoreTests.call(rotated, call.request())
            #expect(response.status == 200)
            #expect(try call.open(response) == ["data": ["status": "active"]])
        }
        let call = ClientCall(["version": "3.0", "action": "ping"], for: TestKeys.pkcs8Encrypted)
        #expect(try FlowCoreTests.call(rotated, call.request()).status == 421)
    }
}

@Suite("Routing on the path the server routed")
struct RoutingTests {
    @Test(arguments: [
        ([("SCRIPT_NAME", "/flows/appointment")], "/flows/appointment"),  // nginx fastcgi_params
        ([("SCRIPT_NAME", "/cgi-bin/flows.cgi"), ("PATH_INFO", "/flows/appointment")], "/cgi-bin/flows.cgi/flows/appointment"),
        ([("SCRIPT_NAME", "/flows"), ("PATH_INFO", "/appointment")], "/flows/appointment"),  // lighttpd at /
        ([("SCRIPT_NAME", ""), ("DOCUMENT_URI", "/wa/flows/appointment")], "/wa/flows/appointment"),
        ([("REQUEST_URI", "/flows/appointment?x=1")], "/flows/appointment"),
    ] as [([(String, String)], String)])
    func routedPath(params: [(String, String)], expected: String) {
        #expect(EndpointRequest.routedPath(params: params) == expected)
    }

    @Test func anyPrefixReachesTheFlow() throws {
        let endpoint = try makeEndpoint()
        for path in ["/flows/demo", "/whatsapp/flows/demo", "/cgi-bin/flows.cgi/flows/demo", "/flows/demo/"] {
            let call = ClientCall(["version": "3.0", "action": "ping"])
            #expect(try FlowCoreTests.call(endpoint, call.request(path: path)).status == 200, "\(path)")
        }
        let call = ClientCall(["version": "3.0", "action": "ping"])
        #expect(try FlowCoreTests.call(endpoint, call.request(path: "/demo")).status == 404)
    }
}
