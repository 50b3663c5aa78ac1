import FlowCore
import Testing

@Suite("JSON")
struct JSONTests {
    @Test func parsesAndSerialisesCompactlyWithSortedKeys() throws {
        let value = try JSONParser.parse(#" { "b" : [1, 2.50, -3e2, true, null], "a": "x\u00e9\ud83d\ude00\n" } "#)
        #expect(value["a"] == .string("xé😀\n"))
        #expect(value["b"] == [.number("1"), .number("2.50"), .number("-3e2"), true, nil])
        #expect(value.text == #"{"a":"xé😀\n","b":[1,2.50,-3e2,true,null]}"#)
        #expect(try JSONParser.parse(value.serialized) == value)
    }

    @Test(arguments: [
        "", " ", "{", "[1,]", "{\"a\":1,}", "01", "1.", "-", "\"\\x\"", "\"\u{01}\"", "nul", "{\"a\" 1}",
        "\"\\ud800\"", "{\"a\":1,\"a\":1}", "[] []", "'a'",
    ])
    func rejects(text: String) {
        #expect(throws: JSONError.self) { try JSONParser.parse(text) }
    }

    @Test func rejectsInvalidUTF8AndDeepNesting() {
        #expect(throws: JSONError.self) { try JSONParser.parse([0x22, 0xC3, 0x28, 0x22]) }
        let deep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        #expect(throws: JSONError.self) { try JSONParser.parse(deep) }
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect((try? JSONParser.parse(ok)) != nil)
    }

    @Test func escapesControlCharacters() {
        #expect(JSONValue.string("a\u{01}\"\\").text == #""a\u0001\"\\""#)
    }

    /// The envelope's fast path (plain ASCII strings) and the full parser agree on every body: same envelope or
    /// both nil.
    @Test(arguments: [
        #"{"encrypted_flow_data":"QQ==","encrypted_aes_key":"Qg==","initial_vector":"Qw=="}"#,
        " {\n \"initial_vector\" : \"Qw==\" ,\t\"encrypted_aes_key\":\"Qg==\",\"encrypted_flow_data\":\"QQ==\"}\r\n",
        #"{"encrypted_flow_data":"QQ==","encrypted_aes_key":"Qg==","initial_vector":"Qw==","extra":"x"}"#,
        #"{"encrypted_flow_data":"QQ==","encrypted_aes_key":"Qg==","initial_vector":"Qw==","extra":"é"}"#,
        #"{"encrypted_flow_data":"QQ==","encrypted_aes_key":"Qg==","initial_vector":"Qw==","extra":1}"#,
        #"{"encrypted_flow_data":"Q\/==","encrypted_aes_key":"Qg==","initial_vector":"Qw=="}"#,
        #"{"encrypted_flow_data":"QQ==","encrypted_aes_key":"Qg==","initial_vector":"Qw==","initial_vector":"Qw=="}"#,
        #"{"encrypted_flow_data":"QQ==","encrypted_aes_key":"Qg==","initial_vector":"Qw==","x":"1","x":"1"}"#,
        #"{"encrypted_flow_data":"QQ==","encrypted_aes_key":"Qg==","initial_vector":1}"#,
        #"{"encrypted_flow_data":"QQ==","encrypted_aes_key":"Qg=="}"#,
        #"{"encrypted_flow_data":"QQ==","encrypted_aes_key":"Qg==","initial_vector":"Qw=="} x"#,
        #"{"encrypted_flow_data":"QQ==","encrypted_aes_key":"Qg==","initial_vector":"Qw==",}"#,
        #"{"encrypted_flow_data":"QQ==","encrypted_aes_key":"Qg==","initial_vector":"Qw=""#,
        "{\"encrypted_flow_data\":\"QQ==\",\"encrypted_aes_key\":\"Qg==\",\"initial_vector\":\"Q\u{7F}w==\"}",
        "{}", "[]", "", "{", "{\"a\"",
    ])
    func envelopeFastPathAgreesWithTheParser(body: String) {
        let reference: Envelope? = (try? JSONParser.parse(body)).flatMap { value in
            guard let data = value["encrypted_flow_data"]?.stringValue,
                  let key = value["encrypted_aes_key"]?.stringValue,
                  let iv = value["initial_vector"]?.stringValue else { return nil }
            return Envelope(encryptedFlowData: data, encryptedAESKey: key, initialVector: iv)
        }
        #expect(Envelope.parse(Array(body.utf8)) == reference)
    }
}
