@testable import FlowCore
import Testing

/// A pattern, a text, and whether the whole text matches.
struct PatternCase: CustomTestStringConvertible, Sendable {
    let pattern: String
    let text: String
    let matches: Bool

    init(_ pattern: String, _ text: String, _ matches: Bool) {
        self.pattern = pattern
        self.text = text
        self.matches = matches
    }

    var testDescription: String { "\(pattern) ~ \(text.debugDescription): \(matches)" }
}

private func compiled(_ pattern: String) throws -> FormPattern {
    try FormPattern(pattern)
}

/// The reason `pattern` is refused (nil when it compiles).
private func refusal(_ pattern: String) -> String? {
    do {
        _ = try FormPattern(pattern)
        return nil
    } catch {
        return error.description
    }
}

@Suite("Form engine: TextInput pattern")
struct FormPatternTests {
    static let cases: [PatternCase] = [
        // flows/budget.json
        .init("^[0-9]{1,7}$", "0", true), .init("^[0-9]{1,7}$", "1234567", true),
        .init("^[0-9]{1,7}$", "12345678", false), .init("^[0-9]{1,7}$", "", false), .init("^[0-9]{1,7}$", "12a", false),
        // literals, a whole-text match
        .init("abc", "abc", true), .init("abc", "abcd", false), .init("abc", "xabc", false), .init("", "", true),
        .init("", "a", false),
        // .
        .init("a.c", "abc", true), .init("a.c", "a€c", true), .init("a.c", "a\nc", false), .init("a.c", "a\rc", false),
        .init("a.c", "a\u{2028}c", false), .init("a.c", "ac", false), .init("...", "a😀b", true),
        // \d \w \s and their complements, JavaScript style
        .init("\\d+", "0123456789", true), .init("\\d", "٣", false), .init("\\D", "x", true), .init("\\D", "5", false),
        .init("\\w+", "az_AZ09", true), .init("\\w", "é", false), .init("\\W", "-", true), .init("\\W", "a", false),
        .init("a\\sb", "a b", true), .init("a\\sb", "a\tb", true), .init("a\\sb", "a\u{A0}b", true),
        .init("a\\sb", "a\u{3000}b", true), .init("a\\sb", "a\u{85}b", false), .init("\\S+", "ab", true),
        .init("\\S", " ", false),
        // escapes
        .init("\\.\\-\\(\\)\\[\\]\\{\\}\\*\\+\\?\\|\\^\\$\\\\\\/", ".-()[]{}*+?|^$\\/", true),
        .init("a\\.b", "a.b", true), .init("a\\.b", "axb", false), .init("\\t\\n", "\t\n", true),
        .init("\\x41\\u00e9", "Aé", true), .init("\\u20AC", "€", true), .init("\\@\\#", "@#", true),
        // classes
        .init("[a-zA-Z0-9._%+-]+", "Ab9._%+-", true), .init("[a-zA-Z0-9._%+-]+", "a b", false),
        .init("[^0-9]+", "abc", true), .init("[^0-9]", "5", false), .init("[^0-9]", "\n", true),
        .init("[\\d.]+", "1.5", true), .init("[\\d.]+", "1,5", false), .init("[\\w-]+", "a-b_c", true),
        .init("[\\s]", " ", true), .init("[\\S]", " ", false), .init("[^\\s]", "x", true),
        .init("[\\]\\[]+", "][", true),
        .init("[-a]", "-", true), .init("[a-]", "-", true), .init("[a-]", "b", false), .init("[.]", "x", false),
        .init("[\\^a]", "^", true), .init("[a^]", "^", true), .init("[$]", "$", true),
        // groups, alternation, nested quantifiers
        .init("(a|b)*c", "abbac", true), .init("(a|b)*c", "c", true), .init("(a|b)*c", "abd", false),
        .init("(?:ab)+", "ababab", true), .init("(?:ab)+", "aba", false), .init("(?<code>[A-Z]{2})-\\d", "AB-1", true),
        .init("cat|dog", "dog", true), .init("cat|dog", "catdog", false), .init("(cat|dog)s?", "cats", true),
        .init("(a|)b", "b", true), .init("(a|)b", "ab", true), .init("a|", "", true), .init("|a", "a", true),
        .init("()", "", true), .init("(()|a)+", "aa", true), .init("((a|b)c)+", "acbc", true),
        .init("((a|b)c)+", "acb", false),
        // quantifiers
        .init("a*", "", true), .init("a*", "aaa", true), .init("a+", "", false), .init("a?", "a", true),
        .init("a?", "aa", false), .init("a{3}", "aaa", true), .init("a{3}", "aa", false), .init("a{3}", "aaaa", false),
        .init("a{2,}", "aa", true), .init("a{2,}", "aaaaaa", true), .init("a{2,}", "a", false),
        .init("a{2,3}", "aaa", true), .init("a{2,3}", "aaaa", false), .init("a{0}", "", true),
        .init("a{0}", "a", false),
        .init("ba{0}c", "bc", true), .init("a{0,1}", "a", true), .init("(ab){2}", "abab", true),
        .init("a*?", "aaa", true), .init("a+?b", "aab", true), .init("a??", "a", true), .init("a{1,2}?", "aa", true),
        .init("(a*)*b", "aaab", true), .init("(a*)*b", "aaa", false), .init("(a|aa)+", "aaaaa", true),
        // anchors only say "whole text"
        .init("^abc$", "abc", true), .init("^a|b$", "b", true), .init("^a|^b", "a", true), .init("^$", "", true),
        // real form patterns
        .init("[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\\.[a-zA-Z]{2,}", "alex.b+1@mail.example.com", true),
        .init("[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\\.[a-zA-Z]{2,}", "alex@example", false),
        .init("[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\\.[a-zA-Z]{2,}", "alex@@example.com", false),
        .init("\\+?[0-9]{7,15}", "+4915112345678", true), .init("[A-Z]{2}[0-9]{4}", "AB1234", true),
        .init("(\\d{2})/(\\d{2})/(\\d{4})", "31/12/2026", true), .init("[0-9]{5}(-[0-9]{4})?", "12345-678", false),
        // non-ASCII literals and ranges
        .init("café", "café", true), .init("café", "cafe", false), .init("[à-ÿ]+", "éü", true),
        .init("[à-ÿ]", "a", false), .init("[а-яё]+", "привет", true), .init("[😀-😏]", "😃", true),
        .init("日本語?", "日本", true), .init("[^ä]", "ä", false),
    ]

