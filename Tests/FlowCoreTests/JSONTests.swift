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
}
