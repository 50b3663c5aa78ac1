@testable import FlowCore
import Testing

@Suite("Byte search (firstByteRange, containsBytes)")
struct ByteSearchTests {
    /// The offsets (in UTF-8 bytes) of the first match, or nil.
    private func offsets(_ text: some StringProtocol, _ needle: String) -> (Int, Int)? {
        guard let range = text.firstByteRange(of: needle) else { return nil }
        return (text.utf8.distance(from: text.startIndex, to: range.lowerBound),
                text.utf8.distance(from: text.startIndex, to: range.upperBound))
    }

    @Test func findsTheFirstOccurrence() {
        #expect(offsets("Hello ${data.name} and ${form.x}", "${")! == (6, 8))
        #expect(offsets("aaab", "aab")! == (1, 4))  // a partial match restarts one byte later
        #expect(offsets("abc", "abc")! == (0, 3))
        #expect(offsets("x..y", "..")! == (1, 3))
    }

    @Test func reportsNoMatch() {
        #expect(offsets("abc", "abcd") == nil)  // the needle runs past the end
        #expect(offsets("ab$", "${") == nil)
        #expect(offsets("", "a") == nil)
        #expect(!"a.b.c".containsBytes(".."))
    }

    @Test func emptyNeedleIsFoundAtTheStart() {
        #expect(offsets("abc", "")! == (0, 0))
    }

    @Test func worksOnSubstringsAndNonASCIIText() throws {
        let text = "ünïcødé ${x} — ${y}"
        let range = try #require(text.firstByteRange(of: "${"))
        let rest = text[range.upperBound...]
        #expect(rest.hasPrefix("x}"))
        let second = try #require(rest.firstByteRange(of: "${"))
        #expect(text[second.upperBound...] == "y}")
        #expect("-----BEGIN PRIVATE KEY-----\n".containsBytes("PRIVATE KEY-----"))
    }

    @Test func comparesBytesNotCharacters() {
        // "." followed by a combining acute accent is one Character; byte search still sees the two dots.
        #expect("a.\u{301}.b".containsBytes(".\u{301}."))
        #expect("a..\u{301}b".containsBytes(".."))
    }
}