    @Test(arguments: cases)
    func matches(_ test: PatternCase) throws {
        #expect(try compiled(test.pattern).matches(test.text) == test.matches)
    }

    @Test func keepsTheSource() throws {
        #expect(try compiled("^[0-9]{1,7}$").source == "^[0-9]{1,7}$")
    }

    static let refused: [(String, String)] = [
        ("(a)\\1", "backreferences are not supported (character 4)"),
        ("(?<x>a)\\k<x>", "backreferences are not supported (character 8)"),
        ("(?=a)a", "lookahead (?= is not supported (character 1)"),
        ("a(?!b)", "lookahead (?! is not supported (character 2)"),
        ("(?<=a)b", "lookbehind (?<= is not supported (character 1)"),
        ("(?<!a)b", "lookbehind (?<! is not supported (character 1)"),
        ("(?i)abc", "group syntax (? other than (?: and (?<name> is not supported (no inline flags) (character 1)"),
        ("\\bword\\b", "\\b and \\B (word boundary, backspace) are not supported (character 1)"),
        ("[\\b]", "\\b and \\B (word boundary, backspace) are not supported (character 2)"),
        ("\\p{L}+", "Unicode property escapes \\p{…} are not supported (character 1)"),
        ("\\q", "the escape \\q is not supported (character 1)"),
        ("\\0", "the escape \\0 is not supported (character 1)"),
        ("(a{100}){100}", "the pattern needs more than 4096 states (counted repetitions {n,m} multiply the size of "
            + "what they repeat)"),
        ("a{1001}", "a count above 1000 (character 2)"),
        ("a{3,2}", "the counts of {3,2} are out of order (character 2)"),
        ("[z-a]", "the range z-a is out of order (character 2)"),
        ("[\\d-z]", "a range in a class cannot start or end with a class escape (character 2)"),
        ("[", "an unclosed [ (character 1)"), ("[]", "an empty class [] or [^]: write \\] for a ] (character 1)"),
        ("[^]", "an empty class [] or [^]: write \\] for a ] (character 1)"),
        ("[[a]]", "a [ inside a class: write \\[ (character 2)"),
        ("(ab", "an unclosed ( (character 1)"), ("ab)", "unbalanced ) (character 3)"),
        ("*a", "nothing to repeat before * (character 1)"), ("a|+", "nothing to repeat before + (character 3)"),
        ("{2}", "nothing to repeat before { (character 1)"),
        ("a**", "a quantifier cannot follow another (no possessive forms) (character 3)"),
        ("a*+", "a quantifier cannot follow another (no possessive forms) (character 3)"),
        ("a{2}{3}", "a quantifier cannot follow another (no possessive forms) (character 5)"),
        ("a{x}", "a { that does not start {n}, {n,} or {n,m}: write \\{ (character 2)"),
        ("{", "a { that does not start {n}, {n,} or {n,m}: write \\{ (character 1)"),
        ("a}", "an unmatched }: write \\} (character 2)"), ("a]", "an unmatched ]: write \\] (character 2)"),
        ("a^b", "^ is only supported at the start of the pattern (character 2)"),
        ("(^a)", "^ is only supported at the start of the pattern (character 2)"),
        ("a$b", "$ is only supported at the end of the pattern (character 2)"),
        ("(a$)", "$ is only supported at the end of the pattern (character 3)"),
        ("a\\", "a \\ at the end of the pattern (character 2)"),
        ("\\x4", "\\x needs 2 hexadecimal digits (character 1)"),
        ("\\uD83D", "\\uD83D is a surrogate, not a scalar (character 1)"),
        (String(repeating: "(", count: 65) + String(repeating: ")", count: 65),
         "groups nested more than 64 deep (character 65)"),
    ]

