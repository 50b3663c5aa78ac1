import FlowCore
import Testing

@Suite("CGI transport pieces")
struct TransportTests {
    func split(_ bytes: [UInt8]) -> (String, String) {
        bytes.withUnsafeBufferPointer { CGIMessage.splitParam($0) }
    }

    @Test func paramsSplitAtTheFirstEquals() {
        #expect(split(Array("QUERY_STRING=a=b".utf8)) == ("QUERY_STRING", "a=b"))
        #expect(split(Array("EMPTY=".utf8)) == ("EMPTY", ""))
        #expect(split(Array("NOVALUE".utf8)) == ("NOVALUE", ""))
        #expect(split(Array("=x".utf8)) == ("", "x"))
        // Invalid UTF-8 is repaired, never a crash.
        #expect(split([0x41, 0x3D, 0xFF]) == ("A", "\u{FFFD}"))
    }

    @Test func onlyTheParametersTheEndpointReadsAreCopied() {
        func read(_ text: String) -> (String, String)? { text.withCString { CGIMessage.readParam($0) } }
        #expect(read("REQUEST_METHOD=POST")! == ("REQUEST_METHOD", "POST"))
        #expect(read("HTTP_X_HUB_SIGNATURE_256=sha256=ab")! == ("HTTP_X_HUB_SIGNATURE_256", "sha256=ab"))
        #expect(read("QUERY_STRING=")! == ("QUERY_STRING", ""))
        #expect(read("HTTP_USER_AGENT=curl") == nil)
        #expect(read("REQUEST_METHODX=POST") == nil)
        #expect(read("SCRIPT_NAM=/x") == nil)
        #expect(read("PATH_INFO")! == ("PATH_INFO", ""))
    }

    @Test func bodyUnderTheCapIsKeptExactly() {
        var collector = BodyCollector(cap: 6)
        for chunk in [[1, 2, 3], [4, 5, 6]] as [[UInt8]] { chunk.withUnsafeBytes { collector.append($0) } }
        #expect(collector.body == [1, 2, 3, 4, 5, 6])
        #expect(!collector.tooLarge)
        let request = collector.request(params: [("REQUEST_METHOD", "POST")])
        #expect(request.method == "POST")
        #expect(request.body == [1, 2, 3, 4, 5, 6])
    }

    @Test func bodyPastTheCapIsTooLargeAndDropped() {
        var collector = BodyCollector(cap: 4)
        for chunk in [[1, 2, 3], [4, 5], [6]] as [[UInt8]] { chunk.withUnsafeBytes { collector.append($0) } }
        #expect(collector.tooLarge)
        #expect(collector.body.isEmpty)
        #expect(collector.request(params: []).method == "GET")
        #expect(collector.request(params: []).bodyTooLarge)
    }

    @Test func answerHasStatusHeadersLengthAndBody() {
        let response = EndpointResponse.text(404, "no such flow")
        let text = String(decoding: CGIMessage.encode(response, includeBody: true), as: UTF8.self)
        #expect(text.hasPrefix("Status: 404 Not Found\r\n"))
        #expect(text.contains("Content-Length: 13\r\n\r\nno such flow\n"))
        let head = String(decoding: CGIMessage.encode(response, includeBody: false), as: UTF8.self)
        #expect(head.hasSuffix("Content-Length: 13\r\n\r\n"))
    }
}