    @Test(arguments: refused)
    func refusesWithTheReason(_ pattern: String, _ reason: String) {
        #expect(refusal(pattern) == reason)
    }

    @Test func theStateLimitCountsEveryCopy() throws {
        // 4,095 states and the match state fit; one more copy does not.
        #expect(try compiled("a{1000}b{1000}c{1000}d{1000}e{95}").matches(
            String(repeating: "a", count: 1000) + String(repeating: "b", count: 1000)
                + String(repeating: "c", count: 1000) + String(repeating: "d", count: 1000)
                + String(repeating: "e", count: 95)))
        #expect(refusal("a{1000}b{1000}c{1000}d{1000}e{96}") != nil)
    }

    @Test func pathologicalPatternsStayLinear() throws {
        let text = String(repeating: "a", count: 5_000)
        #expect(try !compiled("(a*)*b").matches(text))
        #expect(try !compiled("(a|a)*b").matches(text))
        #expect(try !compiled("(a+)+b").matches(text))
        #expect(try !compiled("(a|aa)*c").matches(text))
        #expect(try compiled("(a*)*").matches(text))
    }
}

/// The supported subset means what Swift's `Regex` means by it, on texts where JavaScript and Swift agree (ASCII
/// classes, no line terminators other than `\n`): the test target may use `Regex`, the library does not.
@Suite("Form engine: TextInput pattern agrees with Regex")
struct FormPatternAgreementTests {
    static let patterns = [
        "^[0-9]{1,7}$", "[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\\.[a-zA-Z]{2,}", "(a|b)*c", "a{0}b", "(a|)b", "a|",
        "(?:ab|cd){1,3}", "[^0-9]+", "\\d{2,4}-?\\d*", "(a*)*b", "a.c", "[\\-.]x", "\\w+\\s\\w+", "x?y??z*?",
        "((a|b)c)+|d", "[à-ÿ]+é", "\\(\\d{3}\\) \\d{3}-\\d{4}", "[A-Z][a-z]*( [A-Z][a-z]*)*", "a{2,}|b{0,1}c",
    ]
    static let texts = [
        "", "a", "b", "c", "ab", "abc", "abbac", "aab", "ac", "a\nc", "1234567", "12345678", "12-", "12-345",
        "x@y.io", "alex.b@mail.example.com", "a@b", "cdab", "ababab", "-x", ".x", "ab cd", "xyz", "yz", "acbc", "d",
        "àéé", "(555) 123-4567", "Ada Lovelace", "Ada lovelace", "aaaa", "bc", "a€c", "ñ",
    ]

    @Test(arguments: patterns)
    func agreesWithRegex(_ pattern: String) throws {
        let ours = try FormPattern(pattern)
        let regex = try Regex(pattern)
        for text in Self.texts {
            #expect(ours.matches(text) == ((try regex.wholeMatch(in: text)) != nil), "\(pattern) ~ \(text)")
        }
    }
}
